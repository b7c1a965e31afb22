"""The global options (``--config``, ``--debug``) before or after any subcommand."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.errors import ConfigError
from tests.conftest import FeedServer, write_settings


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
    return found


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


@pytest.mark.parametrize("path", _commands(cli), ids=" ".join)
def test_every_command_takes_the_global_options(path: tuple[str, ...]) -> None:
    options = {opt for param in _command(path).params for opt in param.opts}
    assert {"--config", "-c", "--debug"} <= options


def test_config_after_the_subcommand(tmp_path: Path, feed_server: FeedServer) -> None:
    config = write_settings(tmp_path, [{"url": feed_server.url("feeds/nasa.xml")}])
    out = tmp_path / "x.html"
    runner = CliRunner()
    preview = runner.invoke(cli, ["preview", "--config", str(config), "--out", str(out)])
    assert preview.exit_code == 0, preview.output
    assert "NASA" in out.read_text(encoding="utf-8")
    listed = runner.invoke(cli, ["feeds", "list", "-c", str(config)])
    assert listed.exit_code == 0, listed.output
    assert feed_server.url("feeds/nasa.xml") in listed.output


def test_the_config_after_the_subcommand_wins(tmp_path: Path) -> None:
    config = write_settings(tmp_path, [{"url": "https://example.org/rss"}])
    missing = tmp_path / "missing.toml"
    runner = CliRunner()
    after_wins = runner.invoke(cli, ["-c", str(missing), "status", "-c", str(config)])
    assert after_wins.exit_code == 0, after_wins.output
    assert "last collect: never" in after_wins.output
    before_loses = runner.invoke(cli, ["-c", str(config), "feeds", "list", "-c", str(missing)])
    assert before_loses.exit_code == 2
    assert f"{missing}: config file not found" in before_loses.output


def test_debug_after_the_subcommand_shows_the_traceback(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.toml")
    plain = CliRunner().invoke(cli, ["check", "-c", missing])
    assert plain.exit_code == 2 and "Error: " in plain.output
    debug = CliRunner().invoke(cli, ["check", "-c", missing, "--debug"])
    assert isinstance(debug.exception, ConfigError)  # raised as is: a traceback, not "Error:"
