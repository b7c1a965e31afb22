"""`digest send --workers N`: N sender threads in one process against N sender processes.

The same queue worker (``send_queue.work_queue``: its own store connection and SMTP
connection each) delivers an archived edition to ``--recipients`` readers from one SQLite
store, over plain SMTP to an aiosmtpd sink in its own process that answers at once. Threads
share one interpreter (message building is CPU-bound Python, under the GIL); processes pay
their start (imports) but build messages on every core. Wall time of the queue phase only
(the edition is built and its rows added before the clock starts); process start counted.

    .venv/bin/python benchmarks/send_workers.py [--recipients 3000] [--workers 1 2 4]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scale import Sink  # benchmarks/scale.py's loopback sink, in its own process

from digest.config import Settings, validate_settings
from digest.ledger import planned_deliveries
from digest.models import DeliveryState, RenderedDigest
from digest.runtime import Runtime
from digest.send_queue import QueueTurn, new_sender_id, work_queue
from digest.send_workers import send_with_workers
from digest.sqlite_store import SQLiteStore

NOW = datetime(2025, 3, 1, 5, 0, tzinfo=UTC)
RENDERED = RenderedDigest(
    edition_on=NOW.date(),
    subject="Daily Digest, 1 March",
    html="<html><body>" + "<p>A story paragraph, <b>bold</b> and plain.</p>" * 600 + "</body>",
    text="A story paragraph, bold and plain.\n" * 600,
)  # about 40 KB, the size benchmarks/deliver.py sends


def _raw_settings(folder: Path, port: int) -> dict[str, Any]:
    return {
        "timezone": "UTC",
        "store": {"path": str(folder / "digest.db")},
        "feeds": [{"url": str(folder / "none.xml")}],
        "summarize": {"summarizer": "lead"},
        "delivery": {
            "backend": "smtp",
            "from": "Daily Digest <digest@example.org>",
            "unsubscribe_url": "https://example.org/unsubscribe",
        },
        "smtp": {"host": "127.0.0.1", "port": port, "security": "none",
                 "max_messages_per_connection": 100000},
    }  # fmt: skip


def _prepare(settings: Settings, n: int) -> None:
    """The archived edition, ``n`` active subscribers and their pending rows."""
    readers = [(f"reader{i:05d}@example.org", None) for i in range(n)]
    with SQLiteStore.open(settings.store.path) as store:
        store.create_edition(RENDERED, [], NOW)
        store.add_subscribers("default", readers, how="cli", now=NOW)
        store.add_deliveries(planned_deliveries(settings, [r for r, _ in readers], NOW.date()), NOW)


def _turn() -> QueueTurn:
    return QueueTurn(edition_on=NOW.date(), retry_before=NOW)


def _process_worker(raw: dict[str, Any], path: str, worker: int) -> None:
    settings = validate_settings(raw, Path(path))
    with Runtime.open(settings) as runtime:
        assert runtime.mailers is not None
        work_queue(runtime, runtime.mailers, _turn(), sender=new_sender_id(worker))


def _run(mode: str, workers: int, n: int, port: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="digest-bench-workers-") as tmp:
        folder = Path(tmp)
        raw = _raw_settings(folder, port)
        settings = validate_settings(raw, folder / "settings.toml")
        _prepare(settings, n)
        started = time.perf_counter()
        if mode == "threads":
            with Runtime.open(settings) as runtime:
                assert runtime.mailers is not None
                send_with_workers(runtime, runtime.mailers, _turn(), workers=workers)
        else:
            spawn = multiprocessing.get_context("spawn")
            path = str(folder / "settings.toml")
            children = [
                spawn.Process(target=_process_worker, args=(raw, path, w)) for w in range(workers)
            ]
            for child in children:
                child.start()
            for child in children:
                child.join()
        seconds = time.perf_counter() - started
        with SQLiteStore.open(settings.store.path) as store:
            sent = sum(d.state is DeliveryState.SENT for d in store.deliveries(NOW.date()))
    return seconds, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=3000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    sink = Sink()
    print(f"{args.recipients} recipients, ~40 KB message, plain SMTP to a loopback sink")
    print(f"{'mode':<10} {'workers':>7} {'median s':>9} {'msgs/s':>8}  runs")
    for workers in args.workers:
        for mode in ("threads", "processes"):
            runs = []
            for _ in range(args.repeat):
                seconds, sent = _run(mode, workers, args.recipients, sink.port)
                received = sink.taken()
                assert sent == received == args.recipients, (mode, workers, sent, received)
                runs.append(seconds)
            median = statistics.median(runs)
            shown = " ".join(f"{r:.2f}" for r in runs)
            rate = args.recipients / median
            print(f"{mode:<10} {workers:>7} {median:>9.2f} {rate:>8.0f}  {shown}")
    sink.stop()


if __name__ == "__main__":
    main()
