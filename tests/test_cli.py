"""End-to-end: the CLI over a loopback feed server, a real SQLite file and a real outbox."""

from __future__ import annotations

import email
import re
import subprocess
import sys
from collections.abc import Sequence
from datetime import date, datetime
from email import policy
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result

from digest.cli import cli
from digest.messages import make_message_id
from tests.conftest import REPO, FeedServer, write_settings
from tests.deliver_sink import body_text

GOOD_FEEDS = ["feeds/nasa.xml", "feeds/jsonfeed.json", "feeds/japantoday.xml"]


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _settings(
    tmp_path: Path, server: FeedServer, extra: Sequence[str] = (), **kwargs: object
) -> Path:
    feeds = [
        {"url": server.url(p), "name": p.split("/")[-1], "category": "World"}
        for p in [*GOOD_FEEDS, *extra]
    ]
    return write_settings(tmp_path, feeds, **kwargs)  # type: ignore[arg-type]


def _store_files(folder: Path) -> dict[str, bytes]:
    """The store's content: the database file and its write-ahead log, if it has one.

    A read-only reader of a WAL database may create an empty -wal and a -shm (SQLite's
    shared-memory index, not data), so an empty log counts as no log.
    """
    files = {p.name: p.read_bytes() for p in folder.glob("digest.db*") if p.suffix != ".db-shm"}
    return {name: data for name, data in sorted(files.items()) if data or name == "digest.db"}


def test_collect_stores_stories_and_reports_each_failing_feed(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = _settings(tmp_path, feed_server, ["status/500", "garbage", "status/404"])
    result = _run("--config", str(config), "collect")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(
        line.startswith("nasa.xml ") and " new " in line and line.split()[2] == "1"
        for line in lines
    )
    assert any("500" in line and "HTTP 500 Internal Server Error" in line for line in lines)
    assert any(line.startswith("garbage ") and "not a readable feed" in line for line in lines)
    assert lines[-1] == "6 feeds: 3 read, 3 failed; 22 new stories"
    again = _run("--config", str(config), "collect")
    assert again.output.splitlines()[-1] == "6 feeds: 3 read, 3 failed; 0 new stories"


def test_collect_exits_non_zero_when_every_feed_failed(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = write_settings(
        tmp_path, [{"url": feed_server.url("status/503")}, {"url": str(tmp_path / "missing.xml")}]
    )
    result = _run("--config", str(config), "collect")
    assert result.exit_code == 1
    words = " ".join(result.output.split())  # a long detail wraps under its column
    assert f"no such file: {tmp_path / 'missing.xml'}" in words


def test_preview_leaves_the_store_byte_identical(tmp_path: Path, feed_server: FeedServer) -> None:
    config = _settings(tmp_path, feed_server, ["status/500"])
    assert _run("--config", str(config), "collect").exit_code == 0
    before = _store_files(tmp_path)
    for args in (["--no-collect"], []):
        out = tmp_path / "preview.html"
        result = _run("--config", str(config), "preview", "--out", str(out), *args)
        assert result.exit_code == 0, result.output
        html = out.read_text()
        assert "NASA Television to Broadcast Space Station Departure" in html
        assert "Announcing JSON Feed" in html
        assert "HTTP 500" in html  # the failing feed is named in the footer
        assert _store_files(tmp_path) == before
    assert not (tmp_path / "outbox").exists()


def test_preview_on_a_fresh_machine_creates_no_store(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = _settings(tmp_path, feed_server)
    result = _run("--config", str(config), "preview", "--text")
    assert result.exit_code == 0
    assert "NASA Television to Broadcast" in result.output
    assert _store_files(tmp_path) == {}


def _outbox(tmp_path: Path) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in sorted((tmp_path / "outbox").glob("*.eml"))
    ]


def test_send_writes_one_message_per_recipient_once(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = _settings(tmp_path, feed_server, ["status/500"])
    result = _run("--config", str(config), "send")
    assert result.exit_code == 0, result.output
    assert "sent 2, failed 0, already sent 0, uncertain 0" in result.output
    messages = _outbox(tmp_path)
    assert sorted(m["To"] for m in messages) == [
        "Second <second@example.org>",
        "reader@example.org",
    ]
    for message in messages:
        assert message.get_content_type() == "multipart/alternative"
        assert message["Message-ID"].startswith("<digest.")
        assert message["Date"] and message["Subject"].startswith("Daily Digest, ")
        assert "Announcing JSON Feed" in body_text(message, "html")
        assert "HTTP 500" in body_text(message, "plain")
    again = _run("--config", str(config), "send")
    assert again.exit_code == 0
    assert "sent 0, failed 0, already sent 2, uncertain 0" in again.output
    assert len(_outbox(tmp_path)) == 2


def test_a_recipient_added_later_gets_the_same_edition(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = _settings(tmp_path, feed_server, recipients=("reader@example.org",))
    _run("--config", str(config), "send")
    first_html = body_text(_outbox(tmp_path)[0], "html")
    config = _settings(tmp_path, feed_server, recipients=("reader@example.org", "new@example.org"))
    result = _run("--config", str(config), "send")
    assert "sent 1, failed 0, already sent 1" in result.output
    late = next(m for m in _outbox(tmp_path) if m["To"] == "new@example.org")
    assert body_text(late, "html") == first_html


def test_a_failed_delivery_is_recorded_exits_non_zero_and_is_retried(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = _settings(tmp_path, feed_server)
    # A folder where each message's file is written first: the outbox itself is usable (an
    # unusable one is refused before any work), each delivery fails on its own.
    today = datetime.now(ZoneInfo("Europe/Istanbul")).date()
    blockers = [
        tmp_path / "outbox" / f"{_outbox_token(today, address)}.eml.partial"
        for address in ("reader@example.org", "second@example.org")
    ]
    for blocker in blockers:
        blocker.mkdir(parents=True)
    result = _run("--config", str(config), "send")
    assert result.exit_code == 1
    assert "failed 2" in result.output and "cannot write" in result.output
    for blocker in blockers:
        blocker.rmdir()
    retry = _run("--config", str(config), "send")
    assert retry.exit_code == 0
    assert "sent 2, failed 0, already sent 0, uncertain 0" in retry.output
    assert len(_outbox(tmp_path)) == 2


def _outbox_token(day: date, address: str) -> str:
    message_id = make_message_id(day, address, "digest@example.org", "Daily Digest")
    return re.sub(r"[^A-Za-z0-9.]+", "_", message_id.strip("<>"))


def test_a_new_display_name_for_a_served_address_sends_no_second_copy(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    _run(
        "--config",
        str(_settings(tmp_path, feed_server, recipients=("reader@example.org",))),
        "send",
    )
    config = _settings(tmp_path, feed_server, recipients=("Dear Reader <Reader@example.org>",))
    result = _run("--config", str(config), "send")
    assert "sent 0, failed 0, already sent 1" in result.output
    assert len(_outbox(tmp_path)) == 1


def test_sendmail_backend_pipes_each_message_to_the_command(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    script = tmp_path / "fake-sendmail.py"
    script.write_text(
        "import sys, pathlib, uuid\npathlib.Path(sys.argv[1], uuid.uuid4().hex + '.eml').write_bytes(sys.stdin.buffer.read())\n"
    )
    received = tmp_path / "received"
    received.mkdir()
    command = [sys.executable, str(script), str(received)]
    config = _settings(
        tmp_path,
        feed_server,
        sections={"delivery": {"backend": "sendmail", "sendmail_command": command}},
    )
    result = _run("--config", str(config), "send")
    assert result.exit_code == 0, result.output
    messages = [
        email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in received.iterdir()
    ]
    assert sorted(str(m["To"]) for m in messages) == [
        "Second <second@example.org>",
        "reader@example.org",
    ]


def test_a_failing_sendmail_command_fails_each_delivery_with_its_error(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    command = [sys.executable, "-c", "import sys; sys.stderr.write('queue full'); sys.exit(75)"]
    config = _settings(
        tmp_path,
        feed_server,
        sections={"delivery": {"backend": "sendmail", "sendmail_command": command}},
    )
    result = _run("--config", str(config), "send")
    assert result.exit_code == 1
    assert "exited 75: queue full" in result.output and "failed 2" in result.output


def test_send_with_nothing_new_sends_nothing(tmp_path: Path, feed_server: FeedServer) -> None:
    config = write_settings(tmp_path, [{"url": feed_server.url("status/500")}])
    result = _run("--config", str(config), "send")
    assert "no new stories since the last one; nothing sent" in result.output
    assert not (tmp_path / "outbox").exists()


def test_dry_run_sends_and_stores_nothing(tmp_path: Path, feed_server: FeedServer) -> None:
    config = _settings(tmp_path, feed_server)
    _run("--config", str(config), "collect")
    before = _store_files(tmp_path)
    result = _run("--config", str(config), "send", "--dry-run")
    assert result.exit_code == 0
    assert "reader@example.org: would send" in result.output
    assert "Second <second@example.org>: would send" in result.output
    assert _store_files(tmp_path) == before and not (tmp_path / "outbox").exists()


def test_check_reports_problems_and_config_errors_without_a_traceback(tmp_path: Path) -> None:
    config = write_settings(
        tmp_path,
        [{"url": str(tmp_path / "nope.xml")}],
        sections={"summarize": {"summarizer": "nonesuch"}},
    )
    result = _run("--config", str(config), "check")
    assert result.exit_code == 1
    assert "[[feeds]] #1.url: no such file" in result.output
    assert "[summarize].summarizer = 'nonesuch': no such summarizer" in result.output
    config.write_text(config.read_text().replace("[store]", "[stor]"))
    result = CliRunner().invoke(cli, ["--config", str(config), "check"])
    assert result.exit_code == 2
    assert "[stor]: unknown key" not in result.output  # a top-level table is named as it is
    assert "stor: unknown key; did you mean 'store'?" in result.output
    assert "Traceback" not in result.output


def test_check_accepts_the_demo_config() -> None:
    result = _run("--config", str(REPO / "examples" / "demo.toml"), "check")
    assert result.exit_code == 0, result.output
    assert "OK (5 feeds, 2 recipients, summarizer extractive, backend outbox)" in result.output


def test_help_lists_every_command() -> None:
    result = _run("--help")
    for command in ("collect", "preview", "send", "run", "check"):
        assert f"  {command} " in result.output
        assert _run(command, "--help").exit_code == 0


@pytest.mark.parametrize("debug", [False, True])
def test_console_script_entry_point(tmp_path: Path, debug: bool) -> None:
    script = Path(sys.executable).parent / "digest"
    args = [
        str(script),
        *(["--debug"] if debug else []),
        "--config",
        str(tmp_path / "none.toml"),
        "check",
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert "config file not found" in done.stderr
    assert ("Traceback" in done.stderr) is debug
    assert done.returncode == (1 if debug else 2)


def test_dry_run_with_nothing_stored_says_nothing_would_be_sent(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = _settings(tmp_path, feed_server)
    result = _run("--config", str(config), "send", "--dry-run")
    assert "no new stories stored; nothing would be sent" in result.output
    assert _store_files(tmp_path) == {}


def test_dry_run_after_sending_shows_who_already_has_it(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = _settings(tmp_path, feed_server)
    _run("--config", str(config), "send")
    result = _run("--config", str(config), "send", "--dry-run")
    assert "reader@example.org: already sent" in result.output


def test_preview_to_an_unwritable_path_is_a_clear_error(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = _settings(tmp_path, feed_server)
    result = CliRunner().invoke(
        cli,
        [
            "--config",
            str(config),
            "preview",
            "--no-collect",
            "--out",
            str(tmp_path / "no" / "x.html"),
        ],
    )
    assert result.exit_code == 1
    assert "cannot write" in result.output and "No such file or directory" in result.output
