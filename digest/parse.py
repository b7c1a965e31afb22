"""Parse: one fetched body -> normalised ``Story`` records. Pure: no I/O, no clock.

RSS 0.9x/1.0/2.0 and Atom go through feedparser (on a BytesIO, never a str or bytes that
could name a local file); JSON Feed 1.0/1.1 is read by the project's own reader. Each entry
becomes a story with a plain-text title, an absolute canonical link, a stable id, an aware
UTC time, and its body as sanitised HTML (nh3) and as clean text.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from time import struct_time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import feedparser
import nh3

from digest.errors import FeedError
from digest.models import FeedSource, FetchResult, Story

_TRACKING_PARAMS = re.compile(r"^(utm_\w+|fbclid|gclid|dclid|msclkid|mc_[ce]id|_hsenc|_hsmi)$")
_BLOCK_END = re.compile(r"(?i)<\s*(?:br|/p|/div|/li|/h[1-6]|/tr|/blockquote|/pre)\b[^>]*>")
_WHITESPACE = re.compile(r"\s+")
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")


def is_http_url(url: str) -> bool:
    return urlsplit(url).scheme.lower() in ("http", "https")


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
    base = url if is_http_url(url) else (parsed.feed.get("link") or url)
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
    if not link and guid and is_http_url(guid):
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
    if not link or not is_http_url(link):
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
