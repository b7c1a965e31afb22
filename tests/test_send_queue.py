"""Several senders through one delivery ledger, with real processes and a real SMTP sink on
127.0.0.1: four `digest send --no-collect` processes and 5,000 subscribers give each one
message; one of them killed mid-batch leaves its leased rows to the others once its lease
runs out, at most one row uncertain; the hourly rate limit holds across processes; two
daemons at an edition time build one edition. Each runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import time_machine

from digest.config import load_settings
from digest.models import DeliveryState
from digest.runtime import Runtime
from digest.schedule import build_scheduler
from digest.subscribers import LIST_SLUG
from tests.conftest import REPO, FeedServer, write_settings
from tests.deliver_sink import Sink, running

pytestmark = pytest.mark.slow

READERS = tuple(f"reader{n:04d}@example.org" for n in range(5000))
ENGINES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


@pytest.fixture(params=ENGINES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'digest.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def _config(
    folder: Path,
    store_url: str,
    port: int,
    feeds: list[dict[str, str]] | None = None,
    schedule: dict[str, str] | None = None,
    **delivery: Any,
) -> Path:
    return write_settings(
        folder,
        feeds or [{"url": str(REPO / "tests" / "fixtures" / "feeds" / "nasa.xml")}],
        recipients=(),
        sections={
            "schedule": schedule or {},
            "store": {"path": None, "url": store_url},
            "render": {"empty_edition": "send"},  # --no-collect: an edition of no stories
            "delivery": {"backend": "smtp", **delivery},
            "smtp": {"host": "127.0.0.1", "port": port, "security": "none",
                     "timeout_seconds": 20.0, "retry_backoff_seconds": 0.01,
                     "max_messages_per_connection": 100000},
        },
    )  # fmt: skip


def _subscribe(config: Path, readers: tuple[str, ...]) -> None:
    with Runtime.open(load_settings(config)) as runtime:
        now = datetime.now(UTC)
        runtime.store.add_subscribers(LIST_SLUG, [(r, None) for r in readers], how="cli", now=now)


def _start(config: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    return subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(config), "send", "--no-collect", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def _finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def _rows(store_url: str, query: str) -> list[tuple[Any, ...]]:
    """The query's rows, read beside the senders (SQLite in WAL mode never blocks them)."""
    if store_url.startswith("sqlite:///"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///"), timeout=30) as conn:
            return conn.execute(query).fetchall()
    with psycopg.connect(store_url) as pg:
        return pg.execute(query.encode()).fetchall()


def _ledger(store_url: str) -> dict[str, tuple[str, str]]:
    """Each recipient's (state, Message-ID)."""
    rows = _rows(store_url, "SELECT recipient, state, message_id FROM deliveries")
    return {recipient: (state, message_id) for recipient, state, message_id in rows}


def _assert_exactly_once(sink: Sink, ledger: dict[str, tuple[str, str]]) -> None:
    """Every sent row's recipient got one message, under its own Message-ID; an uncertain
    row's recipient got one or none; nobody else got anything."""
    copies = sink.copies_by_recipient()
    by_id = {str(m["Message-ID"]): str(m["To"]) for m in sink.messages()}
    assert all(n == 1 for n in copies.values()), [r for r, n in copies.items() if n > 1]
    assert len(sink.copies_by_message_id()) == len(copies)  # no second identity for anyone
    for message_id, recipient in by_id.items():
        assert ledger[recipient][1] == message_id
    sent = {r for r, (state, _) in ledger.items() if state == "sent"}
    uncertain = {r for r, (state, _) in ledger.items() if state == "sending"}
    assert sent <= set(copies) <= sent | uncertain


def _sender_pids(store_url: str) -> set[str]:
    """The processes that sent the rows (their sender ids are host:pid:worker:random)."""
    rows = _rows(store_url, "SELECT leased_by FROM deliveries WHERE state = 'sent'")
    return {str(by).split(":")[1] for (by,) in rows}


def test_four_sender_processes_send_each_of_5000_readers_one_message(
    tmp_path: Path, store_url: str
) -> None:
    sink = Sink()
    with running(sink) as port:
        config = _config(tmp_path, store_url, port)
        _subscribe(config, READERS)
        senders = [_start(config), _start(config), _start(config), _start(config, "--workers", "2")]
        results = [_finish(sender) for sender in senders]
    for code, out, err in results:
        assert code == 0, out[-2000:] + err[-2000:]
        assert "failed 0" in out and "uncertain 0" in out and "not sent yet" not in out
    ledger = _ledger(store_url)
    assert Counter(state for state, _ in ledger.values()) == Counter(sent=5000)
    assert len(sink.accepted) == 5000
    _assert_exactly_once(sink, ledger)
    assert set(sink.copies_by_recipient()) == set(READERS)
    assert len(_rows(store_url, "SELECT edition_on FROM editions")) == 1
    assert len(_sender_pids(store_url)) >= 2  # the work was shared


class _KillMidBatch:
    """A sink that, from its ``at``-th message on, freezes the victim and notes the rows
    leased to it and not sent yet; at the first message where there are some, it kills the
    victim (SIGKILL), else it lets it go on (it was between batches, or at a batch's last
    row) and looks again at the next message."""

    def __init__(self, store_url: str, at: int) -> None:
        self.store_url, self.at = store_url, at
        self.victim: subprocess.Popen[str] | None = None
        self.leased: set[str] = set()
        self.sink = Sink(on_data=self._on_data)

    def _on_data(self, address: str, number: int) -> str | None:
        if number < self.at or self.leased or self.victim is None or self.victim.poll() is not None:
            return None
        pid = self.victim.pid
        os.kill(pid, signal.SIGSTOP)  # its lease is renewed no more, and it sends nothing
        rows = _rows(
            self.store_url, "SELECT recipient, leased_by FROM deliveries WHERE state = 'pending'"
        )
        self.leased = {r for r, by in rows if by and str(by).split(":")[1] == str(pid)}
        os.kill(pid, signal.SIGKILL if self.leased else signal.SIGCONT)
        return None


def test_a_sender_killed_mid_batch_leaves_its_rows_to_the_others_after_its_lease(
    tmp_path: Path, store_url: str
) -> None:
    killer = _KillMidBatch(store_url, at=1500)
    with running(killer.sink) as port:
        config = _config(tmp_path, store_url, port, lease_seconds=5)
        _subscribe(config, READERS)
        killer.victim = _start(config)
        others = [_start(config) for _ in range(3)]
        victim_code, _, _ = _finish(killer.victim)
        results = [_finish(sender) for sender in others]
    assert victim_code == -signal.SIGKILL
    assert killer.leased  # it was mid-batch: rows leased to it, not sent yet
    ledger = _ledger(store_url)
    states = Counter(state for state, _ in ledger.values())
    uncertain = states["sending"]
    assert uncertain <= 1 and states == Counter(sent=5000 - uncertain, sending=uncertain)
    assert all(ledger[r][0] == "sent" for r in killer.leased)  # sent by the others
    _assert_exactly_once(killer.sink, ledger)
    missing = set(READERS) - set(killer.sink.copies_by_recipient())
    assert missing <= {r for r, (state, _) in ledger.items() if state == "sending"}
    for code, out, err in results:  # each reports the whole edition, the uncertain row too
        assert code == (1 if uncertain else 0), out[-2000:] + err[-2000:]
        assert "failed 0, already sent" in out and f"uncertain {uncertain}" in out
        assert "not sent yet" not in out


def test_the_hourly_limit_holds_across_sender_processes(tmp_path: Path, store_url: str) -> None:
    sink = Sink()
    readers = READERS[:300]
    with running(sink) as port:
        config = _config(tmp_path, store_url, port, max_per_hour=100)
        _subscribe(config, readers)
        results = [_finish(sender) for sender in [_start(config) for _ in range(3)]]
    assert len(sink.accepted) == 100  # not one more, though three counted at once
    ledger = _ledger(store_url)
    assert Counter(state for state, _ in ledger.values()) == Counter(sent=100, pending=200)
    _assert_exactly_once(sink, ledger)
    for code, out, err in results:
        assert code == 75, out[-2000:] + err[-2000:]  # stopped at the limit, nothing else wrong
        assert "rate limit reached ([delivery].max_per_hour)" in out


def test_two_daemons_at_an_edition_time_build_one_edition_and_send_it_once(
    tmp_path: Path, store_url: str, feed_server: FeedServer
) -> None:
    sink = Sink()
    readers = READERS[:300]
    start = datetime(2024, 3, 1, 5, 0, tzinfo=UTC)  # 08:00 in Istanbul, the edition time
    with running(sink) as port:
        feeds = [{"url": feed_server.url("feeds/nasa.xml")}]
        config = _config(tmp_path, store_url, port, feeds=feeds, schedule={"send_at": "08:00"})
        _subscribe(config, readers)
        settings = load_settings(config)
        jobs = [
            build_scheduler(settings, threading.Event(), now=start - timedelta(minutes=1)).get_job(
                "edition-0"
            )
            for _ in range(2)
        ]
        reports: list[Any] = []
        with time_machine.travel(start, tick=False):
            threads = [
                threading.Thread(target=lambda j=job: reports.append(j.func(*j.args, **j.kwargs)))
                for job in jobs
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(300)
    assert len(reports) == 2 and all(r is not None and r.ok for r in reports)
    assert {r.rendered.subject for r in reports} == {reports[0].rendered.subject}
    assert len(_rows(store_url, "SELECT edition_on FROM editions")) == 1
    assert sum(path.startswith("/feeds/") for path, _ in feed_server.requests) == 1
    ledger = _ledger(store_url)
    assert Counter(state for state, _ in ledger.values()) == Counter(sent=300)
    _assert_exactly_once(sink, ledger)
    assert set(sink.copies_by_recipient()) == set(readers)
    assert all(r.in_state(DeliveryState.SENT) for r in reports)
