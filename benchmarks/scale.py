"""Issue 18's table: how far sending scales with senders, on SQLite and on PostgreSQL.

- **SMTP**: N ``digest send --no-collect`` processes (the real CLI) deliver one archived
  edition (~40 KB) to ``--recipients`` readers over plain SMTP to an aiosmtpd sink in its own
  process that answers at once. The wall time runs from starting the processes to the last
  exit (so it counts their start); the send phase is the first to the last ``sent_at`` in the
  ledger.
- **sink ceiling**: raw smtplib clients (1 and 4 processes, one connection each) blasting the
  same message at the sink: the most any sender count can get through it on this machine.
- **ledger only**: N processes run the real queue worker (``send_queue.work_queue``: lease a
  batch, claim each row ``sending`` in its own commit, build its message, mark it ``sent``)
  with a mail backend that accepts at once; timed from a common start once all have opened
  the store.
- **headers**: ``EditionMessages.for_recipient`` with a per-reader unsubscribe link against
  the one static link, µs per message.
- **projection**: 1,000,000 recipients at the best rate measured here, and with more machines.

    .venv/bin/python benchmarks/scale.py [--recipients 2000] [--repeat 3]
    .venv/bin/python benchmarks/scale.py --quick      # SQLite, 1 and 2 senders, a few seconds

PostgreSQL is ``--postgres-url`` (default ``postgresql://postgres@127.0.0.1:5432/test``); the
benchmark creates a database of its own there and drops it at the end. Only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import secrets
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiosmtpd.controller import Controller

from digest.config import Settings, load_settings
from digest.ledger import planned_deliveries
from digest.mailers import OutgoingMessage
from digest.messages import EditionMessages
from digest.models import DeliveryState, RenderedDigest
from digest.pg_connection import close_pools
from digest.runtime import Runtime
from digest.send_queue import QueueTurn, new_sender_id, work_queue
from digest.subscribers import LIST_SLUG

REPO = Path(__file__).resolve().parent.parent
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
SENDER = "Daily Digest <digest@example.org>"
BODY_HTML = "<html><body>" + "<p>A story paragraph, <b>bold</b> and plain.</p>" * 600 + "</body>"
BODY_TEXT = "A story paragraph, bold and plain.\n" * 600  # ~40 KB, as benchmarks/deliver.py
MILLION = 1_000_000


def _rendered(day: date) -> RenderedDigest:
    return RenderedDigest(edition_on=day, subject="Daily Digest", html=BODY_HTML, text=BODY_TEXT)


def _readers(n: int) -> list[str]:
    return [f"reader{i:07d}@example.org" for i in range(n)]


# --- the sink ------------------------------------------------------------------------------


class _Counter:
    def __init__(self) -> None:
        self.messages = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages += 1
        return "250 OK"


def _serve(port: int, pipe: Connection) -> None:
    counter = _Counter()
    controller = Controller(counter, hostname="127.0.0.1", port=port)
    controller.start()
    pipe.send("ready")
    while pipe.recv() != "stop":
        pipe.send(counter.messages)
        counter.messages = 0
    controller.stop()


class Sink:
    """The aiosmtpd sink in its own process; ``taken()`` is what it accepted since last asked."""

    def __init__(self) -> None:
        self.port = _free_port()
        self._pipe, child = multiprocessing.Pipe()
        spawn = multiprocessing.get_context("spawn")
        self._process = spawn.Process(target=_serve, args=(self.port, child), daemon=True)
        self._process.start()
        assert self._pipe.recv() == "ready"

    def taken(self) -> int:
        self._pipe.send("count")
        return int(self._pipe.recv())

    def stop(self) -> None:
        self._pipe.send("stop")
        self._process.join(10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _blast(port: int, count: int, data: bytes, ready: Any, go: Event) -> None:
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        ready.put(True)
        go.wait()
        for i in range(count):
            smtp.sendmail("digest@example.org", [f"reader{i}@example.org"], data)


def sink_ceiling(sink: Sink, clients: int, count: int) -> float:
    """Messages/s that ``clients`` raw smtplib processes, connected, get through the sink."""
    day, now = date(2025, 3, 1), datetime.now(UTC)
    data = _static_messages(day).for_recipient("reader@example.org", "<m@example.org>", now).data
    spawn = multiprocessing.get_context("spawn")
    ready, go = spawn.Queue(), spawn.Event()
    each = max(1, count // clients)
    children = [
        spawn.Process(target=_blast, args=(sink.port, each, data, ready, go))
        for _ in range(clients)
    ]
    seconds = _timed_together(children, ready, go)
    assert sink.taken() == each * clients
    return each * clients / seconds


def _timed_together(children: list[Any], ready: Any, go: Event) -> float:
    """Seconds from releasing ``children`` at once (each ready first) to the last exit."""
    for child in children:
        child.start()
    for _ in children:
        ready.get(timeout=120)
    started = time.perf_counter()
    go.set()
    for child in children:
        child.join()
    seconds = time.perf_counter() - started
    assert all(child.exitcode == 0 for child in children), [c.exitcode for c in children]
    return seconds


# --- stores --------------------------------------------------------------------------------


class Stores:
    """Fresh empty stores: a SQLite file in a temporary folder, or a PostgreSQL schema in a
    database of the benchmark's own (created on first use, dropped by ``close``)."""

    def __init__(self, folder: Path, postgres_url: str) -> None:
        self.folder, self.postgres_url = folder, postgres_url
        self._database: str | None = None
        self._made = 0

    def new(self, engine: str) -> str:
        self._made += 1
        if engine == "sqlite":
            return f"sqlite:///{self.folder / f'store{self._made}.db'}"
        schema = f"run{self._made}"
        with self._admin(self._database_url()) as admin:
            admin.execute(f'CREATE SCHEMA "{schema}"')
        parts = urlsplit(self._database_url())
        query = [*parse_qsl(parts.query), ("options", f"-csearch_path={schema}")]
        return urlunsplit(parts._replace(query=urlencode(query)))

    def _database_url(self) -> str:
        if self._database is None:
            name = f"digest_bench_scale_{os.getpid()}_{secrets.token_hex(3)}"
            with self._admin(self.postgres_url) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
            self._database = name
        return urlunsplit(urlsplit(self.postgres_url)._replace(path=f"/{self._database}"))

    @staticmethod
    def _admin(url: str) -> Any:
        import psycopg

        return psycopg.connect(url, autocommit=True, connect_timeout=5)

    def close(self) -> None:
        if self._database is not None:
            with self._admin(self.postgres_url) as admin:
                admin.execute(f'DROP DATABASE "{self._database}" WITH (FORCE)')


def postgres_unreachable(url: str) -> str | None:
    """Why the PostgreSQL server cannot be used, or None."""
    import psycopg

    host = urlsplit(url).hostname
    if host != "127.0.0.1":
        return f"{url}: the benchmark talks to 127.0.0.1 only"
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        return f"PostgreSQL at {url} is unreachable: {str(exc).strip().splitlines()[0]}"
    return None


def write_config(folder: Path, store_url: str, port: int) -> Path:
    path = folder / f"settings-{secrets.token_hex(4)}.toml"
    path.write_text(
        f"""timezone = "UTC"

[store]
url = "{store_url}"

[[feeds]]
url = "{folder / "none.xml"}"

[summarize]
summarizer = "lead"

[render]
empty_edition = "send"

[delivery]
backend = "smtp"
from = "{SENDER}"
unsubscribe_url = "https://example.org/unsubscribe"

[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
max_messages_per_connection = 100000
""",
        encoding="utf-8",
    )
    return path


def prepare(settings: Settings, n: int, day: date) -> None:
    """Today's archived edition, ``n`` active subscribers and their pending rows."""
    now = datetime.now(UTC)
    readers = _readers(n)
    with Runtime.open(settings) as runtime:
        runtime.store.create_edition(_rendered(day), [], now)
        runtime.store.add_subscribers(LIST_SLUG, [(r, None) for r in readers], how="cli", now=now)
        runtime.store.add_deliveries(planned_deliveries(settings, readers, day), now)


@dataclass(frozen=True, slots=True)
class Sent:
    count: int
    first_at: datetime
    last_at: datetime


def sent_rows(settings: Settings, day: date) -> Sent:
    """The run's sent rows, read once it is over (then this process's pools close: each run's
    own PostgreSQL schema would keep a pool of connections open otherwise)."""
    with Runtime.open(settings, access="read") as runtime:
        rows = [d for d in runtime.store.deliveries(day) if d.state is DeliveryState.SENT]
    close_pools()
    times = [d.sent_at for d in rows if d.sent_at is not None]
    return Sent(len(rows), min(times), max(times))


# --- the SMTP run: N `digest send --no-collect` processes -----------------------------------


@dataclass(frozen=True, slots=True)
class Timing:
    wall: float  # start of the processes to the last exit
    phase: float  # first to last message, from the ledger


def smtp_run(stores: Stores, engine: str, senders: int, n: int, sink: Sink) -> Timing:
    url = stores.new(engine)
    config = write_config(stores.folder, url, sink.port)
    settings = load_settings(config)
    day = datetime.now(UTC).date()
    prepare(settings, n, day)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "digest", "--config", str(config), "send", "--no-collect"]
    started = time.perf_counter()
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        for _ in range(senders)
    ]
    outputs = [p.communicate(timeout=1800) for p in processes]
    wall = time.perf_counter() - started
    for process, (out, err) in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise RuntimeError(
                f"digest send exited {process.returncode}: {out[-800:]!r} {err[-800:]!r}"
            )
    sent = sent_rows(settings, day)
    received = sink.taken()
    assert sent.count == received == n, (engine, senders, sent.count, received, n)
    return Timing(wall, (sent.last_at - sent.first_at).total_seconds())


# --- the ledger-only run: the real queue worker, a backend that accepts at once -------------


class AcceptingMailer:
    """A mail backend that takes every message at once: only the queue is left to time."""

    def send(self, message: OutgoingMessage, *, before_data: Callable[[], None]) -> str:
        before_data()
        return "250 accepted"

    def close(self) -> None:
        pass


def _ledger_worker(config: str, day: date, ready: Any, go: Event, worker: int) -> None:
    settings = load_settings(Path(config))
    with Runtime.open(settings) as runtime:
        ready.put(worker)
        go.wait()
        turn = QueueTurn(edition_on=day, retry_before=datetime.now(UTC))
        halt = work_queue(runtime, AcceptingMailer, turn, sender=new_sender_id(worker))
        assert halt is None, halt


def ledger_run(stores: Stores, engine: str, senders: int, n: int) -> float:
    url = stores.new(engine)
    config = write_config(stores.folder, url, 9)  # port 9: the backend never connects
    settings = load_settings(config)
    day = datetime.now(UTC).date()
    prepare(settings, n, day)
    spawn = multiprocessing.get_context("spawn")
    ready, go = spawn.Queue(), spawn.Event()
    children = [
        spawn.Process(target=_ledger_worker, args=(str(config), day, ready, go, w))
        for w in range(senders)
    ]
    seconds = _timed_together(children, ready, go)
    assert sent_rows(settings, day).count == n
    return seconds


# --- per-recipient headers -------------------------------------------------------------------


def _static_messages(day: date) -> EditionMessages:
    return EditionMessages(
        _rendered(day), sender=SENDER, unsubscribe_url="https://example.org/unsubscribe"
    )


def header_costs(n: int) -> tuple[float, float]:
    """µs per message: the static unsubscribe link, then each reader's own."""
    day, now = date(2025, 3, 1), datetime.now(UTC)
    readers = _readers(n)
    links = {r: f"https://example.org/u/{secrets.token_urlsafe(48)}" for r in readers}
    per_reader = EditionMessages(
        _rendered(day),
        sender=SENDER,
        unsubscribe_url="https://example.org/unsubscribe",
        reader_links=links,
    )
    costs = []
    for messages in (_static_messages(day), per_reader):
        started = time.perf_counter()
        for i, reader in enumerate(readers):
            messages.for_recipient(reader, f"<{i}@example.org>", now)
        costs.append((time.perf_counter() - started) / n * 1e6)
    return costs[0], costs[1]


# --- the table -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    kind: str
    engine: str
    senders: int
    seconds: list[float]
    n: int

    @property
    def rate(self) -> float:
        return self.n / statistics.median(self.seconds)


def _line(row: Row, base: Row | None, extra: str = "") -> str:
    ratio = f"{row.rate / base.rate:.2f}x" if base is not None else "-"
    runs = " ".join(f"{s:.2f}" for s in row.seconds)
    median = statistics.median(row.seconds)
    return (
        f"{row.kind:<12} {row.engine:<10} {row.senders:>7} {median:>9.2f} {row.rate:>9.0f}"
        f" {ratio:>8}  {extra}{runs}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=2000)
    parser.add_argument("--senders", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--engines", nargs="+", choices=["sqlite", "postgresql"],
                        help="Default: both (--quick: sqlite).")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--no-smtp", action="store_true", help="Skip the SMTP runs.")
    parser.add_argument("--quick", action="store_true",
                        help="Senders 1 2, 200 recipients, once; SQLite by default.")  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.senders, args.recipients, args.repeat = [1, 2], 200, 1
    if args.engines is None:
        args.engines = ["sqlite"] if args.quick else ["sqlite", "postgresql"]
    if "postgresql" in args.engines and (why := postgres_unreachable(args.postgres_url)):
        print(f"skipping PostgreSQL: {why}")
        args.engines = [e for e in args.engines if e != "postgresql"]
    with _benchmark(args) as lines:
        for line in lines:
            print(line, flush=True)


@contextlib.contextmanager
def _benchmark(args: argparse.Namespace) -> Iterator[Iterator[str]]:
    sink = Sink()
    with tempfile.TemporaryDirectory(prefix="digest-bench-scale-") as tmp:
        stores = Stores(Path(tmp), args.postgres_url)
        try:
            yield _table(args, sink, stores)
        finally:
            sink.stop()
            stores.close()


def _table(args: argparse.Namespace, sink: Sink, stores: Stores) -> Iterator[str]:
    n = args.recipients
    cpus = os.cpu_count()
    yield f"{n} recipients, ~40 KB message, {cpus} CPUs, load before: {os.getloadavg()[0]:.2f}"
    yield (
        f"{'run':<12} {'engine':<10} {'senders':>7} {'median s':>9} {'per s':>9} {'vs 1':>8}"
        "  runs (s)"
    )
    ceiling = 0.0
    if not args.no_smtp:
        for clients in (1, 4):
            rates = [sink_ceiling(sink, clients, n) for _ in range(args.repeat)]
            rate = statistics.median(rates)
            ceiling = max(ceiling, rate)
            shown = " ".join(f"{r:.0f}" for r in rates)
            yield (
                f"{'sink ceiling':<12} {'smtplib':<10} {clients:>7} {'':>9} {rate:>9.0f}"
                f" {'':>8}  msgs/s {shown}"
            )
    smtp: dict[tuple[str, int], Row] = {}
    walls: dict[tuple[str, int], Row] = {}
    ledger: dict[tuple[str, int], Row] = {}
    for engine in args.engines:
        if not args.no_smtp:
            for senders in args.senders:
                timings = [smtp_run(stores, engine, senders, n, sink) for _ in range(args.repeat)]
                walls[engine, senders] = wall = Row(
                    "smtp wall", engine, senders, [t.wall for t in timings], n
                )
                smtp[engine, senders] = phase = Row(
                    "smtp sends", engine, senders, [t.phase for t in timings], n
                )
                yield _line(wall, walls.get((engine, args.senders[0])))
                yield _line(phase, smtp.get((engine, args.senders[0])))
        for senders in args.senders:
            runs = [ledger_run(stores, engine, senders, n) for _ in range(args.repeat)]
            ledger[engine, senders] = row = Row("ledger only", engine, senders, runs, n)
            yield _line(row, ledger.get((engine, args.senders[0])))
    static, per_reader = header_costs(max(n, 2000))
    yield ""
    yield (
        f"headers: {static:.0f} µs/message with the static unsubscribe link,"
        f" {per_reader:.0f} µs with each reader's own (+{per_reader - static:.0f} µs)"
    )
    yield from _notes(smtp, ledger, ceiling, args.senders[0])


def _notes(
    smtp: dict[tuple[str, int], Row],
    ledger: dict[tuple[str, int], Row],
    ceiling: float,
    first: int,
) -> Iterator[str]:
    if ceiling and smtp:
        best = max(smtp.values(), key=lambda r: r.rate)
        if best.rate >= 0.8 * ceiling:
            yield (
                f"the sink caps the SMTP runs: {best.rate:.0f} msgs/s is within 20% of what raw"
                f" smtplib clients get through it ({ceiling:.0f}/s); the aiosmtpd sink shares the"
                " cores with the senders"
            )
        yield (
            f"1,000,000 recipients on this machine (best: {best.engine}, {best.senders} senders,"
            f" {best.rate:.0f} msgs/s in the send phase): {_duration(MILLION / best.rate)}"
        )
        yield from _machines(smtp, ledger, first)
    for (engine, senders), row in ledger.items():
        if senders == 4 and (engine, first) in ledger and first == 1:
            gain = row.rate / ledger[engine, first].rate
            yield f"ledger only, 4 senders over 1 on {engine}: {gain:.2f}x (goal ≥ 2.5x)"


def _machines(
    smtp: dict[tuple[str, int], Row], ledger: dict[tuple[str, int], Row], first: int
) -> Iterator[str]:
    """Only PostgreSQL is shared across machines: its best rate here, plus one sender's per
    added machine, up to the ledger's rows/s."""
    here = [r for (e, _), r in smtp.items() if e == "postgresql"]
    caps = [r.rate for (e, _), r in ledger.items() if e == "postgresql"]
    if ("postgresql", first) not in smtp or not caps:
        return
    best, one_sender, cap = max(r.rate for r in here), smtp["postgresql", first].rate, max(caps)
    yield (
        f"assumption: with PostgreSQL ({best:.0f} msgs/s here), each added machine adds one"
        f" sender's rate ({one_sender:.0f} msgs/s: its own cores and SMTP relay) until the"
        f" ledger's rows/s caps it ({cap:.0f}/s, the best ledger-only run here: a low bound,"
        " its senders and the database shared these cores)"
    )
    for added in (1, 2, 4, 8):
        rate = min(best + added * one_sender, cap)
        capped = " (ledger cap)" if rate == cap else ""
        took = _duration(MILLION / rate)
        yield f"  + {added:>2} machines: {rate:>6.0f} msgs/s, 1,000,000 in {took}{capped}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


if __name__ == "__main__":
    main()
