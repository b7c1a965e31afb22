"""The architecture, read from the code: the command line (cli*.py) and the daemon
(schedule*.py) reach the stages only through use cases and a runtime, and a command opens the
store once."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.sqlite_store import SQLiteStore
from digest.store import Store
from tests.conftest import FEEDS, REPO
from tests.deliver_sink import RECIPIENTS, Sink, running, smtp_settings

DIGEST = REPO / "digest"

# The command line's and the daemon's modules: cli.py and schedule.py, and each module split
# out of them (cli_feeds.py, cli_output.py, schedule_runs.py, ...).
FRONT = sorted(
    path.name for pattern in ("cli*.py", "schedule*.py") for path in DIGEST.glob(pattern)
)
# What they may import: the use cases, the runtime, the settings, the records and errors,
# their own plumbing (signals, log lines, the schedule's triggers), and each other (cli runs
# collect and send as the daemon's jobs are run, through schedule_runs).
USE_CASES = {
    "archive_build",
    "batch",
    "checking",
    "collecting",
    "editions",
    "feeds",
    "ledger",
    "preview",
    "sending",
    "status",
    "store_migration",
    "subscribers",
    "subscribing",
}
ALLOWED = USE_CASES | {"runtime", "config", "models", "errors", "interrupt", "logs", "triggers"}
ALLOWED.add("web")  # the readers' HTTP front (`digest web`); its pages call ``subscribing``
ALLOWED |= {name.removesuffix(".py") for name in FRONT}
# Some of what they may not: the stages and the store.
STAGES = {
    "abstractive",
    "clean",
    "collect",
    "address_checks",
    "fetch_outcomes",
    "http_headers",
    "dedupe",
    "dedupe_rules",
    "language",
    "edition_data",
    "filters",
    "mailers",
    "messages",
    "smtp_mailer",
    "embeddings",
    "encoder",
    "fetching",
    "opml",
    "parse",
    "preflight",
    "render",
    "serve",
    "store",
    "summarize",
    "llm",
    "rank",
    "urls",
    "decode",
    "feeds_xml",
    "feeds_xml_fast",
    "feeds_values",
    "jsonfeed",
    "normalise",
    "sqlite_connection",
    "sqlite_feeds",
    "sqlite_ledger",
    "sqlite_migrations",
    "sqlite_store",
    "sqlite_tables",
    "pg_tables",
    "store_tables",
}


def _digest_imports(path: Path) -> set[str]:
    """The digest modules a file imports, anywhere in it (in a function, under TYPE_CHECKING),
    without the ``digest.`` prefix; ``from digest import __version__`` is the package's own."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "digest":
            found.update(f"digest.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return {
        name.removeprefix("digest.")
        for name in found
        if name.startswith("digest.") and not name.startswith("digest.__")
    }


def test_the_import_reader_sees_stage_imports() -> None:
    """The tests below can fail: a use case's own imports are seen, stages and store too."""
    assert {"store", "editions", "runtime"} <= _digest_imports(DIGEST / "sending.py")
    assert {"messages", "mailers", "store", "runtime"} <= _digest_imports(DIGEST / "send_queue.py")
    assert {"collect", "parse"} <= _digest_imports(DIGEST / "feeds.py")  # in a function


def test_every_cli_and_schedule_module_is_held_to_the_rule() -> None:
    """A new cli_*.py or schedule_*.py is found by the glob, not by remembering to list it."""
    assert {"cli.py", "cli_feeds.py", "cli_output.py", "schedule.py", "schedule_runs.py"} <= set(
        FRONT
    )


@pytest.mark.parametrize("module", FRONT)
def test_cli_and_schedule_import_use_cases_never_a_stage_or_the_store(module: str) -> None:
    imported = _digest_imports(DIGEST / module)
    assert not imported & STAGES, f"{module} imports {sorted(imported & STAGES)}"
    assert imported <= ALLOWED, f"{module} imports {sorted(imported - ALLOWED)}"


@pytest.mark.parametrize("module", ["cli.py", "cli_feeds.py", "schedule.py", "schedule_runs.py"])
def test_the_commands_and_jobs_go_through_use_cases(module: str) -> None:
    assert _digest_imports(DIGEST / module) & USE_CASES


@pytest.fixture
def store_opens(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every opening of a store, read-write or read-only, by whoever opens it."""
    opened: list[str] = []

    def counted(name: str, open_store: Callable[..., Any]) -> classmethod[Store, ..., Any]:
        def wrapper(cls: type[Store], *args: Any, **kwargs: Any) -> Any:
            opened.append(name)
            return open_store(*args, **kwargs)

        return classmethod(wrapper)

    monkeypatch.setattr(SQLiteStore, "open", counted("open", SQLiteStore.open))
    read_only = counted("read-only", SQLiteStore.open_read_only)
    monkeypatch.setattr(SQLiteStore, "open_read_only", read_only)
    yield opened


def test_send_to_an_smtp_server_opens_the_store_once(
    tmp_path: Path, store_opens: list[str]
) -> None:
    sink = Sink()
    with running(sink) as port:
        config = smtp_settings(tmp_path, port, [{"url": str(FEEDS / "nasa.xml"), "name": "NASA"}])
        result = CliRunner().invoke(cli, ["--config", str(config), "send"])
    assert result.exit_code == 0, result.output
    assert len(sink.accepted) == len(RECIPIENTS)  # collected, built, archived, sent, recorded
    assert store_opens == ["open"]


@pytest.mark.parametrize(
    ("command", "opened"),
    [
        (["collect"], ["open"]),
        (["send", "--dry-run"], ["read-only"]),
        (["preview", "--no-collect", "--text"], ["read-only"]),
        (["status"], ["read-only"]),
        (["deliveries"], ["read-only"]),
        (["feeds", "list"], ["read-only"]),
    ],
    ids=" ".join,
)
def test_each_command_opens_the_store_once(
    tmp_path: Path, store_opens: list[str], command: list[str], opened: list[str]
) -> None:
    with running(Sink()) as port:
        config = smtp_settings(tmp_path, port, [{"url": str(FEEDS / "nasa.xml"), "name": "NASA"}])
        assert CliRunner().invoke(cli, ["--config", str(config), "send"]).exit_code == 0
    store_opens.clear()
    result = CliRunner().invoke(cli, ["--config", str(config), *command])
    assert result.exit_code == 0, result.output
    assert store_opens == opened
