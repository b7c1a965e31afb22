"""RSS and Atom through feedparser: clean XML text -> ``RawFeed``. Pure.

feedparser reads every RSS 0.9x/1.0/2.0 and Atom document, well-formed or not (it recovers
what it can, and the warning says so), always from a BytesIO of UTF-8 text that
``digest.decode.xml_text`` made: never a str or bytes, which feedparser could take for a
local file's name. ``digest.feeds_xml_fast`` reads the common documents faster and gives the
same ``RawFeed``; the helpers both share live here.
"""

from __future__ import annotations

import html
import io
from typing import Any
from urllib.parse import urljoin

import feedparser

from digest.entries import RawEntry, RawFeed
from digest.errors import FeedError
from digest.feeds_media import lead_image
from digest.feeds_values import from_struct
from digest.urls import is_http_url


def read_xml(text: str, url: str, warnings: list[str]) -> RawFeed:
    """The feed in ``text`` as feedparser reads it; raise FeedError if it is no feed at all."""
    # Relative links resolve against xml:base, then the feed's URL (RFC 4287, 3986). Given a
    # Content-Location, feedparser does that, but joins URLs on every element (a fifth of its
    # time); without one it loses the outer base after an xml:base element. So: only when
    # there is an xml:base; otherwise links stay relative and normalising joins them.
    headers = {"content-type": "application/xml; charset=utf-8"}
    if is_http_url(url) and "xml:base" in text:
        headers["content-location"] = url
    parsed = feedparser.parse(
        io.BytesIO(text.encode("utf-8")),
        response_headers=headers,
        sanitize_html=False,
        resolve_relative_uris=False,
    )
    problem = parsed.get("bozo_exception") if parsed.get("bozo") else None
    if not parsed.entries and (problem or not parsed.get("version")):
        raise FeedError(f"not a readable feed ({problem or 'no RSS or Atom root'})", feed_url=url)
    if problem:
        warnings.append(f"not well-formed XML ({problem}); kept what the lenient parser read")
    return RawFeed(
        entries=tuple(_from_feedparser(e) for e in parsed.entries),
        title=parsed.feed.get("title"),
        base=site_base(parsed.feed, url),
        ttl=parsed.feed.get("ttl"),
        language=parsed.feed.get("language"),
    )


_DC_LANGUAGE = "{http://purl.org/dc/elements/1.1/}language"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def channel_language(channel: Any) -> str | None:
    """The language an lxml channel or Atom feed element declares, as feedparser reads it:
    its <language> or <dc:language>, else its xml:lang."""
    value = channel.findtext("language") or channel.findtext(_DC_LANGUAGE) or channel.get(_XML_LANG)
    return str(value) if value else None


def site_base(feed: Any, url: str) -> str:
    """What relative links resolve against: the feed's URL, or for a local file its site
    link (itself relative to the feed's self link)."""
    if is_http_url(url):
        return url
    links = feed.get("links") or ()
    self_link = next((link.get("href") for link in links if link.get("rel") == "self"), None)
    site = urljoin(self_link or "", feed.get("link") or "")
    return site if is_http_url(site) else url


def _from_feedparser(entry: Any) -> RawEntry:
    body = next(iter(entry.get("content") or ()), None) or entry.get("summary_detail")
    published = entry.get("published_parsed")
    if published is None and "updated" in entry:  # asking otherwise warns in feedparser 6
        published = entry.get("updated_parsed")
    guid = entry.get("id")
    author = (entry.get("author_detail") or {}).get("name") or entry.get("author")
    return RawEntry(
        guid=guid or None,
        link=entry_link(entry.get("link"), guid),
        title=entry.get("title"),
        html=body_html(body) if body else None,
        html_base=(body or {}).get("base") or None,
        published_at=from_struct(published),
        author=author,
        categories=tuple(t.get("label") or t.get("term") or "" for t in entry.get("tags") or ()),
        image_url=lead_image(
            entry.get("media_content") or (),
            entry.get("media_thumbnail") or (),
            entry.get("enclosures") or (),
        ),
    )


def entry_link(link: str | None, guid: str | None) -> str | None:
    """The entry's link; else its guid, where that is an http(s) URL (as feedparser does)."""
    if not link and guid and is_http_url(guid):
        return guid
    return link


def body_html(detail: Any) -> str:
    """HTML of a feedparser-style text detail ({"type", "value"}): plain text escaped."""
    value = detail.get("value") or ""
    if detail.get("type") == "text/plain":
        return html.escape(value).replace("\n", "<br>")
    return str(value)
