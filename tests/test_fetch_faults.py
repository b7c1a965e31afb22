"""Fetching against misbehaving servers on loopback: slow drips, endless and oversized
bodies, gzip bombs, redirect loops and moves, 410, retried 5xx, and redirects into an
internal address. Every case ends as a result with an error kind, never an exception."""

from __future__ import annotations

import contextlib
import gzip
import time
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import cache
from http.server import BaseHTTPRequestHandler
from ipaddress import ip_network
from typing import Any

import brotli
import pytest

from digest.collect import FetchLimits, fetch_all, fetch_pages
from digest.models import FeedSource, FeedState, FetchResult
from digest.parse import parse_feed
from tests.conftest import FEEDS, start_server, stop_server

NOW = datetime(2024, 1, 1, 12, tzinfo=UTC)
RSS = (FEEDS / "nasa.xml").read_bytes()

Route = Callable[[BaseHTTPRequestHandler], None]


class Server:
    """A loopback server whose routes are functions of the request handler."""

    def __init__(self, host: str) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.hits[self.path] += 1
                route = server.routes.get(self.path)
                if route is None:
                    return reply(self, 404, b"not found")
                # The client may give up first, as these tests intend.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    route(self)

        self.httpd = start_server(Handler, host)
        self.base = f"http://{host}:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def close(self) -> None:
        stop_server(self.httpd)


def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes, **headers: str) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def redirect(status: int, location: str) -> Route:
    return lambda h: reply(h, status, b"", Location=location)


def feed(**headers: str) -> Route:
    return lambda h: reply(h, 200, RSS, Content_Type="application/rss+xml", **headers)


@pytest.fixture
def server() -> Iterator[Server]:
    started = Server("127.0.0.1")
    yield started
    started.close()


@pytest.fixture
def other_server() -> Iterator[Server]:
    """A second server on another loopback address (all of 127.0.0.0/8 is loopback)."""
    started = Server("127.0.0.2")
    yield started
    started.close()


def fetch(url: str, state: FeedState | None = None, **limits: Any) -> FetchResult:
    source = FeedSource(url=url)
    states = {url: state} if state else {}
    limits.setdefault("backoff_seconds", 0.01)
    (result,) = fetch_all([source], states, FetchLimits(**limits), lambda: NOW)
    return result


def test_slow_drip_body_is_cut_by_the_overall_deadline_not_the_read_timeout(
    server: Server,
) -> None:
    def drip(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        for _ in range(100):  # a byte every 0.2 s: each read is fast, the body never ends
            handler.wfile.write(b"<")
            handler.wfile.flush()
            time.sleep(0.2)

    server.routes["/drip"] = drip
    started = time.monotonic()
    result = fetch(server.url("/drip"), timeout_seconds=1.5, read_seconds=1, retries=0)
    assert time.monotonic() - started < 3
    assert (result.error_kind, result.error) == ("timeout", "timed out after 1.5 s")


def test_endless_body_stops_at_the_size_cap(server: Server) -> None:
    def endless(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.end_headers()  # no Content-Length: read until the connection closes
        handler.close_connection = True
        for _ in range(20_000):  # bounded, but far beyond the cap (1.3 GB)
            handler.wfile.write(b"x" * 65536)

    server.routes["/endless"] = endless
    result = fetch(server.url("/endless"), max_bytes=2_000_000)
    assert result.error_kind == "too-large"
    assert result.error == "response larger than 2,000,000 bytes (it sent more)"


@cache
def _gzip_bomb() -> bytes:
    """1 GiB of zeros, gzip-compressed to about 1 MB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    parts = [compressor.compress(chunk) for _ in range(1024)]
    return b"".join(parts) + compressor.flush()


def test_gzip_bomb_is_stopped_at_the_cap_without_inflating_it(server: Server) -> None:
    bomb = _gzip_bomb()
    assert len(bomb) < 2_000_000
    server.routes["/bomb"] = lambda h: reply(
        h, 200, bomb, Content_Type="application/rss+xml", Content_Encoding="gzip"
    )
    tracemalloc.start()
    try:
        result = fetch(server.url("/bomb"), max_bytes=5_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.error_kind == "too-large"
    assert peak < 64_000_000, f"peak {peak:,} bytes while reading a 1 GiB gzip bomb"


def test_gzip_and_brotli_bodies_are_decoded(server: Server) -> None:
    server.routes["/gz"] = lambda h: reply(h, 200, gzip.compress(RSS), Content_Encoding="gzip")
    server.routes["/br"] = lambda h: reply(h, 200, brotli.compress(RSS), Content_Encoding="br")
    assert fetch(server.url("/gz")).body == RSS
    assert fetch(server.url("/br")).body == RSS


def test_redirect_loop_gives_up_after_the_limit(server: Server) -> None:
    server.routes["/loop"] = redirect(302, "/loop")
    result = fetch(server.url("/loop"))
    assert (result.error_kind, result.error) == ("redirect", "more than 5 redirects")
    assert server.hits["/loop"] == 6


def test_permanent_redirect_reports_the_new_address_and_is_used_next_time(
    server: Server,
) -> None:
    server.routes["/old"] = redirect(301, "/older")
    server.routes["/older"] = redirect(308, "/new")
    server.routes["/new"] = feed()
    result = fetch(server.url("/old"))
    assert result.is_ok and result.body == RSS
    assert result.moved_to == server.url("/new")
    state = FeedState(url=server.url("/old"), fetch_url=result.moved_to)
    again = fetch(server.url("/old"), state)
    assert again.is_ok and again.moved_to is None
    assert server.hits["/old"] == 1 and server.hits["/new"] == 2


def test_temporary_redirect_in_the_chain_keeps_the_configured_address(server: Server) -> None:
    server.routes["/a"] = redirect(301, "/b")
    server.routes["/b"] = redirect(302, "/c")
    server.routes["/c"] = feed()
    result = fetch(server.url("/a"))
    assert result.is_ok and result.moved_to is None


def test_gone_feed_is_reported_as_gone(server: Server) -> None:
    server.routes["/gone"] = lambda h: reply(h, 410, b"gone")
    result = fetch(server.url("/gone"))
    assert result.is_gone and result.error_kind == "gone"
    assert result.error is not None and result.error.startswith("HTTP 410 Gone: the feed is gone")


def test_5xx_and_timeouts_are_retried_4xx_never(server: Server) -> None:
    def flaky(handler: BaseHTTPRequestHandler) -> None:
        if server.hits["/flaky"] <= 2:
            return reply(handler, 503, b"busy")
        return feed()(handler)

    server.routes["/flaky"] = flaky
    server.routes["/missing"] = lambda h: reply(h, 404, b"no")
    assert fetch(server.url("/flaky"), retries=2).is_ok
    assert server.hits["/flaky"] == 3
    assert fetch(server.url("/missing"), retries=2).error_kind == "http"
    assert server.hits["/missing"] == 1
    server.hits.clear()
    failed = fetch(server.url("/flaky"), retries=1)
    assert failed.status == 503 and server.hits["/flaky"] == 2


def test_conditional_get_sends_last_modified_and_a_304_has_no_body(server: Server) -> None:
    stamp = "Mon, 01 Jan 2024 10:00:00 GMT"

    def conditional(handler: BaseHTTPRequestHandler) -> None:
        if handler.headers.get("If-Modified-Since") == stamp:
            handler.send_response(304)
            handler.end_headers()
            return None
        return feed(Last_Modified=stamp)(handler)

    server.routes["/feed"] = conditional
    first = fetch(server.url("/feed"))
    assert first.last_modified == stamp
    second = fetch(server.url("/feed"), FeedState(url="x", last_modified=stamp))
    assert second.is_not_modified and second.body == b""


def test_a_redirect_into_an_internal_address_is_refused(
    server: Server, other_server: Server
) -> None:
    # 127.0.0.1 plays the public internet here, as a network the settings allow.
    public = (ip_network("127.0.0.1/32"),)
    other_server.routes["/admin"] = feed()
    server.routes["/feed"] = redirect(302, other_server.url("/admin"))
    result = fetch(server.url("/feed"), allowed_internal_networks=public)
    assert result.error_kind == "refused"
    assert result.error == (
        f"refused {other_server.url('/admin')}: 127.0.0.2 is a loopback address; digest connects"
        " to an internal address only for a configured feed URL's own host and port, or one in"
        " [collect].allowed_internal_networks"
    )
    assert other_server.hits["/admin"] == 0


def test_a_feed_configured_on_an_internal_address_may_redirect_on_its_own_host_only(
    server: Server, other_server: Server
) -> None:
    """A feed you configure on an internal address (a bridge of your own) is fetched, and so
    are its redirects on that host and port; not its redirects to other internal ones."""
    server.routes["/feed"] = feed()
    server.routes["/hop"] = redirect(302, "/feed")
    assert fetch(server.url("/hop")).is_ok
    other_server.routes["/admin"] = feed()
    server.routes["/away"] = redirect(302, other_server.url("/admin"))
    assert fetch(server.url("/away")).error_kind == "refused"
    other_port = Server("127.0.0.1")  # the same host on another port is another service
    try:
        other_port.routes["/admin"] = feed()
        server.routes["/port"] = redirect(302, other_port.url("/admin"))
        assert fetch(server.url("/port")).error_kind == "refused"
        assert other_port.hits["/admin"] == 0
    finally:
        other_port.close()
    assert other_server.hits["/admin"] == 0


def test_one_bad_feed_among_many_changes_nothing_for_the_others(server: Server) -> None:
    server.routes["/good"] = feed()
    server.routes["/bad"] = lambda h: reply(h, 500, b"oops")
    sources = [FeedSource(url=server.url(p)) for p in ("/good", "/bad", "/good")]
    limits = FetchLimits(retries=0)
    results = fetch_all(sources, {}, limits, lambda: NOW)
    assert [r.is_ok for r in results] == [True, False, True]


def test_article_pages_are_fetched_with_the_same_rules(server: Server) -> None:
    server.routes["/article"] = lambda h: reply(h, 200, b"<html>story</html>")
    server.routes["/loop"] = redirect(302, "/loop")
    urls = [server.url("/article"), server.url("/loop")]
    from_feed = {url: [server.url("/feed.xml")] for url in urls}  # a feed on their host
    page, loop = fetch_pages(urls, FetchLimits(), lambda: NOW, linked_from=from_feed)
    assert page.body == b"<html>story</html>"
    assert loop.error_kind == "redirect"


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/rss-as-html", "text/html; charset=utf-8"),
        ("/rss-as-json", "application/json"),
        ("/rss-as-octets", "application/octet-stream"),
        ("/json-as-xml", "application/xml"),
        ("/json-as-text", "text/plain; charset=iso-8859-1"),
    ],
)
def test_a_wrong_content_type_does_not_stop_the_feed_being_read(
    server: Server, path: str, content_type: str
) -> None:
    body = RSS if path.startswith("/rss") else (FEEDS / "jsonfeed.json").read_bytes()
    server.routes[path] = lambda h: reply(h, 200, body, Content_Type=content_type)
    result = fetch(server.url(path))
    assert result.content_type == content_type
    stories = parse_feed(result).stories
    assert stories and all(s.title and s.url.startswith("http") for s in stories)
