"""Preview server: ``digest preview --serve``. I/O at the edge: a stdlib HTTP server bound to
127.0.0.1 only, answering GET from the callables it is given; it never writes anything.

Routes: ``/`` a viewer (the latest edition in a frame that reloads when the templates
change), ``/edition/latest`` and ``/edition/YYYY-MM-DD`` (the HTML exactly as rendered or
archived), ``/archive`` (past editions), ``/version`` (changes with the templates).

Editions carry third-party text, so every answer has a strict Content-Security-Policy: an
edition page may load nothing and run nothing; the viewer runs only its own script. A request
naming any other host than 127.0.0.1 or localhost (at our port) is refused: DNS rebinding.
"""

from __future__ import annotations

import html
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from digest.errors import TemplateError
from digest.models import RenderedDigest

HOST = "127.0.0.1"  # never all interfaces: the preview is for this machine's browser

EDITION_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'self'; sandbox allow-popups "
    "allow-popups-to-escape-sandbox"
)
_PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; "
    "connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class PreviewPages:
    """Where the server's answers come from."""

    latest: Callable[[], RenderedDigest]  # re-rendered when the templates change
    archived: Callable[[date], RenderedDigest | None]
    archive: Callable[[], Sequence[tuple[date, str]]]  # (edition date, subject), newest first
    version: Callable[[], str]  # changes whenever ``latest`` would


class PreviewServer(ThreadingHTTPServer):
    """A threaded HTTP server on 127.0.0.1 serving one PreviewPages."""

    daemon_threads = True

    def __init__(self, pages: PreviewPages, port: int = 0, *, request_timeout: float = 30) -> None:
        super().__init__((HOST, port), _Handler)
        self.pages = pages
        # A client that sends half a request (or nothing) and waits must not hold a thread
        # forever: its connection is closed after this many seconds without a byte.
        self.request_timeout = request_timeout

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"

    def serve_in_thread(self) -> threading.Thread:
        """Start serving in a daemon thread (for tests and embedding); ``shutdown`` stops it."""
        thread = threading.Thread(target=self.serve_forever, daemon=True)
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    server: PreviewServer
    server_version = "digest-preview"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.request_timeout)  # a read past it: closed

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the terminal shows the URL to open, not every request

    def do_GET(self) -> None:
        if not self._is_addressed_to_us():
            return self._reply(421, "text/plain", "not this server", EDITION_CSP)
        pages = self.server.pages
        path = self.path.split("?", 1)[0]
        if path == "/":
            nonce = secrets.token_urlsafe(16)
            return self._page(_viewer(nonce), nonce)
        if path == "/archive":
            return self._page(_archive(pages.archive()), secrets.token_urlsafe(16))
        if path == "/version":
            return self._reply(200, "text/plain", pages.version(), EDITION_CSP)
        if path == "/edition/latest":
            try:
                return self._edition(pages.latest())
            except TemplateError as exc:  # a template being edited: show why, keep serving
                return self._reply(500, "text/plain", str(exc), EDITION_CSP)
        if path.startswith("/edition/"):
            return self._edition(_archived(pages, path.removeprefix("/edition/")))
        return self._reply(404, "text/plain", "not found", EDITION_CSP)

    def _is_addressed_to_us(self) -> bool:
        """Is Host this machine's loopback? A page elsewhere can point its own name at
        127.0.0.1 (DNS rebinding), but cannot make the browser send our name for it."""
        port = self.server.server_address[1]
        names = (HOST, "localhost")
        allowed = {f"{name}:{port}" for name in names} | (set(names) if port == 80 else set())
        return self.headers.get("Host", "") in allowed

    def _edition(self, edition: RenderedDigest | None) -> None:
        if edition is None:
            return self._reply(404, "text/plain", "no such edition in the archive", EDITION_CSP)
        self._reply(200, "text/html", edition.html, EDITION_CSP)

    def _page(self, page: str, nonce: str) -> None:
        self._reply(200, "text/html", page, _PAGE_CSP.format(nonce=nonce))

    def _reply(self, status: int, content_type: str, body: str, csp: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Security-Policy", csp)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)


def _archived(pages: PreviewPages, name: str) -> RenderedDigest | None:
    try:
        day = date.fromisoformat(name)
    except ValueError:
        return None
    return pages.archived(day)


_STYLE = """<style>
  body { margin: 0; font: 14px/1.4 Helvetica, Arial, sans-serif; background: #ddd; color: #111; }
  nav { padding: 8px 12px; background: #222; color: #eee; }
  nav a { color: #9cf; margin-right: 12px; }
  iframe { display: block; width: 100%; height: calc(100vh - 40px); border: 0; background: #fff; }
  main { max-width: 640px; margin: 16px auto; padding: 0 12px; }
  li { margin: 6px 0; }
</style>"""

# Reloads the frame when /version changes, i.e. when a template was edited.
_RELOAD = """<script nonce="{nonce}">
let seen = null;
setInterval(async () => {
  const now = await (await fetch("/version", {cache: "no-store"})).text();
  if (seen !== null && now !== seen) document.getElementById("edition").src = "/edition/latest";
  seen = now;
}, 1000);
</script>"""


def _viewer(nonce: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>digest preview</title>{_STYLE}</head><body>"
        '<nav><a href="/">Latest</a><a href="/edition/latest">On its own</a>'
        '<a href="/archive">Archive</a> (reloads when a template changes)</nav>'
        '<iframe id="edition" src="/edition/latest" title="The latest edition"></iframe>'
        f"{_RELOAD.replace('{nonce}', nonce)}</body></html>"
    )


def _archive(editions: Sequence[tuple[date, str]]) -> str:
    items = "".join(
        f'<li><a href="/edition/{day}">{day}</a> {html.escape(text)}</li>' for day, text in editions
    )
    body = f"<ul>{items}</ul>" if items else "<p>No edition has been sent yet.</p>"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Archive of past editions</title>{_STYLE}</head><body>"
        '<nav><a href="/">Latest</a><a href="/archive">Archive</a></nav>'
        f"<main><h1>Past editions, as sent</h1>{body}</main></body></html>"
    )
