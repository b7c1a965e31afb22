"""Meta-tests: the README, CI and the package say what the code does."""

from __future__ import annotations

import inspect
import re

import digest
from digest import models
from digest.cli import cli
from digest.config import Settings
from tests.conftest import REPO
from tests.test_config import _keys

README = (REPO / "README.md").read_text(encoding="utf-8")


def _readme_commands() -> list[str]:
    return re.findall(r"```sh\n(python3 -m venv .+)\n```", README)


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one() -> None:
    run_demo, run_tests = _readme_commands()
    assert "examples/demo.toml" in run_demo and "pytest" in run_tests
    for command in (run_demo, run_tests):
        assert command.index("pip install torch==2.13.0") < command.index("pip install -e")
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert run_tests in ci_lines


def test_every_cli_command_has_help_and_is_in_the_readme() -> None:
    for name, command in cli.commands.items():
        assert command.help, name
        assert f"`digest {name}" in README, name


def test_every_setting_is_in_the_readme_reference() -> None:
    for key in _keys(Settings):
        section, _, name = key.rpartition(".")
        pattern = f"`{name}`" if not section else f"[{section}].{name}`"
        alias = f"[[{section}]].{name}`"
        assert pattern in README or alias in README, key


def test_package_exports_every_record() -> None:
    records = {
        name
        for name, value in vars(models).items()
        if inspect.isclass(value) and value.__module__ == models.__name__
    }
    assert records <= set(digest.__all__)
    assert all(hasattr(digest, name) for name in digest.__all__)
