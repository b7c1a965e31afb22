"""``digest status``: read-only, from a real store; JSON for monitoring; exit 1 when a
recipient went without."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import time_machine
from click.testing import CliRunner

from digest.cli import cli
from tests.conftest import FIXTURES, REPO, FeedServer, write_settings


def test_status_of_a_store_that_does_not_exist_yet(tmp_path: Path) -> None:
    config = write_settings(tmp_path, [{"url": "https://example.org/rss"}])
    result = CliRunner().invoke(cli, ["--config", str(config), "status"])
    assert result.exit_code == 0, result.output
    assert "last collect: never" in result.output
    assert "next collect: when the daemon starts" in result.output
    assert not (tmp_path / "digest.db").exists()  # status never creates or writes the store


def test_status_shows_runs_failing_feeds_and_undelivered_recipients(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = write_settings(
        tmp_path,
        [{"url": feed_server.url("feeds/nasa.xml")}, {"url": feed_server.url("status/500")}],
        sections={
            "collect": {"retries": 0},
            # Nothing listens on port 9: the mail server cannot be used, nothing is sent.
            "delivery": {"backend": "smtp"},
            "smtp": {"host": "127.0.0.1", "port": 9, "security": "none", "retries": 0},
        },
    )
    runner = CliRunner()
    with time_machine.travel(datetime(2024, 3, 1, 4, 30, tzinfo=UTC), tick=False):  # 07:30
        sent = runner.invoke(cli, ["--config", str(config), "run", "--once"])
        assert sent.exit_code == 1, sent.output
        text = runner.invoke(cli, ["--config", str(config), "status"])
        as_json = runner.invoke(cli, ["--config", str(config), "status", "--json"])
    assert text.exit_code == 1 and as_json.exit_code == 1
    assert "last edition run: 2024-03-01 07:30 failed" in text.output
    assert "failing feed: " in text.output and "HTTP 500" in text.output
    assert "mail backend unusable: SMTP 127.0.0.1:9: cannot connect" in text.output
    assert "undelivered: 2024-03-01 reader@example.org: not sent yet" in text.output
    assert "next edition: 2024-03-02 07:00" in text.output
    status = json.loads(as_json.output)
    assert status["needs_attention"] is True
    assert status["last_edition_run"]["outcome"] == "failed"
    assert status["last_collect"] is None  # the edition's own collect is part of its run
    assert [d["state"] for d in status["undelivered"]] == ["pending", "pending"]
    assert [f["source"]["url"] for f in status["failing_feeds"]] == [feed_server.url("status/500")]
    assert status["next_editions_at"] == ["2024-03-02T07:00:00+03:00"]


def _digest(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
        check=False,
    )


def _daytime_zone() -> tuple[str, datetime]:
    """A zone where it is now between 01:00 and 20:59, so that an edition two hours from now
    is still today's; and the local time there."""
    for name in ("Europe/Istanbul", "UTC", "America/New_York", "Asia/Tokyo", "Pacific/Auckland"):
        local = datetime.now(ZoneInfo(name))
        if 1 <= local.hour <= 20:
            return name, local
    raise AssertionError("some zone is always in daytime")


def test_manual_collect_and_send_are_runs_and_the_next_edition_is_one_not_yet_sent(
    tmp_path: Path,
) -> None:
    zone, local = _daytime_zone()
    send_at = (local + timedelta(hours=2)).strftime("%H:%M")
    config = write_settings(
        tmp_path,
        [{"url": str(FIXTURES / "feeds" / "nasa.xml"), "name": "NASA"}],
        timezone=zone,
        sections={"schedule": {"send_at": send_at}},
    )
    before = _digest(config, "status")
    assert f"next edition: {local:%Y-%m-%d} {send_at}" in before.stdout, before.stdout
    assert _digest(config, "collect").returncode == 0
    sent = _digest(config, "send", "--no-collect")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    after = _digest(config, "status")
    assert after.returncode == 0, after.stdout
    lines = after.stdout.splitlines()
    today = f"{local:%Y-%m-%d}"
    collect_line = next(line for line in lines if line.startswith("last collect: "))
    assert collect_line.startswith(f"last collect: {today} ") and " ok (" in collect_line
    assert "1 feeds: 0 failed, 0 not due; 1 new stories" in collect_line
    edition_line = next(line for line in lines if line.startswith("last edition run: "))
    assert edition_line.startswith(f"last edition run: {today} ") and " ok (" in edition_line
    assert f"edition {today}: sent 2, already sent 0, failed 0" in edition_line
    tomorrow = f"{local + timedelta(days=1):%Y-%m-%d}"
    assert f"next edition: {tomorrow} {send_at}" in lines, lines


def test_a_failed_manual_send_is_recorded_as_a_failed_edition_run(tmp_path: Path) -> None:
    config = write_settings(
        tmp_path,
        [{"url": str(FIXTURES / "feeds" / "nasa.xml"), "name": "NASA"}],
        sections={
            # Nothing listens on port 9: the mail server cannot be used, nothing is sent.
            "delivery": {"backend": "smtp"},
            "smtp": {"host": "127.0.0.1", "port": 9, "security": "none", "retries": 0},
        },
    )
    assert _digest(config, "send").returncode == 1
    status = json.loads(_digest(config, "status", "--json").stdout)
    assert status["last_collect"] is None  # the send's own collect is part of its run
    run = status["last_edition_run"]
    assert run["outcome"] == "failed"
    assert any("mail backend unusable: SMTP 127.0.0.1:9" in f for f in run["failures"])


def test_a_send_that_raised_shows_its_error_once_in_status(tmp_path: Path) -> None:
    config = write_settings(
        tmp_path,
        [{"url": str(FIXTURES / "feeds" / "nasa.xml"), "name": "NASA"}],
        sections={
            "delivery": {"backend": "smtp"},
            "smtp": {"host": "127.0.0.1", "port": 9, "username": "digest"},
        },
    )
    env_free = _digest(config, "send")  # no $DIGEST_SMTP_PASSWORD: refused before any work
    assert env_free.returncode == 2, env_free.stdout + env_free.stderr
    shown = _digest(config, "status").stdout
    assert shown.count("is set but $DIGEST_SMTP_PASSWORD is not") == 1, shown
    assert "ConfigError(" not in shown and "DeliveryError(" not in shown
