"""Collect: fetch feeds over HTTP or from local files (the I/O half of the collect stage;
``digest.parse`` is the pure half).

``fetch_all`` reads every feed concurrently over HTTP (aiohttp, with connect/read/total
timeouts, a body-size cap enforced while streaming, and conditional GET) or from a local
file, and returns one ``FetchResult`` per feed: never raises for one feed's failure.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from digest import __version__
from digest.models import FeedSource, FeedState, FetchResult
from digest.parse import is_http_url

USER_AGENT = f"digest/{__version__} (+https://pypi.org/project/digest/; daily newsletter digest)"
_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/json;q=0.9,"
    " application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)
_MAX_REDIRECTS = 5
_TRACKING_PARAMS = re.compile(r"^(utm_\w+|fbclid|gclid|dclid|msclkid|mc_[ce]id|_hsenc|_hsmi)$")
_BLOCK_END = re.compile(r"(?i)<\s*(?:br|/p|/div|/li|/h[1-6]|/tr|/blockquote|/pre)\b[^>]*>")
_WHITESPACE = re.compile(r"\s+")
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchLimits:
    timeout_seconds: float = 30.0
    max_bytes: int = 10_000_000
    concurrency: int = 16
    per_host: int = 4


# Fetching (I/O)


def fetch_all(
    sources: Sequence[FeedSource],
    states: dict[str, FeedState],
    limits: FetchLimits,
    now: Callable[[], datetime],
) -> list[FetchResult]:
    """Fetch every feed concurrently; one result per source, in the same order."""
    return asyncio.run(_fetch_all(sources, states, limits, now))


async def _fetch_all(
    sources: Sequence[FeedSource],
    states: dict[str, FeedState],
    limits: FetchLimits,
    now: Callable[[], datetime],
) -> list[FetchResult]:
    # Our own semaphores, not the connector's pool: a feed's deadline starts when its turn
    # comes, so a long list on one host does not time out while waiting in the queue.
    overall = asyncio.Semaphore(limits.concurrency)
    per_host: defaultdict[str, asyncio.Semaphore] = defaultdict(
        lambda: asyncio.Semaphore(limits.per_host)
    )
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    headers = {"User-Agent": USER_AGENT, "Accept": _ACCEPT}

    async def in_turn(session: aiohttp.ClientSession, source: FeedSource) -> FetchResult:
        async with overall, per_host[urlsplit(source.url).hostname or ""]:
            return await fetch_feed(session, source, states.get(source.url), limits, now)

    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        return list(await asyncio.gather(*(in_turn(session, source) for source in sources)))


async def fetch_feed(
    session: aiohttp.ClientSession,
    source: FeedSource,
    state: FeedState | None,
    limits: FetchLimits,
    now: Callable[[], datetime],
) -> FetchResult:
    """Fetch one feed; every failure comes back as a result with ``error`` set."""
    if not is_http_url(source.url):
        return _read_local(source, limits, now())
    try:
        return await asyncio.wait_for(
            _fetch_http(session, source, state, limits, now), limits.timeout_seconds
        )
    except TimeoutError:
        error = f"timed out after {limits.timeout_seconds:g} s"
    except aiohttp.TooManyRedirects:
        error = f"more than {_MAX_REDIRECTS} redirects"
    except aiohttp.ClientError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return FetchResult(source=source, fetched_at=now(), error=error)


async def _fetch_http(
    session: aiohttp.ClientSession,
    source: FeedSource,
    state: FeedState | None,
    limits: FetchLimits,
    now: Callable[[], datetime],
) -> FetchResult:
    headers = {}
    if state and state.etag:
        headers["If-None-Match"] = state.etag
    if state and state.last_modified:
        headers["If-Modified-Since"] = state.last_modified
    timeout = aiohttp.ClientTimeout(
        total=limits.timeout_seconds,
        connect=min(10.0, limits.timeout_seconds),
        sock_read=min(15.0, limits.timeout_seconds),
    )
    async with session.get(
        source.url, headers=headers, timeout=timeout, max_redirects=_MAX_REDIRECTS
    ) as response:
        if response.status == 304:
            return FetchResult(source=source, fetched_at=now(), status=304)
        if response.status >= 400:
            return FetchResult(
                source=source,
                fetched_at=now(),
                status=response.status,
                error=f"HTTP {response.status} {response.reason or ''}".rstrip(),
            )
        body = bytearray()
        async for chunk in response.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > limits.max_bytes:
                return FetchResult(
                    source=source,
                    fetched_at=now(),
                    status=response.status,
                    error=f"response larger than {limits.max_bytes:,} bytes",
                )
        return FetchResult(
            source=source,
            fetched_at=now(),
            status=response.status,
            body=bytes(body),
            content_type=response.headers.get("Content-Type"),
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
        )


def _read_local(source: FeedSource, limits: FetchLimits, fetched_at: datetime) -> FetchResult:
    path = Path(source.url)
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            error = f"file larger than {limits.max_bytes:,} bytes"
            return FetchResult(source=source, fetched_at=fetched_at, error=error)
        body = path.read_bytes()
    except FileNotFoundError:
        return FetchResult(source=source, fetched_at=fetched_at, error=f"no such file: {path}")
    except OSError as exc:
        error = f"cannot read {path}: {exc.strerror or exc}"
        return FetchResult(source=source, fetched_at=fetched_at, error=error)
    content_type = "application/feed+json" if path.suffix.lower() == ".json" else None
    return FetchResult(source=source, fetched_at=fetched_at, body=body, content_type=content_type)
