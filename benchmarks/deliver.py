"""Delivery speed: messages/s for a 40 KB digest to 1,000 recipients over loopback SMTP.

digest's real send path (``sending.send_edition`` with the SQLite ledger: two commits per
message) against an aiosmtpd server in a child process, plain and STARTTLS, with one
connection reused for the edition vs one connection per message (what rss2email does),
all in one run, printed as one table. Target: >= 200 msgs/s reused over STARTTLS.

``--links`` measures instead what per-reader unsubscribe links cost a send: plain SMTP, one
connection, the same edition to the same readers with one static ``List-Unsubscribe``
against ``[web].base_url`` set (each reader's signed one-click link in the header and the
footer), ``--repeat`` times each, alternating; the median is printed.

    .venv/bin/python benchmarks/deliver.py [--recipients 1000] [--size-kb 40]
    .venv/bin/python benchmarks/deliver.py --links --recipients 5000 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import ssl
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from digest import sending
from digest.config import Settings, validate_settings
from digest.messages import EditionMessages
from digest.models import DeliveryState, RenderedDigest
from digest.runtime import Runtime
from digest.sqlite_store import SQLiteStore

EVAL_FILE = Path("/work/shared/data/eval/news_summ_dev.jsonl")
NOW = datetime(2025, 3, 1, 5, 0, tzinfo=UTC)
TARGET = 200.0


class _Counter:
    """Counts messages and connections (SMTP sessions that sent a message); keeps nothing."""

    def __init__(self) -> None:
        self.messages = 0
        self.sessions: set[int] = set()
        self.keep: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages += 1
        self.sessions.add(id(session))  # after STARTTLS a connection has a new session
        self.keep.append(session)  # so no id is reused
        return "250 OK"


def _serve(cert: str, key: str, pipe: Connection) -> None:
    """The child: a plain and a STARTTLS server; answers 'stats' and 'stop' on the pipe."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    counters = {"none": _Counter(), "starttls": _Counter()}
    controllers = {
        "none": Controller(counters["none"], hostname="127.0.0.1", port=pipe.recv()),
        "starttls": Controller(
            counters["starttls"],
            hostname="127.0.0.1",
            port=pipe.recv(),
            tls_context=context,
            require_starttls=True,
        ),
    }
    for controller in controllers.values():
        controller.start()
    pipe.send("ready")
    while (command := pipe.recv()) != "stop":
        counter = counters[command]
        pipe.send((counter.messages, len(counter.sessions)))
        counter.messages, counter.sessions, counter.keep = 0, set(), []
    for controller in controllers.values():
        controller.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _digest_of(size_kb: int) -> RenderedDigest:
    """A digest of real stories (the same ones in HTML and text) of about ``size_kb`` KB."""
    html_parts: list[str] = []
    text_parts: list[str] = []
    with EVAL_FILE.open(encoding="utf-8") as lines:
        for line in lines:
            story = json.loads(line)
            title, paragraph = story["title"] or "Story", " ".join(story["text"].split()[:60])
            html_parts.append(
                f'<tr><td style="padding:12px 0;font-family:Georgia,serif">'
                f'<h2 style="font-size:18px"><a href="https://example.org/{story["id"]}">'
                f"{title}</a></h2><p>{paragraph}</p></td></tr>"
            )
            text_parts.append(f"{title}\n{paragraph}\n")
            if sum(map(len, html_parts)) + sum(map(len, text_parts)) > size_kb * 950:
                break
    return RenderedDigest(
        edition_on=NOW.date(),
        subject=f"Daily Digest, 1 March: {len(html_parts)} stories",
        html=f"<html><body><table>{''.join(html_parts)}</table></body></html>",
        text="\n".join(text_parts),
    )


def _settings(
    folder: Path,
    port: int,
    security: str,
    per_connection: int,
    n: int,
    ca: Path,
    base_url: str | None = None,
) -> Settings:
    raw: dict[str, Any] = {
        "timezone": "UTC",
        "store": {"path": "digest.db"},
        "feeds": [{"url": str(folder / "none.xml")}],
        "summarize": {"summarizer": "lead"},
        "delivery": {
            "backend": "smtp",
            "from": "Daily Digest <digest@example.org>",
            "recipients": [f"reader{i:04d}@example.org" for i in range(n)],
            "unsubscribe_url": "https://example.org/unsubscribe",
            "list_id": "daily.digest.example.org",
        },
        "smtp": {
            "host": "127.0.0.1",
            "port": port,
            "security": security,
            "max_messages_per_connection": per_connection,
        },
    }
    if security != "none":
        raw["smtp"]["ca_file"] = str(ca)
    if base_url is not None:
        raw["web"] = {"base_url": base_url}
    return validate_settings(raw, folder / "settings.toml")


@dataclass
class Row:
    security: str
    connection: str
    messages: int
    seconds: float
    received: int
    connections: int

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def _run_case(
    rendered: RenderedDigest,
    security: str,
    per_message: bool,
    port: int,
    n: int,
    ca: Path,
    store_dir: str | None,
    base_url: str | None = None,
) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="digest-bench-", dir=store_dir) as tmp:
        folder = Path(tmp)
        per_connection = 1 if per_message else n
        settings = _settings(folder, port, security, per_connection, n, ca, base_url)
        with SQLiteStore.open(settings.store.path) as store:
            store.create_edition(rendered, [], NOW)
        started = time.perf_counter()
        with Runtime.open(settings, clock=lambda: NOW) as runtime:
            report = sending.send_edition(runtime, collect=False)
        seconds = time.perf_counter() - started
        sent = len(report.in_state(DeliveryState.SENT))
    return seconds, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--size-kb", type=int, default=40)
    parser.add_argument(
        "--store-dir", help="where the SQLite store goes (default: the system's temp folder)"
    )
    parser.add_argument("--links", action="store_true", help="static vs per-reader links")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case, with --links")
    args = parser.parse_args()
    rendered = _digest_of(args.size_kb)
    messages = EditionMessages(rendered, sender="Daily Digest <digest@example.org>")
    size = len(messages.for_recipient("reader0000@example.org", "<x@example.org>", NOW).data)
    with tempfile.TemporaryDirectory(prefix="digest-bench-tls-") as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
        parent, child = multiprocessing.Pipe()
        server = multiprocessing.get_context("spawn").Process(
            target=_serve, args=(str(cert), str(key), child), daemon=True
        )
        server.start()
        ports = {"none": _free_port(), "starttls": _free_port()}
        parent.send(ports["none"])
        parent.send(ports["starttls"])
        assert parent.recv() == "ready"
        if args.links:
            _compare_links(rendered, ports["none"], cert, args, parent)
            parent.send("stop")
            server.join(10)
            return
        rows = []
        for security in ("none", "starttls"):
            for per_message in (False, True):
                seconds, sent = _run_case(
                    rendered,
                    security,
                    per_message,
                    ports[security],
                    args.recipients,
                    cert,
                    args.store_dir,
                )
                parent.send(security)
                received, connections = parent.recv()
                kind = "one per message" if per_message else "reused"
                rows.append(Row(security, kind, sent, seconds, received, connections))
        parent.send("stop")
        server.join(10)
    _print(rows, size, args.recipients)
    where = args.store_dir or tempfile.gettempdir()
    print(f"store in {where}: {_fsync_ms(args.store_dir):.2f} ms per fsync (one per message)")


def _compare_links(
    rendered: RenderedDigest, port: int, ca: Path, args: argparse.Namespace, server: Connection
) -> None:
    """Static List-Unsubscribe against per-reader links: median wall seconds of a whole
    ``send_edition`` (ledger, subscribers, messages, SMTP) to ``args.recipients`` readers."""
    os.environ.setdefault("DIGEST_SECRET_KEY", "benchmark-" + "k" * 40)
    cases = {"static": None, "per-reader": "https://news.example.org"}
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeat):
        for name, base_url in cases.items():
            seconds, sent = _run_case(
                rendered, "none", False, port, args.recipients, ca, args.store_dir, base_url
            )
            server.send("none")
            received, _ = server.recv()
            assert sent == received == args.recipients, (name, sent, received)
            times[name].append(seconds)
    print(f"digest send: {args.recipients} readers, plain SMTP, one connection, loopback aiosmtpd")
    print(f"{'links':<12} {'median s':>9} {'msgs/s':>8}  runs")
    for name, runs in times.items():
        median = statistics.median(runs)
        shown = " ".join(f"{r:.1f}" for r in runs)
        print(f"{name:<12} {median:>9.2f} {args.recipients / median:>8.0f}  {shown}")
    static, per_reader = (statistics.median(times[n]) for n in cases)
    each_ms = (per_reader - static) / args.recipients * 1000
    ratio = per_reader / static
    print(f"per-reader links: {ratio:.2f}x the static send's time ({each_ms:+.2f} ms a message)")


def _fsync_ms(folder: str | None) -> float:
    """What one durable commit waits for at least: the disk's fsync, measured."""
    with tempfile.NamedTemporaryFile(dir=folder) as probe:
        started = time.perf_counter()
        for _ in range(50):
            probe.write(b"x" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
        return (time.perf_counter() - started) / 50 * 1000


def _print(rows: list[Row], size: int, n: int) -> None:
    print(
        f"digest send: {n} recipients, message {size / 1000:.1f} KB on the wire, loopback aiosmtpd"
    )
    head = ("security", "connection", "sent", "received", "conns", "wall s", "msgs/s")
    print("{:<9} {:<16} {:>5} {:>8} {:>6} {:>7} {:>7}".format(*head))
    for r in rows:
        print(
            f"{r.security:<9} {r.connection:<16} {r.messages:>5} {r.received:>8} "
            f"{r.connections:>6} {r.seconds:>7.2f} {r.rate:>7.1f}"
        )
    reused_tls = next(r for r in rows if r.security == "starttls" and r.connection == "reused")
    verdict = "PASS" if reused_tls.rate >= TARGET else "MISS"
    print(f"target: >= {TARGET:.0f} msgs/s reused over STARTTLS: {reused_tls.rate:.1f} {verdict}")
    for security in ("none", "starttls"):
        reused, each = (r for r in rows if r.security == security)
        print(f"{security}: reused connection is {reused.rate / each.rate:.1f}x one per message")


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
