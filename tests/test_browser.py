"""A real browser: headless Chromium (Debian's ``chromium``) loads the served preview at 600 px
and 375 px, driven over the Chrome DevTools Protocol with aiohttp's websocket client (already
a dependency). Each page must not overflow horizontally, every link must have an href, the
console must stay free of errors (a CSP violation is one), and nothing may be requested from
anywhere but 127.0.0.1. Screenshots are saved to tests/artifacts/ (ignored by git).

In CI (``CI=true``) a missing Chromium fails these tests; elsewhere they are skipped.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import struct
import subprocess
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from digest.config import load_settings
from digest.models import Cluster, Digest, DigestItem, FeedSource, FetchResult, Summary
from digest.parse import parse_feed
from digest.preview import preview_server
from digest.render import RenderOptions, make_environment, render_digest
from digest.runtime import Runtime
from digest.sending import send_edition
from digest.serve import PreviewPages, PreviewServer
from tests.conftest import FEEDS, REPO, serving, write_settings
from tests.hostile import hostile_digest

pytestmark = pytest.mark.slow

ARTIFACTS = REPO / "tests" / "artifacts"
NOW = datetime(2024, 3, 1, 5, tzinfo=UTC)
WIDTHS = (600, 375)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    # No name resolves except the loopback address: nothing can leave the machine.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
    pytest.skip("chromium is not installed (apt-get install chromium) to run the browser tests")


@pytest.fixture(scope="module")
def devtools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A headless Chromium; yields the websocket URL of its first page."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    process = subprocess.Popen(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port = _devtools_port(profile / "DevToolsActivePort", process)
        yield _page_websocket(port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _devtools_port(path: Path, process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists() and (lines := path.read_text().splitlines()):
            return int(lines[0])
        if process.poll() is not None:
            pytest.fail(f"chromium exited with {process.returncode} before listening")
        time.sleep(0.1)
    pytest.fail("chromium did not open its DevTools port within 30 s")


def _page_websocket(port: int) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy
    with opener.open(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
        targets = json.load(answer)
    return str(next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page"))


@dataclass
class PageReport:
    """What the browser saw on one page at one width."""

    scroll_width: int
    inner_width: int
    links: int
    links_without_href: list[str]
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)  # each <img>, as laid out
    refused: list[str] = field(default_factory=list)  # requests the page's CSP never sent


class _Cdp:
    """Just enough of the DevTools Protocol: calls in order, events collected as they come."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            message = await self._receive()
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    async def wait_for(self, event: str, timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while not any(e["method"] == event for e in self.events):
                await self._receive()

    async def _receive(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads((await self.ws.receive()).data)
        if "method" in message:
            self.events.append(message)
        return message


async def _visit(
    ws_url: str, url: str, width: int, screenshot: Path, *, dark: bool = False
) -> PageReport:
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
        cdp = _Cdp(ws)
        for domain in ("Page", "Runtime", "Log", "Network"):
            await cdp.call(f"{domain}.enable")
        await cdp.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=900,
            deviceScaleFactor=1,
            mobile=width < 500,
        )
        scheme = {"name": "prefers-color-scheme", "value": "dark" if dark else "light"}
        await cdp.call("Emulation.setEmulatedMedia", features=[scheme])
        cdp.events.clear()
        await cdp.call("Page.navigate", url=url)
        await cdp.wait_for("Page.loadEventFired")
        await asyncio.sleep(0.3)  # let a frame or a late console message arrive
        measured = await cdp.call(
            "Runtime.evaluate",
            expression=_MEASURE,
            returnByValue=True,
        )
        page = json.loads(measured["result"]["value"])
        shot = await cdp.call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": width, "height": min(page["height"], 6000), "scale": 1},
        )
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        await cdp.call("Page.navigate", url="about:blank")
        return PageReport(
            scroll_width=page["scrollWidth"],
            inner_width=page["innerWidth"],
            links=page["links"],
            links_without_href=page["noHref"],
            images=page["images"],
            errors=_errors(cdp.events),
            requests=[url for url, reason in _requests(cdp.events) if reason != "csp"],
            refused=[url for url, reason in _requests(cdp.events) if reason == "csp"],
        )


_MEASURE = """JSON.stringify({
  scrollWidth: document.documentElement.scrollWidth,
  innerWidth: window.innerWidth,
  height: document.documentElement.scrollHeight,
  links: document.querySelectorAll("a").length,
  noHref: [...document.querySelectorAll("a")]
    .filter(a => !(a.getAttribute("href") || "").trim()).map(a => a.textContent),
  images: [...document.images].map(img => {
    const cell = img.closest("td"), style = getComputedStyle(cell);
    const column = cell.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const box = img.getBoundingClientRect();
    return {src: img.currentSrc, alt: img.alt, width: box.width, height: box.height,
            right: box.right, column: column, loaded: img.complete && img.naturalWidth > 0};
  }),
})"""


def _requests(events: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """Each request the page began (URL), and why the browser refused it (None: sent)."""
    refused = {
        e["params"]["requestId"]: e["params"].get("blockedReason")
        for e in events
        if e["method"] == "Network.loadingFailed"
    }
    return [
        (e["params"]["request"]["url"], refused.get(e["params"]["requestId"]))
        for e in events
        if e["method"] == "Network.requestWillBeSent"
    ]


def _errors(events: list[dict[str, Any]]) -> list[str]:
    errors = []
    for event in events:
        method, params = event["method"], event["params"]
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            errors.append(f"console: {params['args']}")
        elif method == "Runtime.exceptionThrown":
            errors.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            errors.append(f"log: {params['entry']['text']}")
        elif method == "Page.javascriptDialogOpening":
            errors.append(f"dialog: {params['message']}")
    return errors


# The preview's Content-Security-Policy (img-src data:) refusing an edition's lead image.
_CSP_IMAGE_BLOCK = re.compile(r"^log: Loading the image '[^']*' violates [^\n]*\"img-src data:\"")


def _check(
    ws_url: str,
    url: str,
    name: str,
    *,
    widths: tuple[int, ...] = WIDTHS,
    dark: bool = False,
    images_refused: bool = False,
) -> list[PageReport]:
    """Visit ``url`` at each width; ``images_refused``: the page's CSP refuses its images,
    and says so once for each (the only errors allowed)."""
    ARTIFACTS.mkdir(exist_ok=True)
    reports = []
    for width in widths:
        screenshot = ARTIFACTS / f"{name}{'-dark' if dark else ''}-{width}.png"
        report = asyncio.run(_visit(ws_url, url, width, screenshot, dark=dark))
        print(f"screenshot: {screenshot}")  # noqa: T201 - where the artifacts are
        assert report.inner_width == width, (name, width, report)  # the page fits a phone
        assert report.scroll_width <= report.inner_width, (name, width, report)
        assert report.links and not report.links_without_href, (name, width, report)
        errors = report.errors
        if images_refused:
            errors = [e for e in errors if not _CSP_IMAGE_BLOCK.match(e)]
            assert len(report.errors) - len(errors) == len(report.images), report.errors
            assert not any(image["loaded"] for image in report.images), report.images
            assert sorted(report.refused) == sorted(i["src"] for i in report.images)
        assert not errors, (name, width, errors)
        assert all(u.startswith(("http://127.0.0.1:", "data:")) for u in report.requests), (
            report.requests
        )
        reports.append(report)
    return reports


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PreviewServer]:
    """The preview server over an edition of real feed captures, one of them archived."""
    folder = tmp_path_factory.mktemp("preview")
    feeds = [
        {"url": str(FEEDS / "japantoday.xml"), "name": "Japan Today", "category": "World"},
        {"url": str(FEEDS / "nasa.xml"), "name": "NASA", "category": "Science"},
        {"url": str(FEEDS / "jsonfeed.json"), "name": "JSON Feed", "category": "Tech"},
        {"url": str(FEEDS / "relative.atom"), "name": "Relative Atom", "category": "Tech"},
    ]
    render = {"archive_url": "https://news.example/{date}.html"}
    delivery = {"unsubscribe_mailto": "digest@example.org"}
    path = write_settings(folder, feeds, sections={"render": render, "delivery": delivery})
    settings = load_settings(path)
    with Runtime.open(settings, clock=lambda: NOW) as runtime:
        send_edition(runtime, collect=True)
    with Runtime.open(settings, access="read", clock=lambda: NOW) as runtime:
        server = preview_server(runtime, collect=False)
    server.serve_in_thread()
    yield server
    server.shutdown()
    server.server_close()


def test_the_edition_holds_up_at_600_and_375_px(devtools: str, served: PreviewServer) -> None:
    # NASA's entry has a lead image, which the preview's CSP keeps from loading.
    reports = _check(devtools, served.url + "edition/latest", "edition", images_refused=True)
    assert [len(report.images) for report in reports] == [1, 1]
    _check(
        devtools,
        served.url + "edition/latest",
        "edition",
        widths=(375,),
        dark=True,
        images_refused=True,
    )


def test_the_lead_block_holds_up_at_375_px_without_a_style_sheet(devtools: str) -> None:
    """Clients that drop <style> keep only the inlined styles: the lead block (issue 15),
    with a long headline and summary, must still fit a phone."""
    edition = hostile_digest()
    rendered = render_digest(
        edition, make_environment(), tz=ZoneInfo("UTC"), options=RenderOptions()
    )
    assert 'class="pad story first lead"' in rendered.html
    bare = replace(rendered, html=re.sub(r"(?s)<style>.*?</style>", "", rendered.html))
    pages = PreviewPages(
        latest=lambda: bare, archived=lambda day: None, archive=lambda: (), version=lambda: "1"
    )
    server = PreviewServer(pages)
    server.serve_in_thread()
    try:
        _check(devtools, server.url + "edition/latest", "lead-no-style", widths=(375,))
    finally:
        server.shutdown()
        server.server_close()


def test_the_viewer_and_archive_pages_load_cleanly(devtools: str, served: PreviewServer) -> None:
    _check(devtools, served.url, "viewer", widths=(600,))
    _check(devtools, served.url + "archive", "archive")


@pytest.fixture
def hostile_server() -> Iterator[PreviewServer]:
    options = RenderOptions(archive_url="https://news.example/{date}")
    rendered = render_digest(
        hostile_digest(), make_environment(), tz=ZoneInfo("UTC"), options=options
    )
    pages = PreviewPages(
        latest=lambda: rendered,
        archived=lambda day: None,
        archive=lambda: (),
        version=lambda: "1",
    )
    server = PreviewServer(pages)
    server.serve_in_thread()
    yield server
    with contextlib.suppress(OSError):
        server.shutdown()
        server.server_close()


def test_the_xss_corpus_runs_and_loads_nothing_in_a_browser(
    devtools: str, hostile_server: PreviewServer
) -> None:
    _check(devtools, hostile_server.url + "edition/latest", "xss")


# Lead images at a phone's width: loaded, failing, refused by the client, and turned off.


def _png(width: int, height: int) -> bytes:
    """A real PNG of one colour, wider than any column (built here: no image library)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + b"\x1e\x5a\xa0" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + (chunk(b"IEND", b""))
    )


def _image_edition(image_for: Callable[[int], str | None]) -> Digest:
    """The Japan Today capture's stories (real headlines and text), each with the image
    ``image_for`` gives its number."""
    source = FeedSource(url=str(FEEDS / "japantoday.xml"), name="Japan Today", category="World")
    body = (FEEDS / "japantoday.xml").read_bytes()
    stories = parse_feed(FetchResult(source=source, fetched_at=NOW, body=body)).stories[:8]
    items = tuple(
        DigestItem(
            cluster=Cluster(cluster_id=story.story_id, lead=replace(story, image_url=image_for(n))),
            summary=Summary(cluster_id=story.story_id, text=story.text[:400], model_id="lead"),
        )
        for n, story in enumerate(stories)
    )
    return Digest(edition_on=NOW.date(), generated_at=NOW, items=items)


def _html(digest: Digest, *, images: bool = True) -> str:
    options = RenderOptions(images=images)
    return render_digest(digest, make_environment(), tz=ZoneInfo("UTC"), options=options).html


@dataclass
class _ImagePages:
    base_url: str
    pages: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # path: (type, body)


@pytest.fixture(scope="module")
def image_pages() -> Iterator[_ImagePages]:
    """Editions and their images on 127.0.0.1: /photo.png is a 1600 x 900 PNG, /gone.png
    answers 404 and /page.png answers HTML."""
    state = _ImagePages(base_url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            kind, body = state.pages.get(self.path, ("text/html", b"<p>not found</p>"))
            self.send_response(200 if self.path in state.pages else 404)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serving(Handler) as base_url:
        state.base_url = base_url
        failing = ("/gone.png", "/page.png")
        editions = {
            "/with-images": _image_edition(lambda n: f"{base_url}/photo.png" if n % 3 else None),
            "/failing-images": _image_edition(lambda n: base_url + failing[n % 2]),
        }
        state.pages = {
            "/photo.png": ("image/png", _png(1600, 900)),
            "/favicon.ico": ("image/png", _png(16, 16)),  # what the browser asks for itself
            "/page.png": ("text/html", b"<html><p>an error page, not an image</p></html>"),
            **{path: ("text/html", _html(e).encode()) for path, e in editions.items()},
            "/no-images": ("text/html", _html(editions["/with-images"], images=False).encode()),
        }
        yield state


def _layout(ws_url: str, url: str, name: str, width: int = 375) -> PageReport:
    """The page at ``width``: no horizontal overflow, every image inside its column."""
    ARTIFACTS.mkdir(exist_ok=True)
    report = asyncio.run(_visit(ws_url, url, width, ARTIFACTS / f"{name}-{width}.png"))
    assert report.inner_width == width
    assert report.scroll_width <= width, (name, report)
    for image in report.images:
        assert image["width"] <= image["column"] + 0.5, (name, image)
        assert image["right"] <= width, (name, image)
    assert all(u.startswith("http://127.0.0.1:") for u in report.requests), report.requests
    return report


def test_lead_images_fit_the_column_at_375_and_600_px(
    devtools: str, image_pages: _ImagePages
) -> None:
    for width in (375, 600):
        report = _layout(devtools, image_pages.base_url + "/with-images", "images", width)
        assert len(report.images) == 5 and all(image["loaded"] for image in report.images)
        # as wide as the column at a phone's width, scaled to keep the photo's proportions
        for image in report.images:
            assert image["width"] >= image["column"] - 0.5, image
            assert abs(image["height"] - image["width"] * 900 / 1600) <= 1, image
        assert not report.errors, report.errors


def test_images_that_fail_to_load_leave_their_headline_not_a_gap(
    devtools: str, image_pages: _ImagePages
) -> None:
    report = _layout(devtools, image_pages.base_url + "/failing-images", "images-failing")
    assert len(report.images) == 8 and not any(image["loaded"] for image in report.images)
    for image in report.images:
        assert image["alt"] and image["height"] >= 12, image  # the alt text's line, shown
    assert all("Failed to load resource" in error for error in report.errors), report.errors


def test_images_a_client_blocks_leave_the_layout_whole(
    devtools: str, image_pages: _ImagePages
) -> None:
    """The preview's CSP refuses every image, as a mail client that blocks images does."""
    rendered = render_digest(
        _image_edition(lambda n: f"{image_pages.base_url}/photo.png"),
        make_environment(),
        tz=ZoneInfo("UTC"),
        options=RenderOptions(),
    )
    pages = PreviewPages(
        latest=lambda: rendered, archived=lambda day: None, archive=lambda: (), version=lambda: "1"
    )
    server = PreviewServer(pages)
    server.serve_in_thread()
    try:
        (report,) = _check(
            devtools,
            server.url + "edition/latest",
            "images-blocked",
            widths=(375,),
            images_refused=True,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert len(report.images) == 8
    for image in report.images:
        assert image["height"] >= 12 and image["width"] <= image["column"] + 0.5, image


def test_an_edition_without_images_at_375_px(devtools: str, image_pages: _ImagePages) -> None:
    report = _layout(devtools, image_pages.base_url + "/no-images", "images-off")
    assert report.images == [] and not report.errors
