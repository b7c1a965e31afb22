"""JSON Feed 1.0/1.1: a body's bytes -> ``RawFeed``, by the project's own reader. Pure.

Fields of the wrong type count as absent; a document that is JSON but no JSON Feed, or has no
``items`` list, raises FeedError naming what is missing.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

from digest.entries import RawEntry, RawFeed
from digest.errors import FeedError
from digest.urls import is_http_url


def looks_like_json(body: bytes, content_type: str | None) -> bool:
    """The body's first character decides; the Content-Type only when that says nothing
    (servers label feeds wrongly both ways)."""
    first = body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if first in (b"{", b"<"):
        return first == b"{"
    return bool(content_type and "json" in content_type.lower())


def read_json_feed(body: bytes, url: str) -> RawFeed:
    """The JSON Feed in ``body``; raise FeedError if it is not one."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
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
    site = _text_field(document, "home_page_url")
    base = urljoin(url, site) if site else url
    return RawFeed(
        entries=tuple(_from_json_item(item) for item in items if isinstance(item, dict)),
        title=_text_field(document, "title"),
        base=base if is_http_url(base) else url,
        language=_text_field(document, "language"),
    )


def _from_json_item(item: dict[str, Any]) -> RawEntry:
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
    tags = item.get("tags")
    return RawEntry(
        guid=str(guid) if isinstance(guid, str | int) and guid != "" else None,
        link=_text_field(item, "url") or _text_field(item, "external_url"),
        title=_text_field(item, "title"),
        html=body_html or _text_field(item, "summary"),
        html_base=None,
        published_at=_from_iso(item.get("date_published") or item.get("date_modified")),
        author=author,
        categories=tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else (),
        image_url=_text_field(item, "image") or _text_field(item, "banner_image"),
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
