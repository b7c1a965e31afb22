"""Start-up: the everyday read-only commands never import the pipeline's heavy libraries.

Each command runs in a fresh ``python`` process (the click command, in-process there), which
then prints the modules it loaded; timings are benchmarks/startup.py's business.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from tests.conftest import FIXTURES, REPO, write_settings

HEAVY = ("aiohttp", "numpy", "lxml", "torch", "transformers")

_PROBE = """
import json, sys
from digest.cli import cli
try:
    cli.main(sys.argv[1:], prog_name="digest")
except SystemExit as exit:
    code = exit.code
print(json.dumps({"exit": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


@pytest.fixture(scope="module")
def store_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A settings file whose store has stories, an edition and its deliveries."""
    folder = tmp_path_factory.mktemp("startup")
    config = write_settings(
        folder,
        [{"url": str(FIXTURES / "feeds" / "nasa.xml"), "name": "NASA"}],
        sections={
            "summarize": {
                "summarizer": "abstractive",
                "model": "digest-tests/no-such-model-anywhere",
                "fallback": "extractive",
            }
        },
    )
    for command in (["collect", "--no-summarize"], ["send"]):
        result = CliRunner().invoke(cli, ["--config", str(config), *command])
        assert result.exit_code == 0, result.output
    return config


def _loaded(*args: str) -> tuple[int, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report["exit"], report["modules"]


@pytest.mark.parametrize(
    "command",
    [["--version"], ["--help"], ["status"], ["deliveries"], ["feeds", "list"], ["check"]],
    ids=" ".join,
)
def test_everyday_commands_import_nothing_heavy(store_config: Path, command: list[str]) -> None:
    code, modules = _loaded("--config", str(store_config), *command)
    assert code in (0, None), command
    heavy = [m for m in modules if m.split(".")[0] in HEAVY]
    assert not heavy, f"digest {' '.join(command)} imported {sorted(set(heavy))[:10]}"


def test_the_probe_sees_a_heavy_import(store_config: Path) -> None:
    """The check above can fail: a command that builds an edition does import numpy."""
    code, modules = _loaded("--config", str(store_config), "send", "--dry-run")
    assert code in (0, None)
    assert "numpy" in modules
