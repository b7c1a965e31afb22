"""Collect: fetch feeds (I/O) and parse them into stories (pure).

``fetch_all`` reads every feed concurrently over HTTP (aiohttp, with connect/read/total
timeouts, a body-size cap enforced while streaming, and conditional GET) or from a local
file, and returns one ``FetchResult`` per feed: never raises for one feed's failure.
``parse_feed`` turns one result's bytes into ``Story`` records: feedparser on a BytesIO
for RSS/Atom, the project's own reader for JSON Feed.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import io
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from time import struct_time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import aiohttp
import feedparser
import nh3

from digest import __version__
from digest.errors import FeedError
from digest.models import FeedSource, FeedState, FetchResult, Story

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
    if not _is_http(source.url):
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


def _is_http(url: str) -> bool:
    return urlsplit(url).scheme.lower() in ("http", "https")


# Parsing and normalising (pure)


def parse_feed(result: FetchResult) -> tuple[Story, ...]:
    """Turn a fetched body into stories; raise FeedError if it yields nothing usable."""
    source = result.source
    if _looks_like_json(result.body, result.content_type):
        entries, feed_title, base = _read_json_feed(result.body, source.url)
    else:
        entries, feed_title, base = _read_xml_feed(result.body, result.content_type, source.url)
    source_name = source.name or feed_title or urlsplit(source.url).hostname or source.url
    stories = []
    for entry in entries:
        if entry.published_at is None:  # undated entries count as published when first seen
            entry = replace(entry, published_at=result.fetched_at)
        story = _to_story(entry, source, source_name, base)
        if story is not None:
            stories.append(story)
    if not stories:
        raise FeedError(
            f"{source.title}: no usable entries (none had a link and a title or text)",
            feed_url=source.url,
        )
    return tuple(stories)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Entry:
    """An entry as read from any format, before normalising."""

    guid: str | None
    link: str | None
    title: str | None
    html: str | None
    published_at: datetime | None
    author: str | None


def _looks_like_json(body: bytes, content_type: str | None) -> bool:
    if content_type and "json" in content_type.lower():
        return True
    return body.lstrip()[:1] == b"{"


def _read_xml_feed(
    body: bytes, content_type: str | None, url: str
) -> tuple[list[_Entry], str | None, str]:
    headers = {"content-type": content_type} if content_type else {}
    # A BytesIO, never the bytes: feedparser treats a str/bytes that names a path as a file.
    parsed = feedparser.parse(
        io.BytesIO(body),
        response_headers={**headers, "content-location": url},
        sanitize_html=False,
    )
    if not parsed.entries:
        problem = parsed.get("bozo_exception")
        reason = f"not a readable feed ({problem})" if problem else "the feed has no entries"
        raise FeedError(reason, feed_url=url)
    base = url if _is_http(url) else (parsed.feed.get("link") or url)
    entries = [_from_feedparser(e) for e in parsed.entries]
    return entries, _plain(parsed.feed.get("title")), base


def _from_feedparser(entry: Any) -> _Entry:
    content = entry.get("content") or []
    body_html = content[0].get("value") if content else entry.get("summary")
    published = entry.get("published_parsed")
    if published is None and "updated" in entry:  # asking otherwise warns in feedparser 6
        published = entry.get("updated_parsed")
    link = entry.get("link")
    guid = entry.get("id")
    if not link and guid and _is_http(guid):
        link = guid
    return _Entry(
        guid=guid,
        link=link,
        title=entry.get("title"),
        html=body_html,
        published_at=_from_struct(published),
        author=entry.get("author"),
    )


def _from_struct(value: struct_time | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime(*value[:6], tzinfo=UTC)
    except (TypeError, ValueError):
        return None


def _read_json_feed(body: bytes, url: str) -> tuple[list[_Entry], str | None, str]:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FeedError(f"not valid JSON: {exc}", feed_url=url) from exc
    version = document.get("version", "") if isinstance(document, dict) else ""
    if not str(version).startswith("https://jsonfeed.org/version/"):
        raise FeedError(
            "JSON, but not a JSON Feed (no 'version': 'https://jsonfeed.org/version/1.x')",
            feed_url=url,
        )
    items = document.get("items")
    if not isinstance(items, list):
        raise FeedError("JSON Feed without an 'items' list", feed_url=url)
    base = _text_field(document, "home_page_url") or url
    entries = [_from_json_item(item) for item in items if isinstance(item, dict)]
    return entries, _plain(document.get("title")), base


def _from_json_item(item: dict[str, Any]) -> _Entry:
    """An entry from a JSON Feed item; fields of the wrong type count as absent."""
    body_html = _text_field(item, "content_html")
    if not body_html and (text := _text_field(item, "content_text")):
        body_html = html.escape(text).replace("\n", "<br>")
    authors = item.get("authors")
    if not isinstance(authors, list):
        authors = [item.get("author")]
    author = next(
        (a["name"] for a in authors if isinstance(a, dict) and _text_field(a, "name")), None
    )
    guid = item.get("id")
    return _Entry(
        guid=str(guid) if isinstance(guid, str | int) else None,
        link=_text_field(item, "url") or _text_field(item, "external_url"),
        title=_text_field(item, "title"),
        html=body_html or _text_field(item, "summary"),
        published_at=_from_iso(item.get("date_published") or item.get("date_modified")),
        author=author,
    )


def _text_field(mapping: dict[str, Any], key: str) -> str | None:
    value = mapping.get(key)
    return value if isinstance(value, str) and value else None


def _from_iso(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _to_story(entry: _Entry, source: FeedSource, source_name: str, base: str) -> Story | None:
    link = urljoin(base, entry.link.strip()) if entry.link else None
    if not link or not _is_http(link):
        return None
    clean_html = nh3.clean(entry.html or "")
    text = html_to_text(clean_html)
    title = _plain(entry.title) or _title_from_text(text)
    if not title:
        return None
    url = canonical_url(link)
    story_id = _hash(f"{source.url}\n{entry.guid}") if entry.guid else _hash(url)
    return Story(
        story_id=story_id,
        feed_url=source.url,
        source_name=source_name,
        category=source.category,
        url=url,
        title=title,
        published_at=entry.published_at,
        author=_plain(entry.author),
        text=text,
        html=clean_html,
    )


def html_to_text(markup: str) -> str:
    """Plain text of an HTML fragment: tags dropped, entities decoded, one line per block."""
    # Line breaks in markup are just spaces; only block ends and <br> break lines.
    flowed = _BLOCK_END.sub("\n", _WHITESPACE.sub(" ", markup))
    stripped = nh3.clean(flowed, tags=set())
    lines = (_SPACES.sub(" ", html.unescape(line)).strip() for line in stripped.splitlines())
    return "\n".join(line for line in lines if line)


def _plain(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = " ".join(html.unescape(nh3.clean(value, tags=set())).split())
    return text or None


def _title_from_text(text: str, words: int = 12) -> str | None:
    tokens = text.split()
    if not tokens:
        return None
    return " ".join(tokens[:words]) + ("…" if len(tokens) > words else "")


def canonical_url(url: str) -> str:
    """Lower-case scheme and host, no default port, no fragment, no tracking parameters."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    default_port = {"http": 80, "https": 443}.get(scheme)
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port in (None, default_port) else f"{host}:{port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    query = urlencode(
        [
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if not _TRACKING_PARAMS.match(k)
        ]
    )
    return urlunsplit((scheme, netloc, parts.path or "/", query, ""))


def _hash(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


def recent_stories(stories: Iterable[Story], now: datetime, max_age_days: int) -> tuple[Story, ...]:
    """Drop stories published more than ``max_age_days`` before ``now`` (0 keeps all)."""
    if max_age_days == 0:
        return tuple(stories)
    limit = max_age_days * 86400
    return tuple(
        s
        for s in stories
        if s.published_at is None or (now - s.published_at).total_seconds() <= limit
    )
