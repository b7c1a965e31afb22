"""`digest send --workers N` in one process, over real SMTP (aiosmtpd on 127.0.0.1) with a
real SQLite store: the workers share the edition, each recipient gets one message, the report
covers every worker's rows, and a stop request reaches all of them."""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from pathlib import Path

from click.testing import CliRunner

from digest.cli import cli
from digest.config import load_settings
from digest.models import DeliveryState
from digest.runtime import Runtime
from digest.send_queue import BATCH_SIZE
from digest.sending import send_edition
from tests.conftest import FEEDS, write_settings
from tests.deliver_sink import Sink, running

READERS = tuple(f"reader{n:03d}@example.org" for n in range(2 * BATCH_SIZE + 20))


def _config(tmp_path: Path, port: int) -> Path:
    return write_settings(
        tmp_path,
        [{"url": str(FEEDS / "nasa.xml"), "name": "NASA"}],
        recipients=READERS,
        sections={
            "delivery": {"backend": "smtp"},
            "smtp": {"host": "127.0.0.1", "port": port, "security": "none",
                     "timeout_seconds": 5.0, "retry_backoff_seconds": 0.01},
        },
    )  # fmt: skip


def _leased_by(tmp_path: Path) -> Counter[str]:
    with sqlite3.connect(tmp_path / "digest.db") as conn:
        rows = conn.execute("SELECT leased_by FROM deliveries WHERE state = 'sent'").fetchall()
    return Counter(str(by) for (by,) in rows)


def test_workers_share_the_edition_and_the_report_covers_every_row(tmp_path: Path) -> None:
    sink = Sink()
    with running(sink) as port:
        result = CliRunner().invoke(
            cli, ["--config", str(_config(tmp_path, port)), "send", "--workers", "3"]
        )
    assert result.exit_code == 0, result.output
    summary = f"sent {len(READERS)}, failed 0, already sent 0, uncertain 0"
    assert summary in result.output
    assert all(f"  {reader}: sent" in result.output for reader in READERS)
    assert sink.copies_by_recipient() == dict.fromkeys(READERS, 1)
    assert len(sink.copies_by_message_id()) == len(READERS)
    senders = _leased_by(tmp_path)
    assert len(senders) >= 2 and sum(senders.values()) == len(READERS)  # shared, by batches


def test_a_stop_request_reaches_every_worker_and_leaves_the_rest_pending(tmp_path: Path) -> None:
    stop = threading.Event()

    def on_data(address: str, number: int) -> str | None:
        if number == 5:
            stop.set()
        return None

    sink = Sink(on_data=on_data)
    with running(sink) as port:
        settings = load_settings(_config(tmp_path, port))
        with Runtime.open(settings) as runtime:
            report = send_edition(runtime, collect=True, stop=stop, workers=3)
    states = Counter(d.state for d in report.deliveries)
    assert report.stopped and len(report.deliveries) == len(READERS)
    # Each worker finishes the message in flight (the 5th and those beside it), no more.
    assert 5 <= states[DeliveryState.SENT] <= 7 and DeliveryState.SENDING not in states
    assert states[DeliveryState.SENT] + states[DeliveryState.PENDING] == len(READERS)
    assert sorted(sink.copies_by_recipient().values()) == [1] * states[DeliveryState.SENT]
