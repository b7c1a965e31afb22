"""``digest status``: read-only, from a real store; JSON for monitoring; exit 1 when a
recipient went without."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import time_machine
from click.testing import CliRunner

from digest.cli import cli
from tests.conftest import FeedServer, write_settings


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
