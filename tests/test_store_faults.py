"""Storage faults with real processes and real files: the store's disk fills up (a small
tmpfs this test mounts), another process holds the store locked, or the file is damaged.

Each is one clear message naming the file, the cause and what to do; exit 1; no traceback.
A send stops at the first failure (nothing more is asked of the SMTP server), and once the
fault is cleared the next send finishes the edition with no recipient missed and no second
copy, except the one row left uncertain, which says why it is uncertain.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from digest.errors import StoreError
from digest.models import Story
from digest.sqlite_store import SQLiteStore
from tests.conftest import FEEDS, REPO, cannot_run_here, make_story, write_settings
from tests.deliver_sink import RECIPIENTS, Sink, running, smtp_settings

FEED = str(FEEDS / "nasa.xml")
FILLER = "filler"


def _mount_tmpfs(folder: Path, size: str) -> None:
    """Mount a tmpfs of ``size`` at ``folder``; skip (fail under CI=true) if not allowed."""
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode == 0:
        return
    cannot_run_here(f"cannot mount a tmpfs to fill up ({done.stderr.strip()}): it needs root")


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB disk of its own (tmpfs) that a test can fill up."""
    folder = tmp_path / "disk"
    _mount_tmpfs(folder, "16m")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def _fill(disk: Path) -> None:
    """Write to the disk until no byte more fits."""
    with contextlib.suppress(OSError), (disk / FILLER).open("ab") as filler:
        while True:
            filler.write(b"\0" * 65536)
            filler.flush()


def _clear(disk: Path) -> None:
    (disk / FILLER).unlink()


def _digest(config: Path, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    done = subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    return done.returncode, done.stdout, done.stderr


def _line(out: str, recipient: str) -> str:
    """The report's line for a recipient."""
    return next(line for line in out.splitlines() if line.strip().startswith(f"{recipient}:"))


def _row(out: str, feed: str) -> str:
    """The collect table's row for a feed."""
    return next(line for line in out.splitlines() if line.startswith(f"{feed}  "))


def _assert_one_clear_message(err: str, store: Path, cause: str) -> None:
    assert "Traceback" not in err, err
    assert f"Error: {store}: {cause}" in err, err
    assert "hint:" in err, err


def _assert_exactly_once(sink: Sink, twice: tuple[str, ...] = ()) -> None:
    """Every recipient has its copy, once; those in ``twice`` (the uncertain row resent on
    request) have two, under one Message-ID."""
    copies = sink.copies_by_recipient()
    assert set(copies) == set(RECIPIENTS)
    assert {r for r, n in copies.items() if n > 1} == set(twice)
    assert all(n <= 2 for n in copies.values())
    assert len(sink.copies_by_message_id()) == len(RECIPIENTS)


# Full disk


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before-claim", "after-250"])
def test_a_full_disk_while_sending_stops_the_run_at_once(disk: Path, when: str) -> None:
    """The disk fills as the 3rd message is about to be handed over (its row cannot be
    marked sending: nothing is sent to it), or while the server takes it (its 250 cannot
    be recorded: the row stays uncertain and says so). Before, every other recipient still
    went through MAIL, RCPT and RSET, each printing a traceback."""
    k = 3

    def on_rcpt(address: str, attempt: int) -> str | None:
        if when == "before-claim" and sum(sink.rcpt_attempts.values()) == k:
            _fill(disk)
        return None

    def on_data(address: str, number: int) -> str | None:
        if when == "after-250" and number == k:
            _fill(disk)
        return None

    sink = Sink(on_rcpt=on_rcpt, on_data=on_data)
    with running(sink) as port:
        config = smtp_settings(disk, port, [{"url": FEED, "name": "NASA"}])
        code, out, err = _digest(config, "send")
        assert code == 1, out + err
        _assert_one_clear_message(err, disk / "digest.db", "the disk is full")
        assert "free space" in err
        assert sum(sink.rcpt_attempts.values()) == k  # nothing more asked of the server
        assert len(sink.accepted) == (k if when == "after-250" else k - 1)
        unrecorded = RECIPIENTS[k - 1]
        if when == "after-250":
            line = _line(out, unrecorded)
            assert "uncertain" in line and "the server accepted it (250 OK queued)" in line
            assert "could not record" in line and "the disk is full" in line
        assert f"not sent yet {len(RECIPIENTS) - len(sink.accepted)}" in out

        _clear(disk)
        code, out, err = _digest(config, "send", "--no-collect")
        assert "Traceback" not in err
        if when == "before-claim":
            assert code == 0, out + err
            _assert_exactly_once(sink)
            return
        assert code == 1, out + err  # the uncertain row is not resent unasked
        assert "connection broke" not in out
        assert "no outcome recorded" in _line(out, unrecorded)
        assert "killed, or could not write to the store" in _line(out, unrecorded)
        code, out, err = _digest(config, "send", "--no-collect", "--resend-uncertain")
        assert code == 0, out + err
    _assert_exactly_once(sink, twice=(unrecorded,))


class _FillingFeedServer(ThreadingHTTPServer):
    """Serves one feed on 127.0.0.1; before its first answer, it waits for ``is_ready`` and
    then fills the disk: the feed arrives after the other one is stored, onto a full disk."""

    def __init__(self, disk: Path, is_ready: Callable[[], bool]) -> None:
        super().__init__(("127.0.0.1", 0), _FillingHandler)
        self.disk, self.is_ready = disk, is_ready
        self.daemon_threads = True
        self.has_filled = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/japantoday.xml"


class _FillingHandler(BaseHTTPRequestHandler):
    server: _FillingFeedServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if not self.server.has_filled:
            deadline = time.monotonic() + 60
            while not self.server.is_ready() and time.monotonic() < deadline:
                time.sleep(0.05)
            _fill(self.server.disk)
            self.server.has_filled = True
        body = (FEEDS / "japantoday.xml").read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _stored_stories(store: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(f"{store.as_uri()}?mode=ro", uri=True)) as conn:
            return int(conn.execute("SELECT count(*) FROM stories").fetchone()[0])
    except sqlite3.Error:
        return 0  # not created yet


@contextlib.contextmanager
def _feed_that_fills(disk: Path) -> Iterator[str]:
    """The URL of a feed served on 127.0.0.1 that fills the disk once a story is stored."""
    server = _FillingFeedServer(disk, lambda: _stored_stories(disk / "digest.db") > 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_a_full_disk_while_collecting_still_reports_each_feed(disk: Path) -> None:
    """The first feed is stored; then the disk fills and the second cannot be. Before, a
    raw ``sqlite3.OperationalError`` traceback and no report."""
    with _feed_that_fills(disk) as url:
        feeds = [{"url": FEED, "name": "NASA"}, {"url": url, "name": "Japan Today"}]
        config = write_settings(disk, feeds)
        code, out, err = _digest(config, "collect", "--no-summarize")
        assert code == 1, out + err
        _assert_one_clear_message(err, disk / "digest.db", "the disk is full")
        assert _row(out, "NASA").split()[1] == "new"
        assert "not saved" in _row(out, "Japan Today")
        assert "2 feeds: 1 read, 0 failed, 1 not saved" in out

        _clear(disk)
        code, out, err = _digest(config, "collect", "--no-summarize")
        assert code == 0, out + err
        assert _row(out, "Japan Today").split()[2] == "new"


@pytest.mark.slow
def test_a_full_disk_while_send_collects_sends_nothing(disk: Path) -> None:
    """`digest send` collects first: a store failure there builds and sends nothing (before,
    a traceback), and the next send, with room again, sends the edition once to each."""
    sink = Sink()
    with _feed_that_fills(disk) as url, running(sink) as port:
        feeds = [{"url": FEED, "name": "NASA"}, {"url": url, "name": "Japan Today"}]
        config = smtp_settings(disk, port, feeds)
        code, out, err = _digest(config, "send")
        assert code == 1, out + err
        _assert_one_clear_message(err, disk / "digest.db", "the disk is full")
        assert "not saved" in _row(out, "Japan Today")
        assert "the store failed first; nothing built or sent" in out
        assert not sink.rcpt_attempts

        _clear(disk)
        code, out, err = _digest(config, "send")
        assert code == 0, out + err
    _assert_exactly_once(sink)


def _story(n: int) -> Story:
    return make_story(n, category=None, published_at=None, text="x" * 20_000, html="<p>x</p>")


@pytest.mark.slow
def test_after_a_full_disk_the_store_writes_again_once_there_is_room(disk: Path) -> None:
    """A COMMIT that fails for lack of room leaves no transaction open (before: every later
    write failed with "cannot start a transaction within a transaction")."""
    from datetime import UTC, datetime

    now = datetime(2024, 3, 1, tzinfo=UTC)
    with SQLiteStore.open(disk / "d.db") as store:
        store.add_stories([_story(0)], now)
        _fill(disk)
        with pytest.raises(StoreError, match="the disk is full") as caught:
            store.add_stories([_story(n) for n in range(1, 200)], now)
        assert caught.value.path == disk / "d.db"
        _clear(disk)
        assert store.add_stories([_story(1)], now) == 1


# Locked


def test_a_store_locked_mid_send_stops_the_run_and_the_uncertain_row_says_why(
    tmp_path: Path,
) -> None:
    """Another process takes the store's write lock while the 3rd message is with the
    server, and keeps it past [store].busy_timeout_seconds: its 250 cannot be recorded.
    Before, the run went on failing one recipient at a time, and the next send blamed
    "the connection broke before the server's answer"."""
    k, store = 3, tmp_path / "digest.db"
    holders: list[sqlite3.Connection] = []

    def on_data(address: str, number: int) -> str | None:
        if number == k:
            holder = sqlite3.connect(store, isolation_level=None, check_same_thread=False)
            holder.execute("BEGIN EXCLUSIVE")
            holders.append(holder)
        return None

    sink = Sink(on_data=on_data)
    with running(sink) as port:
        config = smtp_settings(tmp_path, port, [{"url": FEED, "name": "NASA"}])
        # A run that stops on a locked store cannot give its leased rows back either: the
        # next send waits for the lease to run out.
        text = config.read_text().replace("[store]\n", "[store]\nbusy_timeout_seconds = 0.5\n")
        config.write_text(text.replace("[delivery]\n", "[delivery]\nlease_seconds = 2\n"))
        try:
            code, out, err = _digest(config, "send")
        finally:
            for holder in holders:
                holder.close()
        assert code == 1, out + err
        _assert_one_clear_message(err, store, "the store is locked")
        assert "another digest process" in err and "0.5 s" in err
        assert sum(sink.rcpt_attempts.values()) == k and len(sink.accepted) == k
        unrecorded = RECIPIENTS[k - 1]
        line = _line(out, unrecorded)
        assert "the server accepted it (250 OK queued)" in line and "locked" in line

        code, out, err = _digest(config, "send", "--no-collect")
        assert code == 1, out + err
        assert "connection broke" not in out
        assert "killed, or could not write to the store" in _line(out, unrecorded)
        code, out, err = _digest(config, "send", "--no-collect", "--resend-uncertain")
        assert code == 0, out + err
    _assert_exactly_once(sink, twice=(unrecorded,))


# Damaged


def _damage(store: Path, tables: tuple[str, ...]) -> None:
    """Overwrite the root page of each table with garbage (the file's middle, not its
    header: SQLite opens it and finds the damage when it reads there)."""
    with contextlib.closing(sqlite3.connect(store)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        names = ", ".join("?" * len(tables))
        roots = conn.execute(
            f"SELECT rootpage FROM sqlite_master WHERE name IN ({names})", tables
        ).fetchall()
    with store.open("r+b") as file:
        for (root,) in roots:
            file.seek((root - 1) * size)
            file.write(b"\xa5" * size)


@pytest.fixture
def damaged(tmp_path: Path) -> tuple[Path, Path]:
    """A store that sent an edition (to the outbox), then had the tables that each command
    reads first damaged; (settings, store)."""
    config = write_settings(tmp_path, [{"url": FEED, "name": "NASA"}])
    code, out, err = _digest(config, "send")
    assert code == 0, out + err
    _damage(tmp_path / "digest.db", ("feeds", "stories", "editions", "deliveries"))
    return config, tmp_path / "digest.db"


@pytest.mark.parametrize(
    "command",
    [
        ("status",),
        ("deliveries",),
        ("send", "--dry-run"),
        ("send", "--no-collect", "--force"),
        ("collect", "--no-summarize"),
        ("preview", "--no-collect", "--text"),
    ],
    ids=" ".join,
)
def test_a_damaged_store_is_one_clear_message(
    damaged: tuple[Path, Path], command: tuple[str, ...]
) -> None:
    """Before: a raw ``sqlite3.DatabaseError`` traceback (status, deliveries, --dry-run)."""
    config, store = damaged
    sent_before = sorted((store.parent / "outbox").iterdir())
    code, out, err = _digest(config, *command)
    assert code == 1, out + err
    _assert_one_clear_message(err, store, "the store file is damaged")
    assert f"sqlite3 {store} .recover" in err and "keep a copy" in err
    assert sorted((store.parent / "outbox").iterdir()) == sent_before  # nothing sent


def test_a_file_that_is_not_a_store_is_one_clear_message(tmp_path: Path) -> None:
    config = write_settings(tmp_path, [{"url": FEED, "name": "NASA"}])
    (tmp_path / "digest.db").write_bytes(b"not a database at all, " * 512)
    for command in (("status",), ("feeds", "list"), ("collect", "--no-summarize")):
        code, out, err = _digest(config, *command)
        assert code == 1, out + err
        _assert_one_clear_message(err, tmp_path / "digest.db", "the file is not a SQLite")
        assert "[store].path" in err
