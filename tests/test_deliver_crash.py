"""Crash tests with real processes: `digest send` to 200 recipients over real SMTP, killed
(SIGKILL) at several points, including between the server's 250 and our commit, then run
again: every recipient has exactly one copy, except at most the one uncertain row, which is
reported. SIGTERM finishes the message in flight; two senders at once share the edition and
send each copy once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from digest.send_queue import BATCH_SIZE
from digest.sqlite_store import SQLiteStore
from tests.conftest import REPO
from tests.deliver_sink import DROP, RECIPIENTS, Sink, running, smtp_settings

pytestmark = pytest.mark.slow

FEED = str(REPO / "tests" / "fixtures" / "feeds" / "nasa.xml")


def _start(config: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    return subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(config), "send", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def _read_until(process: subprocess.Popen[str], line_part: str) -> str:
    """Its stderr up to and including the first line holding ``line_part`` (all of it, if
    the process ends first)."""
    assert process.stderr is not None
    seen = ""
    while line := process.stderr.readline():
        seen += line
        if line_part in line:
            break
    return seen


def _finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def _states(tmp_path: Path) -> Counter[str]:
    with sqlite3.connect(tmp_path / "digest.db") as conn:
        return Counter(row[0] for row in conn.execute("SELECT state FROM deliveries"))


def _kill_hook(pids: list[int], k: int, when: str) -> Sink:
    """A sink that kills the sender at message k: before answering the DATA (the server
    never says 250), or after answering 250 while the sender is stopped (it never reads
    the 250), or at RCPT (before the row is even marked sending)."""

    def on_data(address: str, number: int) -> str | None:
        if number != k:
            return None
        if when == "before-250":
            os.kill(pids[0], signal.SIGKILL)
            return DROP
        if when == "after-250":
            os.kill(pids[0], signal.SIGSTOP)
            threading.Timer(0.5, os.kill, (pids[0], signal.SIGKILL)).start()
        return None

    def on_rcpt(address: str, attempt: int) -> str | None:
        if when == "at-rcpt" and sum(sink.rcpt_attempts.values()) == k:
            os.kill(pids[0], signal.SIGKILL)
            return DROP
        return None

    sink = Sink(on_data=on_data, on_rcpt=on_rcpt)
    return sink


@pytest.mark.parametrize(
    ("k", "when"),
    [(1, "after-250"), (57, "before-250"), (120, "at-rcpt"), (200, "after-250")],
)
def test_sigkill_then_restart_gives_every_recipient_exactly_one_copy(
    tmp_path: Path, k: int, when: str
) -> None:
    pids: list[int] = []
    sink = _kill_hook(pids, k, when)
    with running(sink) as port:
        config = smtp_settings(tmp_path, port, [{"url": FEED, "name": "NASA"}])
        first = _start(config)
        pids.append(first.pid)
        code, _, _ = _finish(first)
        assert code == -signal.SIGKILL
        delivered_before = len(sink.accepted)
        assert delivered_before == (k if when == "after-250" else k - 1)
        code, out, err = _finish(_start(config))
        copies = sink.copies_by_recipient()
        assert set(copies) <= set(RECIPIENTS)
        assert len(sink.copies_by_message_id()) == len(copies)  # one identity per recipient
        assert all(n == 1 for n in copies.values())
        uncertain = 0 if when == "at-rcpt" else 1
        assert len(copies) == 200 - (1 if when == "before-250" else 0)
        assert _states(tmp_path) == Counter(sent=200 - uncertain, sending=uncertain)
        assert f"uncertain {uncertain}" in out
        assert code == (1 if uncertain else 0), out + err
        if uncertain:
            assert "--resend-uncertain" in out and "Traceback" not in err
            code, out, err = _finish(_start(config, "--no-collect", "--resend-uncertain"))
            assert code == 0, out + err
            assert "sent 1, failed 0, already sent 199, uncertain 0" in out
    copies = sink.copies_by_recipient()
    assert set(copies) == set(RECIPIENTS)
    expected_twice = 1 if when == "after-250" else 0  # the uncertain one, resent on request
    assert sorted(copies.values()) == [1] * (200 - expected_twice) + [2] * expected_twice
    assert len(sink.copies_by_message_id()) == 200


def test_sigterm_finishes_the_message_in_flight_and_exits_cleanly(tmp_path: Path) -> None:
    pids: list[int] = []

    def on_data(address: str, number: int) -> str | None:
        if number == 50:
            os.kill(pids[0], signal.SIGTERM)  # arrives while the sender waits for the 250
        return None

    sink = Sink(on_data=on_data)
    with running(sink) as port:
        config = smtp_settings(tmp_path, port, [{"url": FEED, "name": "NASA"}])
        first = _start(config)
        pids.append(first.pid)
        code, out, err = _finish(first)
        assert code == 128 + signal.SIGTERM, out + err
        assert "Traceback" not in err and "SIGTERM: finishing the message in flight" in err
        assert "sent 50, failed 0, already sent 0, uncertain 0, not sent yet 150" in out
        assert "stopped on request: 150 not sent yet" in out
        assert _states(tmp_path) == Counter(sent=50, pending=150)
        code, out, err = _finish(_start(config))
        assert code == 0, out + err
    assert sorted(sink.copies_by_recipient().values()) == [1] * 200


class _FrozenFirstSender:
    """A sink that freezes (SIGSTOP) the first sender at its 10th message, its batch leased."""

    def __init__(self) -> None:
        self.pids: list[int] = []
        self.paused = threading.Event()
        self.sink = Sink(on_data=self._on_data)

    def _on_data(self, address: str, number: int) -> str | None:
        if number == 10:
            os.kill(self.pids[0], signal.SIGSTOP)
            self.paused.set()
        return None

    def start_first(self, config: Path) -> subprocess.Popen[str]:
        first = _start(config)
        self.pids.append(first.pid)
        assert self.paused.wait(60)
        return first


def _wait_for(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)


def test_two_senders_at_once_share_the_edition_and_send_each_copy_once(tmp_path: Path) -> None:
    frozen = _FrozenFirstSender()
    sink = frozen.sink
    with running(sink) as port:
        config = smtp_settings(tmp_path, port, [{"url": FEED, "name": "NASA"}])
        first = frozen.start_first(config)  # frozen at message 10 of its leased batch
        second = _start(config, "--no-collect")
        # The second sends every row the first has not leased, then waits for those: the
        # first's lease is renewed by nobody, but it has not run out (60 s).
        leased = BATCH_SIZE - 10
        _wait_for(lambda: len(sink.accepted) == 200 - leased)
        time.sleep(1)
        assert second.poll() is None and len(sink.accepted) == 200 - leased
        assert _states(tmp_path) == Counter(sent=200 - leased - 1, sending=1, pending=leased)
        os.kill(first.pid, signal.SIGCONT)
        first_code, first_out, first_err = _finish(first)
        second_code, second_out, _ = _finish(second)
    assert first_code == 0 and "failed 0, already sent 0, uncertain 0" in first_out, first_err
    assert second_code == 0 and "failed 0, already sent 9, uncertain 0" in second_out
    assert sorted(sink.copies_by_recipient().values()) == [1] * 200
    assert len(sink.copies_by_message_id()) == 200
    assert _states(tmp_path) == Counter(sent=200)


def test_sigterm_while_waiting_for_another_sender_says_so_and_exits_1(tmp_path: Path) -> None:
    sink = Sink()
    with running(sink) as port:
        config = smtp_settings(tmp_path, port, [{"url": FEED, "name": "NASA"}])
        # This test holds the send lock, as a sender building the edition does.
        with SQLiteStore.open(tmp_path / "digest.db") as store, store.send_lock(wait_seconds=1):
            second = _start(config, "--no-collect")
            # Its stop handler is in place once it says it waits: a loaded machine can take
            # seconds to get there, and a SIGTERM before would meet Python's default.
            said = _read_until(second, "waiting for another digest send")
            second.send_signal(signal.SIGTERM)
            code, out, err = _finish(second)
        err = said + err
    # It sent nothing and did not finish its job: not "no new stories", and not exit 0.
    assert f"pid {os.getpid()}" in said and "to collect and build the edition" in said
    assert code == 128 + signal.SIGTERM, out + err
    assert "no new stories" not in out
    assert "stopped on request while waiting for another digest send" in out
    assert sink.accepted == [] and _states(tmp_path) == Counter()
