"""The send and collect flow with real `python -m digest` processes: a second sender waits
for the first before doing any work and says so; interrupts (SIGINT, SIGTERM) stop
promptly, say what was kept, and exit 128 + the signal."""

from __future__ import annotations

import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from tests.conftest import REPO, FeedServer, write_settings
from tests.deliver_sink import Sink, running

RECIPIENTS = tuple(f"reader{n:03d}@example.org" for n in range(200))


def _smtp_config(tmp_path: Path, port: int, feeds: list[dict[str, str]]) -> Path:
    return write_settings(
        tmp_path,
        feeds,
        recipients=RECIPIENTS,
        sections={
            "delivery": {"backend": "smtp"},
            "smtp": {"host": "127.0.0.1", "port": port, "security": "none",
                     "timeout_seconds": 10.0, "retry_backoff_seconds": 0.01,
                     "max_messages_per_connection": 1000},
        },
    )  # fmt: skip


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
        self._reader = threading.Thread(target=self._read_err, daemon=True)
        self._reader.start()

    def _read_err(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.err.append(line)
            self.err_lines.put(line)

    def wait_for_err(self, text: str, timeout: float = 60) -> str:
        """The first stderr line holding ``text`` (failing after ``timeout`` seconds)."""
        while True:
            line = self.err_lines.get(timeout=timeout)
            if text in line:
                return line

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        out, _ = self.process.communicate(timeout=timeout)
        self._reader.join(timeout)
        return self.process.returncode, out, "".join(self.err)


def _ledger(tmp_path: Path) -> Counter[str]:
    with sqlite3.connect(tmp_path / "digest.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return Counter(row[0] for row in conn.execute("SELECT state FROM deliveries"))


def _feed_fetches(server: FeedServer) -> int:
    return sum(path.startswith("/feeds/") for path, _ in server.requests)


# Item 12: two senders at once


def test_a_second_sender_waits_before_collecting_and_says_for_whom(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    pids: list[int] = []
    frozen = threading.Event()

    def on_data(address: str, number: int) -> str | None:
        if number == 10:  # the first sender, the lock in hand, stops mid-edition
            os.kill(pids[0], signal.SIGSTOP)
            frozen.set()
        return None

    sink = Sink(on_data=on_data)
    with running(sink) as port:
        config = _smtp_config(tmp_path, port, [{"url": feed_server.url("feeds/nasa.xml")}])
        first = _Digest(config, "send")
        pids.append(first.process.pid)
        assert frozen.wait(60)
        second = _Digest(config, "send")
        line = second.wait_for_err("waiting for another digest send to finish")
        assert f"pid {first.process.pid}, `digest --config {config} send`" in line
        assert "sending since 20" in line
        assert _feed_fetches(feed_server) == 1  # the second has not collected while it waits
        assert second.process.poll() is None
        os.kill(first.process.pid, signal.SIGCONT)
        first_code, first_out, _ = first.finish()
        second_code, second_out, _ = second.finish()
    assert first_code == 0 and "sent 200, failed 0" in first_out
    assert second_code == 0, second_out
    assert "sent 0, failed 0, already sent 200" in second_out
    assert _feed_fetches(feed_server) == 2  # it collected once it had the lock
    assert sorted(sink.copies_by_recipient().values()) == [1] * 200
    assert _ledger(tmp_path) == Counter(sent=200)
