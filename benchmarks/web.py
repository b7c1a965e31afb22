"""``digest web`` and per-reader links: two numbers for issue 17.

1. One-click unsubscribe under load: ``digest web`` started as a process on 127.0.0.1 (its
   own SQLite store, N active subscribers), then N ``POST /unsubscribe/<token>`` with the
   RFC 8058 body, ``--concurrency`` at once; requests/s, and whether every one was honoured
   (each answered 200 and each subscriber is ``unsubscribed`` in the store afterwards).
2. The per-reader cost of making an edition's messages: ``EditionMessages`` for an edition
   of about 40 KB of HTML and the same stories as text (prose with some Turkish letters,
   quoted-printable) to R readers with one static List-Unsubscribe, against per-reader links (each
   reader's token signed, in List-Unsubscribe and the footer), wall seconds for all R.

    .venv/bin/python benchmarks/web.py [--requests 2000] [--concurrency 20] [--readers 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx2 as httpx

from digest.config import load_settings
from digest.messages import UNSUBSCRIBE_TOKEN, EditionMessages
from digest.models import RenderedDigest, SubscriberState
from digest.runtime import Runtime
from digest.subscribers import LIST_SLUG
from digest.subscribing import unsubscribe_link, unsubscribe_links
from digest.web_tokens import LinkSigner

KEY = "benchmark-" + "k" * 40
REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2025, 3, 1, 5, tzinfo=UTC)
BASE = "https://news.example.org"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _write_settings(folder: Path, base_url: str) -> Path:
    path = folder / "settings.toml"
    path.write_text(
        f'[[feeds]]\nurl = "{REPO / "tests/fixtures/feeds/nasa.xml"}"\n'
        f'[store]\npath = "digest.db"\n'
        f'[delivery]\nfrom = "Digest <digest@example.org>"\nbackend = "outbox"\n'
        f'[web]\nbase_url = "{base_url}"\n',
        encoding="utf-8",
    )
    return path


def _subscribe_all(config: Path, n: int) -> list[str]:
    """Add n active subscribers; each one's unsubscribe path."""
    settings = load_settings(config)
    signer = LinkSigner(KEY)
    with Runtime.open(settings) as runtime:
        readers = [(f"reader{i:05d}@example.org", None) for i in range(n)]
        runtime.store.add_subscribers(LIST_SLUG, readers, how="cli", now=NOW)
        found = runtime.store.subscribers(LIST_SLUG)
    return [unsubscribe_link("", signer, s) for s in found]


async def _hammer(port: int, paths: list[str], concurrency: int) -> list[int]:
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60
    ) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(path: str) -> int:
            async with gate:
                answer = await client.post(
                    path,
                    content=b"List-Unsubscribe=One-Click",
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
                return answer.status_code

        return await asyncio.gather(*(one(p) for p in paths))


def unsubscribe_load(requests: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        port = _free_port()
        config = _write_settings(Path(folder), f"http://127.0.0.1:{port}")
        paths = _subscribe_all(config, requests)
        env = {**os.environ, "DIGEST_SECRET_KEY": KEY, "PYTHONPATH": str(REPO)}
        argv = [sys.executable, "-m", "digest", "--config", str(config), "web"]
        server = subprocess.Popen([*argv, "--port", str(port)], env=env, stderr=subprocess.DEVNULL)
        try:
            _wait(port)
            started = time.perf_counter()
            codes = asyncio.run(_hammer(port, paths, concurrency))
            wall = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(timeout=30)
        with Runtime.open(load_settings(config)) as runtime:
            states = [s.state for s in runtime.store.subscribers(LIST_SLUG)]
    honoured = sum(1 for s in states if s is SubscriberState.UNSUBSCRIBED)
    ok = sum(1 for c in codes if c == 200)
    print(
        f"POST /unsubscribe/<token>: {requests} requests, {concurrency} at once: "
        f"{wall:.2f} s, {requests / wall:.0f} requests/s; answered 200: {ok}; "
        f"unsubscribed in the store: {honoured}/{len(states)}"
    )


def _wait(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/subscribe", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("digest web did not start")


def _edition(size_kb: int) -> RenderedDigest:
    story = "<p>" + "Çanakkale köprüsü, Köln, Straße: the story goes on. " * 20 + "</p>\n"
    stories = story * max(1, size_kb * 1024 // len(story.encode()))
    footer = f'<a href="{BASE}/unsubscribe/{UNSUBSCRIBE_TOKEN}">Unsubscribe</a>'
    return RenderedDigest(
        edition_on=NOW.date(),
        subject="Daily Digest",
        html=f"<html><body>{stories}{footer}</body></html>",
        text=f"{stories}\nUnsubscribe: {BASE}/unsubscribe/{UNSUBSCRIBE_TOKEN}\n",
    )


def message_cost(readers: int) -> None:
    os.environ["DIGEST_SECRET_KEY"] = KEY
    with tempfile.TemporaryDirectory() as folder:
        config = _write_settings(Path(folder), BASE)
        settings = load_settings(config)
        _subscribe_all(config, readers)
        with Runtime.open(settings) as runtime:
            subscribers = runtime.store.subscribers(LIST_SLUG)
    rendered = _edition(40)
    for label in ("static", "per-reader"):
        started = time.perf_counter()
        links = unsubscribe_links(settings, subscribers) if label == "per-reader" else None
        messages = EditionMessages(
            rendered,
            sender="Digest <digest@example.org>",
            unsubscribe_url=f"{BASE}/unsubscribe" if links is None else None,
            reader_links=links,
        )
        size = 0
        for reader in subscribers:
            size += len(messages.for_recipient(reader.address, "<id@example.org>", NOW).data)
        wall = time.perf_counter() - started
        print(
            f"messages for {readers} readers, {label:10}: {wall:.2f} s "
            f"({wall / readers * 1e6:.0f} µs each, {size / readers / 1024:.1f} KB each)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--readers", type=int, default=5000)
    options = parser.parse_args()
    unsubscribe_load(options.requests, options.concurrency)
    message_cost(options.readers)


if __name__ == "__main__":
    main()
