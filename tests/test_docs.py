"""Meta-tests: the README, CI and the package say what the code does."""

from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import digest
from digest import models
from digest.cli import cli
from digest.config import Settings
from tests.conftest import REPO, settings_keys

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
    for key in settings_keys(Settings):
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


def _runs_digest(line: str) -> bool:
    """Whether a shell line runs ``digest`` found on PATH (after any VAR=value prefixes)."""
    words = [w for w in line.split() if not re.match(r"^[A-Z_]+=", w)]
    return bool(words) and words[0] == "digest"


def test_every_readme_shell_line_finds_digest_right_after_the_setup_command(
    tmp_path: Path,
) -> None:
    # The setup command installs into .venv/bin and activates nothing: a bare `digest`
    # line must come after something that puts it on PATH, in the same block. The stand-in
    # .venv is a real one (its activate script) whose `digest` runs this digest.
    venv = tmp_path / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    stand_in = venv / "bin" / "digest"
    path = os.pathsep.join(entry for entry in sys.path if entry)  # where this digest is found
    launcher = f'#!/bin/sh\nPYTHONPATH="{path}" exec "{sys.executable}" -m digest "$@"\n'
    stand_in.write_text(launcher, encoding="utf-8")
    stand_in.chmod(0o755)
    shutil.copy(REPO / "settings.toml", tmp_path)
    blocks = re.findall(r"```sh\n(.*?)```", README, re.DOTALL)
    checked = 0
    for block in blocks:
        lines = [line.split("  #")[0].strip() for line in block.splitlines()]
        for number, line in enumerate(lines):
            if not _runs_digest(line):
                continue
            setup = [earlier for earlier in lines[:number] if not _runs_digest(earlier)]
            script = "\n".join([*setup, "command -v digest", "digest --version"])
            found = subprocess.run(
                ["bash", "-ec", script],
                cwd=tmp_path,
                env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert found.returncode == 0, (line, found.stderr)
            assert found.stdout.startswith(str(stand_in)), line
            checked += 1
    assert checked >= 5  # the Quick start's lines


def test_readme_inline_commands_name_the_installed_script() -> None:
    # An inline command to copy (a global option first, so not a synopsis) runs as written.
    commands = re.findall(r"(?<!`)`([^`\n]*digest --config [^`\n]*)`(?!`)", README)
    assert commands  # the demo's preview line
    for command in commands:
        assert command.startswith(".venv/bin/digest ") or "/.venv/bin/digest" in command, command
