"""The send and collect flow with real `python -m digest` processes: a second sender waits
for the first before doing any work and says so; interrupts (SIGINT, SIGTERM) stop
promptly, say what was kept, and exit 128 + the signal."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from digest.interrupt import Interrupted, StopRequest, abandonable
from digest.models import SendLockHolder
from digest.sqlite_ledger import read_lock_holder
from digest.sqlite_store import SQLiteStore
from tests.conftest import (
    FEEDS,
    REPO,
    FeedServer,
    cannot_run_here,
    start_server,
    stop_server,
    write_settings,
)
from tests.deliver_sink import Sink, running, smtp_settings


class _Digest:
    """A `python -m digest` process whose stderr lines can be waited for as they come."""

    def __init__(self, config: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "digest", "--config", str(config), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        self.err_lines: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        self.out: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_err, daemon=True),
            threading.Thread(target=self._read_out, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_err(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.err.append(line)
            self.err_lines.put(line)

    def _read_out(self) -> None:
        assert self.process.stdout is not None
        self.out.extend(self.process.stdout)

    def wait_for_err(self, text: str, timeout: float = 60) -> str:
        """The first stderr line holding ``text`` (failing after ``timeout`` seconds)."""
        while True:
            line = self.err_lines.get(timeout=timeout)
            if text in line:
                return line

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        code = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return code, "".join(self.out), "".join(self.err)


def _ledger(tmp_path: Path) -> Counter[str]:
    with sqlite3.connect(tmp_path / "digest.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return Counter(row[0] for row in conn.execute("SELECT state FROM deliveries"))


def _feed_fetches(server: FeedServer) -> int:
    return sum(path.startswith("/feeds/") for path, _ in server.requests)


# Item 12: two senders at once


@pytest.mark.slow
def test_a_second_sender_waits_for_the_edition_then_sends_with_the_first_without_collecting(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    sink = Sink()
    with running(sink) as port:
        feeds = [{"url": feed_server.url("feeds/nasa.xml")}, {"url": feed_server.url("slow")}]
        config = smtp_settings(tmp_path, port, feeds)
        first = _Digest(config, "send")  # collects for 5 s (the slow feed), the lock in hand
        deadline = time.monotonic() + 60
        while not any(path == "/slow" for path, _ in feed_server.requests):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = _Digest(config, "send")
        line = second.wait_for_err("waiting for another digest send")
        assert f"pid {first.process.pid}, `digest --config {config} send`" in line
        assert "building since 20" in line and "to collect and build the edition" in line
        assert _feed_fetches(feed_server) == 1  # the second has not collected while it waits
        first_code, first_out, _ = first.finish()
        second_code, second_out, _ = second.finish()
    assert first_code == 0 and "failed 0, already sent 0, uncertain 0" in first_out
    assert second_code == 0 and "failed 0" in second_out and "uncertain 0" in second_out
    assert "no new stories" not in second_out
    assert _feed_fetches(feed_server) == 1  # it found the edition archived: no collect
    assert sorted(sink.copies_by_recipient().values()) == [1] * 200
    assert _ledger(tmp_path) == Counter(sent=200)


# Item 10: interrupts


class _HeldFeeds:
    """A feed server on 127.0.0.1: /feeds/<file> answers at once, /held/<name> only once
    released (the client is mid-fetch until then); it tells when each held request came."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.arrived: queue.Queue[str] = queue.Queue()
        self.httpd = start_server(self._handler())
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        held = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                self.send_response(200)
                self.end_headers()  # no length: the body ends when the connection closes
                with contextlib.suppress(OSError):  # the client may have gone
                    if path.startswith("/held/"):
                        self._hold(path)
                        self.wfile.write((FEEDS / "nasa.xml").read_bytes())
                    else:
                        self.wfile.write((FEEDS / path.removeprefix("/feeds/")).read_bytes())

            def _hold(self, path: str) -> None:
                held.arrived.put(path)
                # A space a second (XML allows leading white space): the client's read
                # timeout never fires, so only an interrupt ends this fetch early.
                while not held.release.wait(1.0):
                    self.wfile.write(b" ")
                    self.wfile.flush()

        return Handler

    def wait_for_held(self, count: int) -> None:
        for _ in range(count):
            self.arrived.get(timeout=60)

    def close(self) -> None:
        self.release.set()
        stop_server(self.httpd)


@pytest.fixture
def held_feeds() -> Iterator[_HeldFeeds]:
    server = _HeldFeeds()
    yield server
    server.close()


FAST = ("nasa.xml", "jsonfeed.json", "japantoday.xml")


def _held_config(tmp_path: Path, server: _HeldFeeds, copies: int = 1) -> Path:
    feeds = [
        {"url": f"{server.base_url}/feeds/{name}?copy={n}", "name": f"{name}-{n}"}
        for name in FAST
        for n in range(copies)
    ]
    feeds += [{"url": f"{server.base_url}/held/{n}", "name": f"held{n}"} for n in (1, 2)]
    # A long deadline: only the interrupt can end the held fetches in time for the test.
    collect = {"max_age_days": 0, "timeout_seconds": 120, "full_text": False, "retries": 0}
    return write_settings(tmp_path, feeds, sections={"collect": collect})


def _count(tmp_path: Path, query: str) -> int:
    with sqlite3.connect(tmp_path / "digest.db") as conn:
        return int(conn.execute(query).fetchone()[0])


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _stored_fast_feeds(tmp_path: Path) -> int:
    if not (tmp_path / "digest.db").exists():
        return 0
    query = "SELECT count(*) FROM feeds WHERE last_success_at IS NOT NULL"
    with contextlib.suppress(sqlite3.OperationalError):  # not migrated yet
        return _count(tmp_path, query)
    return 0


@pytest.mark.slow
@pytest.mark.parametrize("command", ["collect", "send"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_mid_collect_keeps_the_stored_feeds_and_says_so(
    tmp_path: Path, held_feeds: _HeldFeeds, command: str, signum: int
) -> None:
    config = _held_config(tmp_path, held_feeds)
    digest = _Digest(config, command)
    held_feeds.wait_for_held(2)
    _wait_until(lambda: _stored_fast_feeds(tmp_path) == 3, "the three quick feeds stored")
    digest.process.send_signal(signum)
    code, out, err = digest.finish(timeout=60)  # the held fetches would take 120 s
    name = signal.Signals(signum).name
    assert code == 128 + signum, out + err
    assert f"{name}: stopping now; nothing half-done is kept" in err and "Traceback" not in err
    assert "interrupted: 3 of 5 feeds read and stored (22 new stories kept), 2 not read" in out
    assert [line.split()[1:3] for line in out.splitlines() if line.startswith("held")] == [
        ["not", "read"],
        ["not", "read"],
    ]
    assert _count(tmp_path, "SELECT count(*) FROM stories") == 22
    assert _count(tmp_path, "SELECT count(*) FROM feeds WHERE url LIKE '%/held/%'") == 0
    assert _count(tmp_path, "SELECT count(*) FROM editions") == 0
    assert _count(tmp_path, "SELECT count(*) FROM deliveries") == 0
    if command == "send":
        assert "stopped on request while collecting; nothing built or archived" in out
    assert _ledger(tmp_path) == Counter()  # integrity_check too


@pytest.mark.slow
def test_an_interrupt_mid_collect_of_a_large_run_parsed_in_worker_processes(
    tmp_path: Path, held_feeds: _HeldFeeds
) -> None:
    config = _held_config(tmp_path, held_feeds, copies=6)  # 18 + 2 feeds: the parsing pool
    digest = _Digest(config, "collect")
    held_feeds.wait_for_held(2)
    _wait_until(lambda: _stored_fast_feeds(tmp_path) == 18, "the 18 quick feeds stored")
    digest.process.send_signal(signal.SIGINT)
    code, out, err = digest.finish(timeout=60)
    assert code == 130, out + err
    assert "interrupted: 18 of 20 feeds read and stored" in out and "2 not read" in out
    assert "Traceback" not in err
    assert _count(tmp_path, "SELECT count(*) FROM feeds WHERE url LIKE '%/held/%'") == 0
    assert _ledger(tmp_path) == Counter()  # integrity_check too


@pytest.mark.slow
def test_an_interrupt_while_building_archives_nothing_and_exits_130(tmp_path: Path) -> None:
    feeds = [{"url": str(FEEDS / name), "name": name} for name in FAST]
    config = write_settings(tmp_path, feeds)
    collected = _Digest(config, "collect", "--no-summarize").finish()
    assert collected[0] == 0, collected
    sender = _Digest(config, "send", "--no-collect")
    lock = tmp_path / "digest.db.send-lock"
    # The lock is written just before the edition is built (nothing to collect first).
    _wait_until(lambda: lock.exists() and str(sender.process.pid) in lock.read_text(), "lock")
    sender.process.send_signal(signal.SIGINT)
    code, out, err = sender.finish()
    assert code == 130, out + err
    assert "SIGINT: stopping now" in err and "finishing the message" not in err
    assert "Traceback" not in err
    assert "stopped on request while building it; nothing archived, nothing sent" in out
    assert _count(tmp_path, "SELECT count(*) FROM editions") == 0
    assert _ledger(tmp_path) == Counter()
    assert not (tmp_path / "outbox").exists() or not list((tmp_path / "outbox").iterdir())
    assert _count(tmp_path, "SELECT count(*) FROM stories") == 22  # the collect is kept


@pytest.mark.slow
def test_a_second_interrupt_while_delivering_exits_at_once_with_130(tmp_path: Path) -> None:
    in_flight = threading.Event()
    release = threading.Event()

    def on_data(address: str, number: int) -> str | None:
        if number == 5:  # the 5th message waits for its answer until the test is over
            in_flight.set()
            release.wait(60)
        return None

    sink = Sink(on_data=on_data)
    try:
        with running(sink) as port:
            config = smtp_settings(tmp_path, port, [{"url": str(FEEDS / "nasa.xml")}])
            sender = _Digest(config, "send")
            assert in_flight.wait(60)
            sender.process.send_signal(signal.SIGINT)
            sender.wait_for_err("SIGINT: finishing the message in flight")
            sender.process.send_signal(signal.SIGINT)
            code, out, err = sender.finish(timeout=30)
            release.set()
    finally:
        release.set()
    assert code == 130, out + err
    assert "SIGINT again: exiting now" in err and "Traceback" not in err
    # The store is whole: 4 sent, the one in flight uncertain (reported, never resent
    # blindly), the rest pending for the next run.
    assert _ledger(tmp_path) == Counter(sent=4, sending=1, pending=195)


def test_a_stop_request_abandons_only_abandonable_work_in_the_main_thread() -> None:
    stop = StopRequest()
    with abandonable(stop), pytest.raises(Interrupted) as caught:
        stop.request(signal.SIGTERM)
    assert caught.value.signum == signal.SIGTERM and stop.exit_code == 143
    with pytest.raises(Interrupted), abandonable(stop):  # already asked for: on entry
        pass
    outside = StopRequest()
    outside.request(signal.SIGINT)  # not abandonable: only recorded, for the loop to check
    assert outside.is_set() and outside.exit_code == 130
    plain = threading.Event()
    plain.set()
    with abandonable(plain):  # the daemon's event: never raises
        pass


def test_the_lock_file_names_its_holder_and_an_old_bare_pid_is_still_read(
    tmp_path: Path,
) -> None:
    lock = tmp_path / "digest.db.send-lock"
    lock.write_text("4242\n")
    assert read_lock_holder(lock) == SendLockHolder(pid=4242)
    lock.write_text("")  # released, or being written
    assert read_lock_holder(lock) == SendLockHolder()
    with SQLiteStore.open(tmp_path / "digest.db") as store:
        with store.send_lock(wait_seconds=1) as is_locked:
            assert is_locked
            holder = read_lock_holder(lock)
        assert lock.read_text() == ""  # emptied on release
    assert holder.pid == os.getpid() and holder.command is not None
    assert holder.command.startswith("digest") and holder.since_at is not None


@pytest.mark.slow
def test_an_interrupt_while_summarising_keeps_every_feed_and_says_so(tmp_path: Path) -> None:
    feeds = [{"url": str(FEEDS / name), "name": name} for name in FAST]
    collector = _Digest(write_settings(tmp_path, feeds), "collect", "--debug")
    # The edition is summarised after every feed is stored; --debug says when it starts.
    collector.wait_for_err("summarising the ")
    collector.process.send_signal(signal.SIGINT)
    code, out, err = collector.finish()
    assert code == 130, out + err
    assert "SIGINT: stopping now" in err and "Traceback" not in err
    assert "3 feeds: 3 read, 0 failed; 22 new stories" in out
    assert "interrupted while summarising: every feed's stories are stored" in out
    assert _count(tmp_path, "SELECT count(*) FROM stories") == 22
    assert _ledger(tmp_path) == Counter()  # integrity_check too


@pytest.mark.slow
def test_a_stop_that_lands_in_a_finaliser_still_stops_the_work() -> None:
    """A signal handled inside a __del__ cannot raise out of it (Python prints "Exception
    ignored in ..."): the stop is re-delivered, so the work still ends, without a traceback."""
    probe = (
        "import os, signal\n"
        "from digest.cli import _stop_on_signals\n"
        "from digest.interrupt import Interrupted, abandonable\n"
        "class Finalised:\n"
        "    def __del__(self):\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        for _ in range(100_000): pass  # the handler runs in here\n"
        "with _stop_on_signals() as stop:\n"
        "    try:\n"
        "        with abandonable(stop):\n"
        "            Finalised()  # dropped at once: its __del__ runs now\n"
        "            for _ in range(50_000_000): pass\n"
        "            print('went on')\n"
        "    except Interrupted:\n"
        "        print('interrupted')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "interrupted\n", done.stdout + done.stderr
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.count("SIGINT: ") == 1, done.stderr


@pytest.mark.slow
def test_ctrl_c_at_the_terminal_lets_sendmail_finish_the_message_in_flight(
    tmp_path: Path,
) -> None:
    """The terminal sends SIGINT to the whole foreground process group: the sendmail taking
    the message in flight must finish it (it is not digest's to kill), and digest stops after."""
    started, release = tmp_path / "sendmail-started", tmp_path / "release"
    script = (
        "import pathlib, sys, time\n"
        f"pathlib.Path({str(started)!r}).touch()\n"
        f"while not pathlib.Path({str(release)!r}).exists(): time.sleep(0.02)\n"
        f"open({str(tmp_path / 'kept.eml')!r}, 'ab').write(sys.stdin.buffer.read())\n"
    )
    config = write_settings(
        tmp_path,
        [{"url": str(FEEDS / "nasa.xml")}],
        sections={
            "delivery": {"backend": "sendmail", "sendmail_command": [sys.executable, "-c", script]}
        },
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    sender = subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(config), "send"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
        start_new_session=True,  # a group of its own, as a shell's foreground job
    )
    _wait_until(started.exists, "the first message handed to sendmail")
    os.killpg(sender.pid, signal.SIGINT)  # what Ctrl-C at the terminal does
    time.sleep(0.3)
    release.touch()
    out, err = sender.communicate(timeout=60)
    assert sender.returncode == 130, out + err
    assert _ledger(tmp_path) == Counter({"sent": 1, "pending": 1}), out + err
    assert (tmp_path / "kept.eml").read_bytes().count(b"Message-ID:") == 1


# Item 13.6: nothing outlives a stopped or killed collect


def _process_tree(pid: int) -> dict[int, int]:
    """Every live descendant of ``pid`` (read from /proc), each with its start time, so that
    a pid the kernel hands on to a new process is not taken for the old one."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents.setdefault(int(stat[1]), []).append(int(entry.name))
    tree: dict[int, int] = {}
    todo = list(parents.get(pid, []))
    while todo:
        child = todo.pop()
        if (stat := _stat(child)) is not None and stat[0] != "Z":
            tree[child] = int(stat[19])
            todo += parents.get(child, [])
    return tree


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (state, ppid, ...), None once gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _still_running(tree: dict[int, int]) -> list[str]:
    """The processes of ``tree`` still running (a zombie has ended), with their command lines."""
    running = []
    for pid, started in tree.items():
        stat = _stat(pid)
        if stat is not None and stat[0] != "Z" and int(stat[19]) == started:
            with contextlib.suppress(OSError):
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                running.append(f"{pid}: {command.decode(errors='replace')[:200]}")
    return running


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "signum"),
    [
        ("collect", signal.SIGKILL),
        ("collect", signal.SIGTERM),
        ("collect", signal.SIGINT),
        ("run", signal.SIGKILL),  # the daemon's collect job at start-up
    ],
    ids=["collect-KILL", "collect-TERM", "collect-INT", "daemon-KILL"],
)
def test_no_parsing_process_outlives_a_collect_that_is_stopped_or_killed(
    tmp_path: Path, held_feeds: _HeldFeeds, command: str, signum: int
) -> None:
    if not Path("/proc/self/stat").exists():
        cannot_run_here("this test reads the process tree from /proc (Linux)")
    if (os.cpu_count() or 1) < 2:
        cannot_run_here(
            "one core: collect parses in its own process, with no workers to outlive it"
        )
    config = _held_config(tmp_path, held_feeds, copies=6)  # 18 + 2 feeds: the parsing pool
    digest = _Digest(config, command)
    held_feeds.wait_for_held(2)
    _wait_until(lambda: _stored_fast_feeds(tmp_path) == 18, "the 18 quick feeds stored")
    tree = _process_tree(digest.process.pid)
    # The forkserver, its parsing workers and the resource tracker.
    assert len(tree) >= 3, _still_running(tree)
    digest.process.send_signal(signum)
    try:
        digest.process.wait(timeout=60)
        with contextlib.suppress(AssertionError):
            _wait_until(lambda: not _still_running(tree), "the parsing processes to end", 10)
        assert _still_running(tree) == []
    finally:
        for pid in tree:  # left over: ended here, or they would hold the test's pipes open
            with contextlib.suppress(OSError):
                if _still_running({pid: tree[pid]}):
                    os.kill(pid, signal.SIGKILL)
        digest.finish(timeout=60)


# A stand-in for a slow part of the interpreter's exit, at one stage of it, then the real
# CLI: it touches argv[2] once that stage is reached, and waits for argv[3] to exist.
_SLOW_EXIT = """
import os, sys, threading, time
stage, reached, release = sys.argv[1:4]
def slow(reached=reached, release=release, os=os, sleep=time.sleep):
    # All it uses in its defaults: globals and builtins are gone when modules are torn down.
    os.close(os.open(reached, os.O_CREAT | os.O_WRONLY))
    while not os.path.exists(release):
        sleep(0.02)
def joined():  # joined once the main thread is done: the first stage of exiting
    while threading.main_thread().is_alive():
        time.sleep(0.02)
    slow()
class Finalised:  # dropped with this module's globals, after the atexit hooks
    def __del__(self, slow=slow):
        slow()
if stage == "joining threads":
    threading.Thread(target=joined).start()
from digest.cli import cli
if stage == "atexit hooks":
    import atexit
    atexit.register(slow)
if stage == "tearing down modules":
    kept = Finalised()
cli(sys.argv[4:], prog_name="digest")
"""


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["joining threads", "atexit hooks", "tearing down modules"])
def test_a_second_sigterm_while_python_exits_still_exits_143(
    tmp_path: Path, held_feeds: _HeldFeeds, stage: str
) -> None:
    config = _held_config(tmp_path, held_feeds)
    reached, release = tmp_path / "reached", tmp_path / "release"
    argv = [stage, str(reached), str(release), "--config", str(config), "collect"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    collector = subprocess.Popen(
        [sys.executable, "-c", _SLOW_EXIT, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        held_feeds.wait_for_held(2)
        collector.send_signal(signal.SIGTERM)
        _wait_until(reached.exists, f"the exit to reach {stage}")
        collector.send_signal(signal.SIGTERM)
    finally:
        release.touch()
        out, err = collector.communicate(timeout=60)
    assert collector.returncode == 143, out + err
    assert "SIGTERM: stopping now" in err and "Traceback" not in err
