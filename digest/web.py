"""``digest web``: the readers' side, a Starlette (ASGI) application served by uvicorn.

Routes: ``GET|POST /subscribe`` (the form; a post mails a confirm link), ``GET
/confirm/<token>``, ``GET /unsubscribe/<token>`` (a page with one button: a GET never
unsubscribes, since mail scanners follow links) and ``POST /unsubscribe/<token>`` (RFC 8058
one-click, or the button); ``GET /archive/``, ``/archive/YYYY-MM-DD/`` and ``/feed.atom``
(``digest.archive_pages``). Each request opens its own ``Runtime`` on the store in a worker
thread, so several processes may serve one store. What the pages do is ``digest.subscribing``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.archive_pages import (
    archive_index,
    atom_feed,
    edition_list,
    public_edition,
    web_templates,
)
from digest.config import Settings
from digest.runtime import Runtime, utc_now
from digest.subscribing import Asked, confirm_subscription, request_subscription, unsubscribe
from digest.web_tokens import BadTokenError, FormTokens, LinkSigner, read_secret_key

CSRF_COOKIE = "digest_form"
# An archived edition is third-party text: it may show images and nothing else.
ARCHIVE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; base-uri 'none';"
    " form-action 'none'; frame-ancestors 'none'; sandbox allow-popups"
    " allow-popups-to-escape-sandbox"
)
ONE_CLICK = ("List-Unsubscribe", "One-Click")  # RFC 8058's body: List-Unsubscribe=One-Click
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # a page's URL carries a reader's token
    "Cache-Control": "no-store",
}


def create_app(
    settings: Settings, secret_key: str, *, clock: Callable[[], datetime] = utc_now
) -> Starlette:
    """The web application for these settings, signing with ``secret_key``."""
    pages = _Pages(settings, secret_key, clock)
    routes = [
        Route("/", pages.home),
        Route("/subscribe", pages.subscribe_form, methods=["GET"]),
        Route("/subscribe", pages.subscribe, methods=["POST"]),
        Route("/confirm/{token}", pages.confirm, methods=["GET"]),
        Route("/unsubscribe/{token}", pages.unsubscribe_form, methods=["GET"]),
        Route("/unsubscribe/{token}", pages.unsubscribe, methods=["POST"]),
        Route("/archive/", pages.archive),
        Route("/archive/{day}/", pages.archived_edition),
        Route("/feed.atom", pages.feed),
    ]
    limit = settings.web.max_body_bytes
    middleware = [Middleware(_BodyLimit, limit=limit), Middleware(_SecurityHeaders)]
    return Starlette(routes=routes, middleware=middleware)


class _Pages:
    """The endpoints, sharing the settings, the signing key and the templates."""

    def __init__(self, settings: Settings, key: str, clock: Callable[[], datetime]) -> None:
        self.settings, self.clock = settings, clock
        self.signer, self.form_tokens = LinkSigner(key), FormTokens(key)
        self.environment = web_templates()
        self.templates = Jinja2Templates(env=self.environment)
        public = urlsplit(settings.web.base_url or "")
        self.is_https = public.scheme == "https"
        self.cookie_path = f"{public.path}/subscribe"  # the form's path behind the proxy

    def page(self, request: Request, name: str, status: int = 200, **values: Any) -> Response:
        context = {"title": self.settings.render.title, **values}
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    def message(self, request: Request, heading: str, text: str, status: int = 200) -> Response:
        return self.page(request, "message.html.j2", status, heading=heading, text=text)

    def _run(self, use: Callable[[Runtime], Any]) -> Any:
        with Runtime.open(self.settings, clock=self.clock) as runtime:
            return use(runtime)

    async def home(self, request: Request) -> Response:
        return RedirectResponse("subscribe", status_code=303)

    async def subscribe_form(self, request: Request) -> Response:
        return self._form(request, address="", error=None, status=200)

    def _form(self, request: Request, *, address: str, error: str | None, status: int) -> Response:
        token = self.form_tokens.new()
        response = self.page(
            request, "subscribe.html.j2", status, csrf=token, address=address, error=error
        )
        response.set_cookie(
            CSRF_COOKIE, token, httponly=True, samesite="strict", secure=self.is_https,
            path=self.cookie_path, max_age=2 * 3600,
        )  # fmt: skip
        return response

    async def subscribe(self, request: Request) -> Response:
        form = await request.form()
        field = form.get("csrf")
        cookie = request.cookies.get(CSRF_COOKIE)
        if not self.form_tokens.is_valid(field if isinstance(field, str) else None, cookie):
            text = "This form has expired or did not come from this site. Please try again."
            return self.message(request, "Please try again", text, 403)
        raw = form.get("email")
        address = raw if isinstance(raw, str) else ""
        client = request.client.host if request.client else "unknown"
        asked = await run_in_threadpool(
            self._run, lambda rt: request_subscription(rt, self.signer, address, client)
        )
        if asked is Asked.TOO_MANY:
            text = "Too many requests from your network. Please try again in an hour."
            return self.message(request, "Please try later", text, 429)
        if asked is Asked.NOT_MAILED:
            text = "We could not send the confirmation email just now. Please try again later."
            return self.message(request, "Please try later", text, 503)
        if asked is Asked.BAD_ADDRESS:
            error = "Please enter one email address, like reader@example.org."
            return self._form(request, address=address[:254], error=error, status=400)
        text = (
            "If this address can subscribe, a message with a confirmation link is on its way."
            " Open the link in it to start receiving the newsletter."
        )
        return self.message(request, "Check your inbox", text)

    async def confirm(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            await run_in_threadpool(
                self._run, lambda rt: confirm_subscription(rt, self.signer, token)
            )
        except BadTokenError as exc:
            return self._bad_link(request, exc)
        return self.message(
            request, "You are subscribed", "Thank you: your subscription is confirmed."
        )

    async def unsubscribe_form(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            self.signer.read("unsubscribe", token, self.clock())
        except BadTokenError as exc:
            return self._bad_link(request, exc)
        return self.page(request, "unsubscribe.html.j2", field=ONE_CLICK)

    async def unsubscribe(self, request: Request) -> Response:
        token = request.path_params["token"]
        form = await request.form()
        if form.get(ONE_CLICK[0]) != ONE_CLICK[1]:
            text = "To unsubscribe, use the button on the unsubscribe page."
            return self.message(request, "Nothing changed", text, 400)
        try:
            await run_in_threadpool(self._run, lambda rt: unsubscribe(rt, self.signer, token))
        except BadTokenError as exc:
            return self._bad_link(request, exc)
        text = "You will receive no more editions. Sorry to see you go."
        return self.message(request, "You are unsubscribed", text)

    def base(self, request: Request) -> str:
        """The site's public address: ``[web].base_url``, else as this request reached us."""
        return self.settings.web.base_url or str(request.base_url).rstrip("/")

    async def archive(self, request: Request) -> Response:
        editions = await run_in_threadpool(self._run, edition_list)
        title, base = self.settings.render.title, self.base(request)
        page = archive_index(self.environment, title=title, base_url=base, editions=editions)
        return HTMLResponse(page)

    async def archived_edition(self, request: Request) -> Response:
        try:
            day = date.fromisoformat(request.path_params["day"])
        except ValueError:
            return self.message(request, "Not found", "There is no such edition.", 404)
        base = self.base(request)
        found = await run_in_threadpool(self._run, lambda rt: public_edition(rt, day, base))
        if found is None:
            return self.message(request, "Not found", "There is no such edition.", 404)
        return HTMLResponse(found.html, headers={"Content-Security-Policy": ARCHIVE_CSP})

    async def feed(self, request: Request) -> Response:
        editions = await run_in_threadpool(self._run, edition_list)
        document = atom_feed(
            title=self.settings.render.title,
            base_url=self.base(request),
            editions=editions,
            now=self.clock(),
        )
        return Response(document, media_type="application/atom+xml")

    def _bad_link(self, request: Request, error: BadTokenError) -> Response:
        text = f"Sorry: {error.message}. Nothing was changed."
        return self.message(request, "This link does not work", text, 400)


class _SecurityHeaders:
    """Adds the headers every page gets (no framing, no referrer, no caching)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                extra = [(k.lower().encode(), v.encode()) for k, v in _HEADERS.items()]
                message["headers"] = headers + [h for h in extra if h[0] not in present]
            await send(message)

        await self.app(scope, receive, with_headers if scope["type"] == "http" else send)


class _BodyLimit:
    """Refuses a request body over ``limit`` bytes with 413: at once when its Content-Length
    says so, else as soon as the bytes read pass the limit (a chunked body); the rest is
    never read."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(dict(scope["headers"]))
        if length is not None and length > self.limit:
            await _too_large(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, "request body too large")
            return message

        await self.app(scope, counted, send)


def _content_length(headers: Mapping[bytes, bytes]) -> int | None:
    try:
        return int(headers[b"content-length"])
    except (KeyError, ValueError):
        return None


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    response = HTMLResponse("<h1>Request too large</h1>", status_code=413)
    response.headers["Connection"] = "close"
    await response(scope, receive, send)


def serve(settings: Settings, *, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    """Serve the application with uvicorn until SIGINT or SIGTERM (it finishes the requests
    in flight). The key and the store are checked first, so a problem stops it at once."""
    import uvicorn

    key = read_secret_key()
    with Runtime.open(settings):  # applies the store's migrations, or fails now
        pass
    config = uvicorn.Config(
        create_app(settings, key),
        host=host,
        port=port,
        proxy_headers=True,  # the client's address from the proxy's X-Forwarded-For ...
        forwarded_allow_ips="127.0.0.1",  # ... when the proxy is on this machine
        server_header=False,
        log_level="warning",
    )
    on_ready(f"http://{host}:{port}/")
    uvicorn.Server(config).run()
