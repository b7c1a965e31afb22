"""Server-side request forgery, on real connections: no feed, redirect or article link can make
digest read an internal address and mail what it says. In a network namespace the test
creates, digest runs next to a feed on a public address and "internal" services on the
namespace's loopback, under a name that resolves there, and on the metadata address; on
127.0.0.1, every way to write a loopback address in a URL, and a feed of your own there."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from digest.collect import FetchLimits, fetch_pages
from digest.collecting import collect_all
from digest.config import load_settings
from digest.runtime import Runtime
from digest.sqlite_store import SQLiteStore
from tests.conftest import REPO, FeedServer, start_server, stop_server, write_settings
from tests.netns import Namespace

NOW = datetime(2024, 1, 1, 12, tzinfo=UTC)
TOKEN = "INTERNAL-ADMIN-TOKEN"
PUBLIC_TEXT = "PUBLIC-ARTICLE-TEXT"
# Public to the policy. 203.0.113.0/24 would not do: a documentation range counts as private.
# Nothing leaves the namespace whatever the address: it has no route out.
PUBLIC = "16.0.0.10"
METADATA = "169.254.169.254"
PORT = 18082  # the internal services'
RSS = {"Content-Type": "application/rss+xml"}
HTML = {"Content-Type": "text/html; charset=utf-8"}


def _article(sentence: str) -> str:
    paragraphs = "".join(
        f"<p>{sentence} Paragraph {n}: the harbour bridge reopened on Monday after two years"
        " of repairs, and the first buses crossed it at dawn while engineers watched.</p>"
        for n in range(5)
    )
    return f"<html><body><article><h1>Bridge</h1>{paragraphs}</article></body></html>"


SECRET = _article(f"The admin token is {TOKEN}.")
# A sentence, not a bare word: a summary leaves fragments out.
PUBLIC_PAGE = _article(f"The page {PUBLIC_TEXT} was read from the public host.")


def _feed(links: list[str], title: str = "Story") -> str:
    items = "".join(
        f"<item><title>{title} {n}</title><link>{link}</link>"
        f"<description>Teaser {n}.</description></item>"
        for n, link in enumerate(links)
    )
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>News</title>'
        f"<link>https://news.example/</link>{items}</channel></rss>"
    )


def _redirect(location: str) -> list[Any]:
    return [302, {"Location": location}, ""]


# In a network namespace


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    created = Namespace((f"{PUBLIC}/32", f"{METADATA}/32"), {"internal.example": "127.0.0.1"})
    yield created
    created.close()


def _hosts(namespace: Namespace, folder: Path) -> Path:
    """Start the public feed host and the internal ones inside the namespace; their log."""
    internal_feed = _feed([f"http://127.0.0.1:{PORT}/{n}" for n in range(7)], f"{TOKEN} story")
    links = [
        f"http://127.0.0.1:{PORT}/secret",
        f"http://localhost:{PORT}/secret",
        f"http://internal.example:{PORT}/secret",
        f"http://0x7f.1:{PORT}/secret",
        f"http://{METADATA}/latest/meta-data/",
        f"http://{PUBLIC}/to-mapped",
        f"http://{PUBLIC}/to-name",
        f"http://{PUBLIC}/to-v6",
        f"http://{PUBLIC}/article",
    ]
    spec = {
        f"{PUBLIC}:80": {
            "/feed.xml": [200, RSS, _feed(links)],
            "/moved.xml": _redirect(f"http://[::ffff:127.0.0.1]:{PORT}/feed.xml"),
            "/to-mapped": _redirect(f"http://[::ffff:127.0.0.1]:{PORT}/secret"),
            "/to-name": _redirect(f"http://internal.example:{PORT}/secret"),
            "/to-v6": _redirect(f"http://[::1]:{PORT}/secret"),
            "/article": [200, HTML, PUBLIC_PAGE],
        },
        f"127.0.0.1:{PORT}": {
            "/secret": [200, HTML, SECRET],
            "/feed.xml": [200, RSS, internal_feed],
        },
        f"[::1]:{PORT}": {"/secret": [200, HTML, SECRET]},
        f"{METADATA}:80": {"/latest/meta-data/": [200, HTML, SECRET]},
    }
    (folder / "hosts.json").write_text(json.dumps(spec), encoding="utf-8")
    log = folder / "requests.log"
    log.touch()
    script = str(REPO / "tests" / "canned_hosts.py")
    hosts = namespace.start(sys.executable, script, str(folder / "hosts.json"), str(log))
    assert hosts.stdout is not None and hosts.stdout.readline() == "ready\n"
    return log


def _dump(database: Path) -> str:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        return "\n".join(connection.iterdump())


@pytest.mark.slow
@pytest.mark.netns
def test_no_feed_gets_an_internal_page_into_the_digest(
    namespace: Namespace, tmp_path: Path
) -> None:
    log = _hosts(namespace, tmp_path)
    feeds = [
        {"url": f"http://{PUBLIC}/feed.xml", "name": "Public"},
        {"url": f"http://{PUBLIC}/moved.xml", "name": "Moved"},
    ]
    collect = {"full_text": True, "retries": 0, "page_timeout_seconds": 5}
    config = write_settings(tmp_path, feeds, sections={"collect": collect})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    digest = (sys.executable, "-m", "digest", "--config", str(config))
    collected = namespace.run(*digest, "collect", "--no-summarize", env=env, check=False)
    assert collected.returncode == 0, collected.stderr
    report = " ".join(collected.stdout.split())
    # The feed redirected into loopback is refused, and so is every internal article page.
    assert f"Moved failed 0 refused: refused http://[::ffff:127.0.0.1]:{PORT}/feed.xml" in report
    assert "article pages: 1 fetched, 8 failed (refused: 8 at 6 hosts)" in report
    preview = namespace.run(*digest, "preview", "--text", env=env, check=False)
    assert preview.returncode == 0, preview.stderr
    stored = _dump(tmp_path / "digest.db")
    assert PUBLIC_TEXT in stored and PUBLIC_TEXT in preview.stdout  # pages were fetched
    assert TOKEN not in stored and TOKEN not in preview.stdout
    asked = log.read_text(encoding="utf-8").splitlines()
    assert sorted(asked) == [f"{PUBLIC}:80 {path}" for path in _PUBLIC_PATHS_ASKED]


_PUBLIC_PATHS_ASKED = sorted(
    [
        *("/article", "/feed.xml", "/moved.xml", "/to-mapped", "/to-name", "/to-v6"),
        *("/feed.xml", "/moved.xml"),  # `preview` collects again, in memory
    ]
)


# On 127.0.0.1


class _Host:
    """A loopback server with fixed answers, counting what it was asked for."""

    def __init__(self, address: str, routes: dict[str, tuple[int, dict[str, str], str]]) -> None:
        self.asked: list[str] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                host.asked.append(self.path)
                status, headers, body = routes.get(self.path, (404, {}, "not found"))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body.encode())))
                self.end_headers()
                self.wfile.write(body.encode())

        self.httpd = start_server(Handler, address)
        self.port = self.httpd.server_address[1]

    def close(self) -> None:
        stop_server(self.httpd)


@pytest.fixture
def internal() -> Iterator[_Host]:
    host = _Host("127.0.0.1", {"/secret": (200, dict(HTML), SECRET)})
    yield host
    host.close()


def test_no_way_of_writing_a_loopback_address_reaches_it(internal: _Host) -> None:
    hosts = [
        "127.0.0.1",
        "localhost",
        "127.1",
        "2130706433",
        "017700000001",
        "0x7f.1",
        "0",
        "0.0.0.0",
        "[::1]",
        "[::]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
    ]
    urls = [f"http://{host}:{internal.port}/secret" for host in hosts]
    pages = fetch_pages(urls, FetchLimits(retries=0), lambda: NOW)
    assert [(p.source.url, p.error_kind) for p in pages] == [(url, "refused") for url in urls]
    localhost = pages[1].error or ""
    assert localhost.startswith(f"refused {urls[1]}: localhost resolves to "), localhost
    assert localhost.endswith(
        ", a loopback address; digest connects to an internal address only for a configured"
        " feed URL's own host and port, or one in [collect].allowed_internal_networks"
    )
    assert pages[10].error == (
        f"refused {urls[10]}: ::ffff:7f00:1 is an IPv6 form of 127.0.0.1, a loopback address;"
        " digest connects to an internal address only for a configured feed URL's own host and"
        " port, or one in [collect].allowed_internal_networks"
    )
    assert internal.asked == []


def test_a_feed_of_your_own_on_loopback_gets_its_own_pages_and_no_others(
    tmp_path: Path, feed_server: FeedServer, internal: _Host
) -> None:
    other_host = _Host("127.0.0.2", {"/secret": (200, dict(HTML), SECRET)})
    own = feed_server.url("article/own")
    links = [
        own,
        feed_server.url("article/hop"),  # redirected on the feed's own host and port
        feed_server.url("article/away"),  # redirected to another loopback host
        f"http://127.0.0.1:{internal.port}/secret",  # the same host, another port
        f"http://127.0.0.2:{other_host.port}/secret",
    ]
    feed_server.extra_routes |= {
        "/bridge.xml": (200, RSS, _feed(links).encode()),
        "/article/own": (200, HTML, PUBLIC_PAGE.encode()),
        "/article/hop": (302, {"Location": "/article/own?again"}, b""),
        "/article/away": (302, {"Location": links[4]}, b""),
    }
    try:
        settings = load_settings(
            write_settings(
                tmp_path,
                [{"url": feed_server.url("bridge.xml"), "name": "Bridge"}],
                sections={"collect": {"full_text": True, "retries": 0}},
            )
        )
        with SQLiteStore.open(settings.store.path) as store:
            report = collect_all(Runtime(settings, store, clock=lambda: NOW))
            stories = {s.url: s for s in store.stories_for_edition(NOW.date())}
    finally:
        other_host.close()
    assert [p.failure for p in report.pages] == [None, None, "refused", "refused", "refused"]
    assert [stories[link].text_source for link in links] == ["article"] * 2 + ["feed"] * 3
    assert all(TOKEN not in story.text for story in stories.values())
    assert internal.asked == [] and other_host.asked == []
