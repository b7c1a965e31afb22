"""The daemon as a real process: ``digest run`` subprocesses on a real store, mailing a real
aiosmtpd server on 127.0.0.1, killed, signalled and restarted. The waits are real: each
schedule is due a few seconds after the test starts (``send_at`` takes seconds), and the
grace is a few seconds where a test needs it to run out."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import FEEDS, free_port, write_settings
from tests.deliver_sink import Sink, running

pytestmark = pytest.mark.slow

ZONE = "Europe/Istanbul"


@pytest.fixture
def smtp_server() -> Iterator[Callable[[float], tuple[Sink, int]]]:
    """Starts SMTP sinks on 127.0.0.1, each answering every message after ``delay`` seconds."""
    with contextlib.ExitStack() as servers:

        def start(delay: float = 0.0) -> tuple[Sink, int]:
            sink = Sink(delay=delay)
            return sink, servers.enter_context(running(sink))

        yield start


class _Daemon:
    """One ``digest run`` process, its log in a file."""

    def __init__(self, config: Path, name: str) -> None:
        self.log_path = config.parent / f"{name}.log"
        self.config = config
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "digest", "--config", str(config), "run"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, text: str, timeout: float = 60) -> None:
        _wait(lambda: text in self.log, timeout, f"{text!r} in the log of {self.log_path.name}")

    def stop(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


@pytest.fixture
def daemons() -> Iterator[Callable[[Path, str], _Daemon]]:
    started: list[_Daemon] = []

    def start(config: Path, name: str) -> _Daemon:
        started.append(_Daemon(config, name))
        return started[-1]

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


def _soon(seconds: float) -> datetime:
    """A whole second at least ``seconds`` from now (send_at has second precision)."""
    return (datetime.now(UTC) + timedelta(seconds=seconds + 1)).replace(microsecond=0)


def _config(
    folder: Path,
    port: int,
    send: datetime,
    *,
    grace_hours: float,
    recipients: tuple[str, ...] = ("reader@example.org", "Second <second@example.org>"),
    **schedule: Any,
) -> Path:
    send_at = f"{send.astimezone(ZoneInfo(ZONE)):%H:%M:%S}"
    return write_settings(
        folder,
        [{"url": str(FEEDS / "nasa.xml")}],
        recipients=recipients,
        timezone=ZONE,
        sections={
            # A daemon that exits at once (a second signal) leaves its leased rows to the
            # next one after this long.
            "delivery": {"backend": "smtp", "lease_seconds": 3},
            "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "timeout_seconds": 10},
            "schedule": {
                "send_at": send_at,
                "misfire_grace_hours": grace_hours,
                "collect_every_minutes": 60,
                **schedule,
            },
        },
    )


def _status(config: Path) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(config), "status", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, json.loads(done.stdout)


def _ledger(config: Path) -> dict[str, str]:
    with sqlite3.connect(config.parent / "digest.db") as conn:
        return dict(conn.execute("SELECT address, state FROM deliveries").fetchall())


def test_killed_before_send_time_and_restarted_within_the_grace_sends_one_edition(
    tmp_path: Path, smtp_server: Any, daemons: Any
) -> None:
    sink, port = smtp_server()
    send = _soon(6)
    config = _config(tmp_path, port, send, grace_hours=0.05, log_file="daemon.log")  # 3 min
    first = daemons(config, "first")
    first.wait_for("job=collect outcome=ok")
    assert datetime.now(UTC) < send, "the first daemon must die before the edition time"
    first.process.kill()
    first.process.wait()
    _sleep_until(send + timedelta(seconds=2))
    assert sink.recipients == []

    second = daemons(config, "second")
    second.wait_for("job=edition")
    assert second.stop() == 0
    assert sorted(sink.recipients) == ["reader@example.org", "second@example.org"]
    assert "job=edition outcome=late" in second.log and "sending it now, late" in second.log
    # The log file has the same one-line-per-run record as standard error.
    assert "job=edition outcome=late" in (tmp_path / "daemon.log").read_text()
    code, status = _status(config)
    assert code == 0, status
    assert status["last_edition_run"]["outcome"] == "late"
    assert {d["state"] for d in status["last_edition_deliveries"]} == {"sent"}


def test_restarted_after_the_grace_sends_nothing_and_records_the_miss(
    tmp_path: Path, smtp_server: Any, daemons: Any
) -> None:
    sink, port = smtp_server()
    send = _soon(6)
    config = _config(tmp_path, port, send, grace_hours=0.001)  # 3.6 s
    first = daemons(config, "first")
    first.wait_for("job=collect outcome=ok")
    first.process.kill()
    first.process.wait()
    _sleep_until(send + timedelta(seconds=6))

    second = daemons(config, "second")
    second.wait_for("job=edition outcome=missed")
    second.wait_for("digest run: started")
    time.sleep(1)
    assert second.stop() == 0
    assert sink.recipients == []
    code, status = _status(config)
    assert code == 1  # a missed edition needs attention
    [missed] = status["missed"]
    assert missed["edition_on"] == f"{send.astimezone(ZoneInfo(ZONE)):%Y-%m-%d}"
    assert datetime.fromisoformat(missed["scheduled_at"]) == send


def test_a_daemon_asleep_past_the_grace_records_the_miss_when_it_wakes(
    tmp_path: Path, smtp_server: Any, daemons: Any
) -> None:
    sink, port = smtp_server()
    send = _soon(5)
    config = _config(tmp_path, port, send, grace_hours=0.001)
    daemon = daemons(config, "sleeper")
    daemon.wait_for("job=collect outcome=ok")
    daemon.process.send_signal(signal.SIGSTOP)  # as a suspended laptop
    _sleep_until(send + timedelta(seconds=6))
    daemon.process.send_signal(signal.SIGCONT)
    daemon.wait_for("job=edition outcome=missed")
    assert daemon.stop() == 0
    assert sink.recipients == []


def test_two_daemons_on_one_store_send_one_edition(
    tmp_path: Path, smtp_server: Any, daemons: Any
) -> None:
    sink, port = smtp_server()
    send = _soon(6)
    config = _config(tmp_path, port, send, grace_hours=0.05)
    one, two = daemons(config, "one"), daemons(config, "two")
    one.wait_for("job=edition")
    two.wait_for("job=edition")
    assert one.stop() == 0 and two.stop() == 0
    assert sorted(sink.recipients) == ["reader@example.org", "second@example.org"]
    assert set(_ledger(config).values()) == {"sent"}


def test_sigterm_during_an_edition_of_200_loses_and_repeats_no_one(
    tmp_path: Path, smtp_server: Any, daemons: Any
) -> None:
    sink, port = smtp_server(0.02)
    recipients = tuple(f"reader{n:03d}@example.org" for n in range(200))
    send = _soon(5)
    config = _config(tmp_path, port, send, grace_hours=0.05, recipients=recipients)
    first = daemons(config, "first")
    _wait(lambda: len(sink.recipients) >= 20, 60, "20 messages")
    assert first.stop() == 0  # finishes the message in hand, commits, exits 0
    reached = len(sink.recipients)
    assert reached < 200
    assert "job=edition outcome=stopped" in first.log
    ledger = _ledger(config)
    assert sum(state == "sent" for state in ledger.values()) == reached
    assert "sending" not in ledger.values()  # nothing left uncertain by a clean stop

    second = daemons(config, "second")
    second.wait_for("job=edition")
    assert second.stop() == 0
    assert sorted(sink.recipients) == sorted(recipients)  # everyone, once
    assert set(_ledger(config).values()) == {"sent"}


def test_a_second_signal_exits_at_once_and_the_store_stays_whole(
    tmp_path: Path, smtp_server: Any, daemons: Any
) -> None:
    sink, port = smtp_server(1.5)  # each message takes 1.5 s: the second signal lands mid-send
    recipients = tuple(f"reader{n}@example.org" for n in range(4))
    send = _soon(5)
    config = _config(tmp_path, port, send, grace_hours=0.05, recipients=recipients)
    first = daemons(config, "first")
    _wait(lambda: len(sink.recipients) >= 1, 60, "the first message")
    first.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    first.process.send_signal(signal.SIGTERM)
    assert first.process.wait(10) == 128 + signal.SIGTERM
    assert "again: exiting now" in first.log
    with sqlite3.connect(tmp_path / "digest.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert list(_ledger(config).values()).count("sending") == 1  # the one caught in hand

    second = daemons(config, "second")
    second.wait_for("job=edition")
    assert second.stop() == 0
    # The uncertain one is reported, never resent: no one gets the edition twice.
    assert sorted(sink.recipients) == sorted(set(sink.recipients))
    assert len(sink.recipients) == 4
    code, status = _status(config)
    assert code == 1
    assert [d["state"] for d in status["undelivered"]] == ["sending"]


def test_sigint_stops_an_idle_daemon_cleanly(tmp_path: Path, daemons: Any) -> None:
    config = _config(tmp_path, free_port(), _soon(3600), grace_hours=1)
    daemon = daemons(config, "idle")
    daemon.wait_for("job=collect outcome=ok")
    daemon.process.send_signal(signal.SIGINT)
    assert daemon.process.wait(30) == 0
    assert "digest run: stopped" in daemon.log
    assert os.path.getsize(tmp_path / "digest.db") > 0
