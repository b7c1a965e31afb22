"""Parse: one fetched body -> normalised ``Story`` records. Pure: no I/O, no clock.

The body is first made into clean Unicode here (gzip unwrapped, encoding chosen from the
BOM, the bytes, the HTTP charset and the XML declaration, then detection), so feedparser
only ever sees UTF-8 with no DOCTYPE. RSS 0.9x/1.0/2.0 and Atom go through feedparser (on a
BytesIO, never a str or bytes that could name a local file); JSON Feed 1.0/1.1 is read by
the project's own reader. Each entry becomes a story with a plain-text title, an absolute
canonical link, a stable id, an aware UTC time, categories, and its body as sanitised HTML
(nh3) and as clean text. A feed that is not well-formed still yields what feedparser
recovers, with a warning in ``ParsedFeed.warnings``.
"""

from __future__ import annotations

import codecs
import contextlib
import email.utils
import hashlib
import html
import io
import json
import logging
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache, partial
from time import struct_time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit
from xml.sax.saxutils import escape as xml_escape

import charset_normalizer
import feedparser
import feedparser.api
import feedparser.datetimes
import ftfy
import nh3
from lxml import etree

from digest.clean import clean_text, repeated_lines
from digest.errors import FeedError
from digest.models import FeedSource, FetchResult, ParsedFeed, Story

_TRACKING_PARAMS = re.compile(r"^(utm_\w+|fbclid|gclid|dclid|msclkid|mc_[ce]id|_hsenc|_hsmi)$")
_BLOCK_END = re.compile(r"(?i)<\s*(?:br|/p|/div|/li|/h[1-6]|/tr|/blockquote|/pre)\b[^>]*>")
_WHITESPACE = re.compile(r"\s+")
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_MAX_CATEGORIES = 20
_MAX_GUNZIPPED = 50_000_000

logger = logging.getLogger(__name__)


def is_http_url(url: str) -> bool:
    if url.startswith(("https://", "http://")):  # the common case, without urlsplit's cost
        return True
    return urlsplit(url).scheme.lower() in ("http", "https")


def parse_feed(result: FetchResult) -> ParsedFeed:
    """Turn a fetched body into stories; raise FeedError if it yields nothing usable."""
    return _parse_with(result, fast=True)


def _parse_with(result: FetchResult, *, fast: bool) -> ParsedFeed:
    """parse_feed; ``fast=False`` sends every RSS/Atom body through feedparser (tests)."""
    source = result.source
    warnings: list[str] = []
    body = _gunzip(result.body, source.url, warnings)
    if not body.strip():
        raise FeedError("the response was empty", feed_url=source.url)
    if _looks_like_json(body, result.content_type):
        document = _read_json_feed(body, source.url)
    else:
        document = _read_xml_feed(body, result.content_type, source.url, warnings, fast)
    stories, skipped = _to_stories(document, source, result.fetched_at)
    if not document.entries:
        raise FeedError("the feed has no entries", feed_url=source.url)
    if not stories:
        raise FeedError(f"no usable entries: skipped {skipped}", feed_url=source.url)
    if skipped:
        warnings.append(f"skipped {skipped}")
    return ParsedFeed(
        stories=_without_boilerplate(stories),
        warnings=tuple(warnings),
        ttl_minutes=_minutes(document.ttl),
    )


def _minutes(ttl: str | None) -> int | None:
    value = (ttl or "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def _without_boilerplate(stories: Sequence[Story]) -> tuple[Story, ...]:
    """Each story's text cleaned of site boilerplate, lines the feed repeats included, and
    its title of the section label the feed puts before its headlines."""
    boilerplate = repeated_lines(story.text for story in stories)
    labels = _section_labels(story.title for story in stories)
    cleaned = []
    for story in stories:
        text = clean_text(story.text, title=story.title, boilerplate=boilerplate)
        title = _without_section_label(story.title, labels)
        changed = text != story.text or title != story.title
        cleaned.append(replace(story, text=text, title=title) if changed else story)
    return tuple(cleaned)


# "World", then a single or double right angle quote or a bar, then the headline.
_SECTION_LABEL = re.compile(r"^(?P<label>[^\u203a\u00bb|]{1,30}?)\s*[\u203a\u00bb|]\s+(?=\S)")


def _section_labels(titles: Iterable[str]) -> frozenset[str]:
    """The labels a feed starts most of its titles with: its section names, not news."""
    all_titles = list(titles)
    labels = [
        match["label"]
        for title in all_titles
        if (match := _SECTION_LABEL.match(title)) and len(match["label"].split()) <= 3
    ]
    # A few such titles may be headlines' own punctuation; a habit of the feed is a label.
    is_habit = len(labels) >= 3 and len(labels) * 2 >= len(all_titles)
    return frozenset(labels) if is_habit else frozenset()


def _without_section_label(title: str, labels: frozenset[str]) -> str:
    match = _SECTION_LABEL.match(title)
    if match is None or match["label"] not in labels:
        return title
    return title[match.end() :]


# stories, error, warnings, and the feed's RSS <ttl> in minutes
ParseOutcome = tuple[tuple[Story, ...], str | None, tuple[str, ...], int | None]


def parse_fetched(result: FetchResult, max_age_days: int, max_entries: int) -> ParseOutcome:
    """(recent stories, at most ``max_entries`` of them, newest first; error, warnings, ttl)
    of one fetch, never raising: what a collect run's worker processes send back, so that
    one feed's failure stops no other."""
    if not result.is_ok or result.is_not_modified or result.is_unchanged:
        return (), None, (), None
    try:
        parsed = parse_feed(result)
    except FeedError as exc:
        return (), exc.message, (), None
    except Exception as exc:  # the per-feed boundary, as in the pipeline
        debug = logger.isEnabledFor(logging.DEBUG)
        logger.warning("unexpected error parsing %s: %r", result.source.url, exc, exc_info=debug)
        return (), f"could not parse the feed ({type(exc).__name__}: {exc})", (), None
    recent = recent_stories(parsed.stories, result.fetched_at, max_age_days)
    stories = newest_stories(recent, max_entries)
    warnings = parsed.warnings
    if parsed.stories and not recent:  # else a first collect says "unchanged 0", and why?
        warnings += (
            f"every entry ({len(parsed.stories)}) was published more than {max_age_days} days "
            "ago: none kept ([collect].max_age_days; 0 keeps every entry)",
        )
    if len(stories) < len(recent):
        warnings += (
            f"kept the newest {len(stories):,} of its {len(recent):,} recent entries "
            "([collect].max_entries_per_feed)",
        )
    return stories, None, warnings, parsed.ttl_minutes


@dataclass(frozen=True, slots=True, kw_only=True)
class _Entry:
    """An entry as read from any format, before normalising."""

    guid: str | None
    link: str | None
    title: str | None
    html: str | None
    html_base: str | None  # the base in force for the body (xml:base, else the feed URL)
    published_at: datetime | None
    author: str | None
    categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Document:
    """A feed as read from any format: its entries, its title and the base for links."""

    entries: list[_Entry]
    title: str | None
    base: str
    ttl: str | None = None  # RSS <ttl>: minutes the publisher asks readers to wait


def _to_stories(
    document: _Document, source: FeedSource, fetched_at: datetime
) -> tuple[list[Story], str]:
    """The usable stories, and what was skipped and why ("" if nothing was)."""
    name = source.name or _fix_text(document.title) or urlsplit(source.url).hostname or source.url
    stories, skipped = [], {"link": 0, "title": 0}
    for entry in document.entries:
        story = _to_story(entry, source, name, document.base, fetched_at)
        if isinstance(story, Story):
            stories.append(story)
        else:
            skipped[story] += 1
    reasons = [f"{skipped['link']} without an http(s) link"] * bool(skipped["link"])
    reasons += [f"{skipped['title']} without a title or text"] * bool(skipped["title"])
    total = len(document.entries)
    if not reasons:
        return stories, ""
    return stories, f"{total - len(stories)} of {total} entries ({', '.join(reasons)})"


# Bytes to text


def _gunzip(body: bytes, url: str, warnings: list[str]) -> bytes:
    """Unwrap a gzip body served without Content-Encoding, with a cap against zip bombs."""
    if body[:2] != b"\x1f\x8b":
        return body
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, _MAX_GUNZIPPED)
    except zlib.error as exc:
        raise FeedError(f"a gzip body that does not inflate ({exc})", feed_url=url) from exc
    if inflater.unconsumed_tail:
        raise FeedError(f"gzip body inflates past {_MAX_GUNZIPPED:,} bytes", feed_url=url)
    warnings.append("the body was gzip-compressed without saying so (Content-Encoding)")
    return data


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)""")
_HTTP_CHARSET = re.compile(r"""(?i)charset\s*=\s*["']?([A-Za-z0-9._:-]+)""")
_UTF8_SEQUENCE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)
_NON_ASCII = bytes(range(128, 256))
# WHATWG's Encoding Standard: these labels mean the superset on the web (a page "in
# ISO-8859-1" with curly quotes is windows-1252), so the superset is tried first.
_SUPERSETS = {
    "ascii": "cp1252",
    "iso8859-1": "cp1252",
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc_kr": "cp949",
    "shift_jis": "cp932",
    "big5": "big5hkscs",
}


def _decode(body: bytes, content_type: str | None) -> tuple[str, str | None]:
    """The body as text, and a warning when its declared encoding was wrong or missing."""
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(encoding, "replace"), None
    if wide := _sniff_wide(body[:64]):
        return body.decode(wide, "replace"), None
    if body.isascii():
        return body.decode("ascii"), None
    declared = [m.group(1).decode("ascii") for m in [_XML_ENCODING.match(body)] if m]
    declared += [m.group(1) for m in [_HTTP_CHARSET.search(content_type or "")] if m]
    if (text := _as_utf8(body)) is not None:
        wrong = [d for d in declared if _codec(d) not in (None, "utf-8")]
        return text, f"declared {wrong[0]}, but the bytes are UTF-8" if wrong else None
    for label in declared:
        if (codec := _codec(label)) and (text := _strict(body, codec)) is not None:
            return text, None
    guess = _detect(body)
    what = f"declared {declared[0]}, but" if declared else "no encoding declared;"
    return body.decode(guess, "replace"), f"{what} the bytes read as {guess}"


def _sniff_wide(head: bytes) -> str | None:
    """UTF-16/32 without a BOM, told apart by where the NUL bytes of ASCII markup fall."""
    if b"\0" not in head:
        return None
    for encoding, size in (("utf-32-be", 4), ("utf-32-le", 4), ("utf-16-be", 2), ("utf-16-le", 2)):
        try:
            text = head[: len(head) // size * size].decode(encoding)
        except UnicodeDecodeError:
            continue
        if text.lstrip().startswith("<"):
            return encoding
    return None


def _as_utf8(body: bytes) -> str | None:
    """UTF-8 text, also when a few stray bytes of another encoding slipped in."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    non_ascii = len(body) - len(body.translate(None, _NON_ASCII))
    in_sequences = sum(len(s) for s in _UTF8_SEQUENCE.findall(body))
    # UTF-8 with stray bytes is mostly valid sequences; in legacy text (GB2312, TIS-620,
    # Shift-JIS: 23-34% in the corpus) they are chance, and in Latin or Cyrillic ones, none.
    if non_ascii >= 8 and in_sequences >= 0.6 * non_ascii:
        return body.decode("utf-8", "digest-cp1252")
    return None


def _cp1252_fallback(error: UnicodeError) -> tuple[str, int]:
    """Decode error handler: read an invalid UTF-8 byte as windows-1252."""
    assert isinstance(error, UnicodeDecodeError)
    return error.object[error.start : error.end].decode("cp1252", "replace"), error.end


codecs.register_error("digest-cp1252", _cp1252_fallback)


def _codec(label: str) -> str | None:
    """Python's codec for a declared label; None for unknown ones and UTF-16/32, which
    cannot be right for bytes that are not wide."""
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    return None if name.startswith(("utf-16", "utf-32")) else name


def _strict(body: bytes, codec: str) -> str | None:
    for encoding in dict.fromkeys((_SUPERSETS.get(codec, codec), codec)):
        try:
            return body.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


def _detect(body: bytes) -> str:
    """Guess the encoding of bytes that are not UTF-8 and not what they declare."""
    sample = body[:65536]
    if len(body) > len(sample):  # cut at a newline: never inside a multibyte character
        sample = sample[: sample.rfind(b"\n") + 1] or sample
    matches = list(charset_normalizer.from_bytes(sample))
    if not matches:
        return "cp1252"
    best = matches[0]
    tied = [m for m in matches if m.chaos <= best.chaos + 0.01]
    # The detector cannot tell Latin-script code pages apart on a few accents; the web's
    # most common one is the safe pick, and a noisy best guess is no better.
    if best.chaos > 0.1 or any("cp1252" in m.could_be_from_charset for m in tied):
        return "cp1252"
    return str(best.encoding)


# XML feeds (feedparser)

_LEADING_DECLARATION = re.compile(r"^\s*(?:<!--.*?-->\s*)*<\?xml[^>]*>", re.S)
_DOCTYPE = re.compile(r"<!DOCTYPE\b", re.I)
_ELEMENT = re.compile(r"<[A-Za-z_]")
_SUBSET_END = re.compile(r"\]\s*>")
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _read_xml_feed(
    body: bytes, content_type: str | None, url: str, warnings: list[str], fast: bool
) -> _Document:
    text = _xml_text(body, content_type, warnings)
    if fast and (document := _read_fast(text, url)) is not None:
        return document
    # A BytesIO, never the bytes: feedparser treats a str/bytes that names a path as a file.
    # Relative links resolve against xml:base, then the feed's URL (RFC 4287, 3986). Given a
    # Content-Location, feedparser does that, but joins URLs on every element (a fifth of its
    # time); without one it loses the outer base after an xml:base element. So: only when
    # there is an xml:base; otherwise links stay relative and _to_story joins them.
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
    entries = [_from_feedparser(e) for e in parsed.entries]
    return _Document(
        entries=entries,
        title=_plain(parsed.feed.get("title")),
        base=_site_base(parsed.feed, url),
        ttl=parsed.feed.get("ttl"),
    )


def _xml_text(body: bytes, content_type: str | None, warnings: list[str]) -> str:
    """The body as text for either XML reader: no declaration, no DOCTYPE, no characters
    that XML forbids."""
    text, warning = _decode(body, content_type)
    if warning:
        warnings.append(warning)
    return _XML_ILLEGAL.sub("", _drop_doctype(_LEADING_DECLARATION.sub("", text.lstrip())))


def _drop_doctype(text: str) -> str:
    """Remove the DOCTYPE and its internal subset, so no entity is ever expanded.

    feedparser keeps "safe" text entities, and its lenient parser expands them without any
    limit: a few kilobytes of `&a;` references become gigabytes. Feeds have no use for a DTD.
    """
    doctype = _DOCTYPE.search(text)
    root = _ELEMENT.search(text)
    if not doctype or not root or doctype.start() > root.start():
        return text
    subset_at, close_at = text.find("[", doctype.end()), text.find(">", doctype.end())
    if 0 <= subset_at < close_at and (end := _SUBSET_END.search(text, subset_at)):
        rest = text[end.end() :]
    else:
        rest = text[close_at + 1 :] if close_at >= 0 else ""
    if "<!ENTITY" in rest[: (m.start() if (m := _ELEMENT.search(rest)) else len(rest))]:
        rest = rest[m.start() :] if m else ""  # a subset that fooled the search above
    return text[: doctype.start()] + rest


def _site_base(feed: Any, url: str) -> str:
    """What relative links resolve against: the feed's URL, or for a local file its site
    link (itself relative to the feed's self link)."""
    if is_http_url(url):
        return url
    links = feed.get("links") or ()
    self_link = next((link.get("href") for link in links if link.get("rel") == "self"), None)
    site = urljoin(self_link or "", feed.get("link") or "")
    return site if is_http_url(site) else url


def _from_feedparser(entry: Any) -> _Entry:
    body = next(iter(entry.get("content") or ()), None) or entry.get("summary_detail")
    published = entry.get("published_parsed")
    if published is None and "updated" in entry:  # asking otherwise warns in feedparser 6
        published = entry.get("updated_parsed")
    link = entry.get("link")
    guid = entry.get("id")
    if not link and guid and is_http_url(guid):
        link = guid
    author = (entry.get("author_detail") or {}).get("name") or entry.get("author")
    return _Entry(
        guid=guid or None,
        link=link,
        title=entry.get("title"),
        html=_body_html(body) if body else None,
        html_base=(body or {}).get("base") or None,
        published_at=_from_struct(published),
        author=author,
        categories=tuple(t.get("label") or t.get("term") or "" for t in entry.get("tags") or ()),
    )


def _body_html(detail: Any) -> str:
    value = detail.get("value") or ""
    if detail.get("type") == "text/plain":
        return html.escape(value).replace("\n", "<br>")
    return str(value)


def _from_struct(value: struct_time | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime(*value[:6], tzinfo=UTC)
    except (TypeError, ValueError):
        return None


# XML feeds, fast path (lxml)
#
# feedparser's SAX handlers run in pure Python and are most of parse_feed's time. Feeds
# that are well-formed RSS 2.0/0.9x, RSS 1.0 or Atom 1.0 and use only the elements below
# are read with lxml instead, mapped field by field as feedparser (and _from_feedparser)
# would; anything else raises _Unsupported and takes the feedparser path unchanged.
# tests/test_parse_fast.py holds the two paths equal over the whole corpus.

_ATOM_NS = "{http://www.w3.org/2005/Atom}"
_RSS1_NS = "{http://purl.org/rss/1.0/}"
_RDF_ROOT = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}RDF"
_RDF_ABOUT = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}about"
# Every element name feedparser has a handler for; a name outside _FAST_FIELDS and
# _INERT is one whose effect the fast path does not reproduce.
_HANDLED = frozenset(
    name.split("_", 2)[2].lower()
    for name in dir(feedparser.api.StrictFeedParser)
    if name.startswith(("_start_", "_end_"))
)
_NAMESPACES = {
    uri.lower(): prefix for uri, prefix in feedparser.api.StrictFeedParser.namespaces.items()
}
# Handlers that never touch the fields read here (they fill links, media_*, subtitle...).
_INERT = frozenset(
    {"enclosure", "media_content", "media_thumbnail", "media_player", "media_rating"}
    | {"media_credit", "media_restriction", "media_license", "media_group", "itunes_image"}
    | {"itunes_explicit", "itunes_block", "itunes_subtitle", "rights", "dc_rights", "copyright"}
    | {"cc_license", "creativecommons_license", "dc_language", "language", "expirationdate"}
    | {"created", "dcterms_created", "dcterms_valid", "dc_publisher", "width", "height", "url"}
    | {"psc_chapters", "psc_chapter", "georss_point", "georss_line", "georss_polygon"}
    | {"georss_box", "georss_where", "where", "gml_point", "gml_pos", "gml_poslist"}
    | {"gml_linestring", "gml_polygon", "gml_exterior", "gml_linearring", "geom"}
)
_AUTHORS = frozenset({"author", "dc_creator", "dc_author", "itunes_author"})
_RSS_FIELDS = (
    frozenset({"title", "link", "description", "content_encoded", "guid", "pubdate", "dc_date"})
    | _AUTHORS
)
_ATOM_FIELDS = frozenset({"title", "id", "content", "summary", "published", "updated", "author"})
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_CONTENT_TYPES = {"text": "text/plain", "html": "text/html", "xhtml": "application/xhtml+xml"}
_URI_SLASHES = re.compile("^([A-Za-z][A-Za-z0-9+-.]*://)(/*)(.*?)")
_ENTITY_LIKE = re.compile("&([A-Za-z0-9_]+);")
_AUTHOR_EMAIL = re.compile(
    r"""(([a-zA-Z0-9\_\-\.\+]+)@((\[[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.)|(([a-zA-Z0-9\-]+\.)+))"""
    r"""([a-zA-Z]{2,4}|[0-9]{1,3})(\]?))(\?subject=\S+)?"""
)
_RFC822 = re.compile(
    r"(?:[A-Z][a-z]{2}, )?\d{1,2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
    r"\d{2}:\d{2}:\d{2} (?:[+-]\d{4}|GMT|UTC|UT|Z)"
)
_ISO8601 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})")
_CP1252_C1 = {  # feedparser's table: the C1 controls windows-1252 defines
    code: bytes([code]).decode("cp1252")
    for code in range(0x80, 0xA0)
    if code not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)
}


_C1_CONTROL = re.compile("[\x80-\x9f]")


class _Unsupported(Exception):
    """The document uses something the fast path does not read exactly as feedparser."""


def _read_fast(text: str, url: str) -> _Document | None:
    """The document read with lxml, or None where it must go through feedparser."""
    if "xml:base" in text:  # feedparser's base tracking is not reproduced here
        return None
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        recover=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        root = etree.fromstring(text.encode("utf-8"), parser)
        if root.tag == "rss":
            return _fast_rss(root, url)
        if root.tag == _RDF_ROOT:
            return _fast_rdf(root, url)
        if root.tag == _ATOM_NS + "feed":
            return _fast_atom(root, url)
    except (etree.XMLSyntaxError, _Unsupported):
        pass
    return None


def _fp_name(element: Any) -> str:
    """The name feedparser dispatches an element on: its known prefix, "_", local name."""
    return _fp_tag(element.tag, element.prefix)


@lru_cache(maxsize=1024)
def _fp_tag(tag: str, given_prefix: str | None) -> str:
    if tag[0] != "{":
        return tag.lower()
    namespace, local = tag[1:].split("}", 1)
    lowered = namespace.lower()
    if "backend.userland.com/rss" in lowered:
        lowered = "http://backend.userland.com/rss"
    prefix = _NAMESPACES.get(lowered, given_prefix)
    return f"{prefix.lower()}_{local.lower()}" if prefix else local.lower()


def _fp_text(value: str | None) -> str:
    """An element's text as feedparser's pop() leaves it: stripped, UTF-8 read as Latin-1
    undone, C1 controls mapped to windows-1252."""
    output = (value or "").strip()
    if output.isascii():
        return output
    with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
        output = output.encode("iso-8859-1").decode("utf-8")
    return output.translate(_CP1252_C1) if _C1_CONTROL.search(output) else output


def _plain_text(element: Any) -> str:
    """The text of an element that must hold no elements and no attributes."""
    if len(element) or element.attrib:
        raise _Unsupported(element.tag)
    return _fp_text(element.text)


def _fp_urljoin(uri: str) -> str:
    """feedparser's resolve_uri with no base: collapses extra slashes after the scheme."""
    uri = _URI_SLASHES.sub(r"\1\3", uri)
    try:
        return urljoin("", uri)
    except ValueError:
        return ""


def _check_inert(element: Any, inert: frozenset[str] = _INERT) -> None:
    """Refuse any descendant that a feedparser handler would read into an entry field."""
    for inner in element.iter():
        if inner is not element and (name := _fp_name(inner)) in _HANDLED and name not in inert:
            raise _Unsupported(name)


def _fast_rss(root: Any, url: str) -> _Document:
    channels = [child for child in root if child.tag == "channel"]
    if len(channels) != 1:
        raise _Unsupported("channels")
    channel = channels[0]
    items = [child for child in channel if child.tag == "item"]
    if not items or any(child.tag in ("item", "channel") for child in root if child is not channel):
        raise _Unsupported("items")
    title, base = _fast_channel(channel, url, "item")
    entries = [_rss_entry(item) for item in items]
    return _Document(entries=entries, title=title, base=base, ttl=channel.findtext("ttl"))


def _fast_rdf(root: Any, url: str) -> _Document:
    channels = [child for child in root if child.tag == _RSS1_NS + "channel"]
    items = [child for child in root if child.tag == _RSS1_NS + "item"]
    if len(channels) != 1 or not items:
        raise _Unsupported("rdf")
    for child in root:
        if child.tag not in (_RSS1_NS + "channel", _RSS1_NS + "item"):
            _check_inert_feed_part(child)
    title, base = _fast_channel(channels[0], url, "item")
    return _Document(entries=[_rss_entry(item) for item in items], title=title, base=base)


def _check_inert_feed_part(element: Any) -> None:
    """A feed-level part outside the channel (RSS 1.0 image, textinput): only its own
    title/link/url/description/name, none of which reach an entry or the feed title."""
    if _fp_name(element) not in ("image", "textinput"):
        _check_inert(element)
        if _fp_name(element) in _HANDLED and _fp_name(element) not in _INERT:
            raise _Unsupported(element.tag)
        return
    for child in element:
        if _fp_name(child) not in (
            "title",
            "link",
            "url",
            "description",
            "name",
            "width",
            "height",
        ):
            raise _Unsupported(child.tag)
        _plain_text(child)


def _fast_channel(channel: Any, url: str, entry_tag: str) -> tuple[str | None, str]:
    """The feed's title and the base for its links, from the channel's own children."""
    titles, links, self_links = [], [], []
    for child in channel:
        name = _fp_name(child)
        if name == entry_tag:
            continue
        if name == "title":
            titles.append(_atom_text(child)[1])
        elif name == "link" and not child.attrib:
            links.append(_ENTITY_LIKE.sub(r"&\g<1>", _uri_text(child)))
        elif name == "link":
            self_links.append(_atom_link(child, links))
        elif name in ("image", "textinput"):
            _check_inert_feed_part(child)
        elif name in _FEED_INERT:
            _check_inert(child, _INERT | _FEED_PEOPLE)
        elif name in _HANDLED and name not in _INERT:
            raise _Unsupported(name)
        else:
            _check_inert(child)
    if len(titles) > 1:
        raise _Unsupported("titles")
    feed = {"link": links[-1] if links else None, "links": [s for s in self_links if s]}
    return (_plain(titles[0]) if titles else None), _site_base(feed, url)


# Feed-level handlers that fill only feed fields this module never reads.
_FEED_INERT = frozenset(
    {"description", "subtitle", "tagline", "pubdate", "lastbuilddate", "updated", "published"}
    | {"managingeditor", "webmaster", "generator", "cloud", "category", "dc_subject", "ttl"}
    | {"dc_date", "dc_creator", "author", "itunes_author", "itunes_owner", "itunes_summary"}
    | {"itunes_category", "itunes_keywords", "itunes_name", "itunes_email", "docs", "id"}
    | {"rights", "icon", "logo", "contributor", "media_category", "media_keywords"}
    | {"sy_updateperiod", "sy_updatefrequency", "newlocation", "info"}
)
# What feed-level people and categories hold: they fill only the feed's own fields.
_FEED_PEOPLE = frozenset({"name", "email", "uri", "itunes_name", "itunes_email", "itunes_category"})


def _atom_link(element: Any, links: list[str]) -> dict[str, str] | None:
    """An Atom-style link: appends an alternate HTML href to ``links``; returns a self link."""
    attrs = {key.lower(): value for key, value in element.attrib.items()}
    if "href" not in attrs or len(element) or (element.text or "").strip():
        raise _Unsupported("link")
    rel = attrs.get("rel", "alternate").lower()
    kind = attrs.get("type", "application/atom+xml" if rel == "self" else "text/html").lower()
    href = _fp_urljoin(attrs["href"])
    if rel == "alternate" and _CONTENT_TYPES.get(kind, kind) in _HTML_TYPES:
        links.append(href)
    return {"rel": rel, "href": href} if rel == "self" else None


def _rss_entry(item: Any) -> _Entry:
    if any(key != _RDF_ABOUT for key in item.attrib):
        raise _Unsupported("item attributes")
    fields: dict[str, Any] = {}
    categories = []
    for child in item:
        name = _fp_name(child)
        if name in _RSS_FIELDS:
            if name in fields or (name in _AUTHORS and fields.keys() & _AUTHORS):
                raise _Unsupported(f"two {name}")
            fields[name] = child
        elif name in ("category", "dc_subject"):
            categories.append(_rss_category(child))
        elif name == "source" and len(child):
            raise _Unsupported("source")
        elif name in _HANDLED and name not in _INERT and name != "source":
            raise _Unsupported(name)
        else:
            _check_inert(child)
    return _rss_fields(fields, categories, item.get(_RDF_ABOUT))


def _rss_category(element: Any) -> str:
    if len(element) or any(key.lower() != "domain" for key in element.attrib):
        raise _Unsupported("category")
    return _fp_text(element.text)


def _rss_fields(fields: dict[str, Any], categories: list[str], about: str | None) -> _Entry:
    guid, link = about, None
    if (element := fields.get("guid")) is not None:
        if len(element) or any(key.lower() != "ispermalink" for key in element.attrib):
            raise _Unsupported("guid")
        is_link = next((v for k, v in element.attrib.items() if k.lower() == "ispermalink"), "true")
        guid = _fp_text(element.text)
        if is_link == "true":
            guid = link = _fp_text(_fp_urljoin((element.text or "").strip()))
    if (element := fields.get("link")) is not None:
        link = _ENTITY_LIKE.sub(r"&\g<1>", _uri_text(element).replace("&amp;", "&"))
    body = fields.get("content_encoded")
    if body is None:
        body = fields.get("description")
    author = fields.get(next(iter(fields.keys() & _AUTHORS), ""))
    return _Entry(
        guid=guid or None,
        link=_entry_link(link, guid),
        title=_plain_text(fields["title"]) if "title" in fields else None,
        html=_plain_text(body) if body is not None else None,
        html_base=None,
        published_at=_fast_published(fields.get("pubdate"), fields.get("dc_date")),
        author=_author_name(_plain_text(author)) if author is not None else None,
        categories=tuple(categories),
    )


def _entry_link(link: str | None, guid: str | None) -> str | None:
    if not link and guid and is_http_url(guid):
        return guid
    return link


def _author_name(author: str) -> str | None:
    """feedparser's author_detail name for "Name <email>" style text, else the text."""
    if not author:
        return author or None
    name = author
    if match := _AUTHOR_EMAIL.search(author):
        name = author.replace(match.group(0), "").replace("()", "").replace("<>", "")
        name = name.replace("&lt;&gt;", "").strip()
        name = name[1:] if name[:1] == "(" else name
        name = (name[:-1] if name[-1:] == ")" else name).strip()
    return name or author


def _fast_published(published: Any, updated: Any) -> datetime | None:
    moment = _fast_date(_plain_text(published)) if published is not None else None
    if moment is None and updated is not None:
        moment = _fast_date(_plain_text(updated))
    return moment


def _fast_date(value: str) -> datetime | None:
    """The time feedparser's date parser gives, by the stdlib for the two common forms."""
    if _RFC822.fullmatch(value):
        moment = email.utils.parsedate_to_datetime(value)
    elif _ISO8601.fullmatch(value):
        moment = datetime.fromisoformat(value)
    else:
        return _from_struct(feedparser.datetimes._parse_date(value))
    if not 1900 <= moment.year <= 9999:
        return _from_struct(feedparser.datetimes._parse_date(value))
    return moment.astimezone(UTC).replace(microsecond=0)


def _fast_atom(root: Any, url: str) -> _Document:
    entries = [child for child in root if child.tag == _ATOM_NS + "entry"]
    if not entries:
        raise _Unsupported("no entries")
    title, base = _fast_channel(root, url, "entry")
    return _Document(entries=[_atom_entry(entry) for entry in entries], title=title, base=base)


def _atom_entry(entry: Any) -> _Entry:
    if entry.attrib:
        raise _Unsupported("entry attributes")
    fields: dict[str, Any] = {}
    links: list[str] = []
    categories = []
    for child in entry:
        name = _fp_name(child)
        if name in _ATOM_FIELDS:
            if name in fields:
                raise _Unsupported(f"two {name}")
            fields[name] = child
        elif name == "link":
            _atom_link(child, links)
        elif name == "category":
            categories.append(_atom_category(child))
        elif name == "contributor":
            _atom_person(child)
        elif name in _HANDLED and name not in _INERT:
            raise _Unsupported(name)
        else:
            _check_inert(child)
    return _atom_fields(fields, links, categories)


def _atom_fields(fields: dict[str, Any], links: list[str], categories: list[str]) -> _Entry:
    guid = None
    if (element := fields.get("id")) is not None:
        guid = _uri_text(element)
    body = fields.get("content")
    if body is None:
        body = fields.get("summary")
    return _Entry(
        guid=guid or None,
        link=_entry_link(links[-1] if links else guid, guid),
        title=_atom_text(fields["title"])[1] if "title" in fields else None,
        html=_atom_body(body) if body is not None else None,
        html_base=None,
        published_at=_fast_published(fields.get("published"), fields.get("updated")),
        author=_atom_person(fields["author"]) if "author" in fields else None,
        categories=tuple(categories),
    )


def _uri_text(element: Any) -> str:
    """A link-like element's text: resolved (feedparser's resolve_uri), then repaired."""
    if len(element) or element.attrib:
        raise _Unsupported(element.tag)
    return _fp_text(_fp_urljoin((element.text or "").strip()))


def _atom_category(element: Any) -> str:
    attrs = element.attrib
    if len(element) or (element.text or "").strip() or set(attrs) - {"term", "scheme", "label"}:
        raise _Unsupported("category")
    return str(attrs.get("label") or attrs.get("term") or "")


def _atom_person(element: Any) -> str | None:
    """An author's name (else email) as feedparser's author_detail/author give it."""
    parts = {_fp_name(child): child for child in element}
    if element.attrib or len(parts) != len(element) or set(parts) - {"name", "email", "uri"}:
        raise _Unsupported("person")
    if not parts:
        return _author_name(_plain_text(element))
    if (element.text or "").strip() or any((c.tail or "").strip() for c in element):
        raise _Unsupported("person text")
    # name and email are pushed without text handling: stripped, never repaired
    name, mail = (_bare_text(parts[key]) if key in parts else None for key in ("name", "email"))
    return name or mail or None


def _bare_text(element: Any) -> str:
    if len(element) or element.attrib:
        raise _Unsupported(element.tag)
    return (element.text or "").strip()


def _atom_text(element: Any) -> tuple[str, str]:
    """(content type, value) of an Atom text construct of type text or html."""
    kind = _atom_type(element, "text/plain")
    if kind == "application/xhtml+xml" or len(element):
        raise _Unsupported("inline markup")
    return kind, _fp_text(element.text)


def _atom_type(element: Any, default: str) -> str:
    attrs = element.attrib
    if set(attrs) - {"type", "{http://www.w3.org/XML/1998/namespace}lang"}:
        raise _Unsupported("content attributes")
    kind = str(attrs.get("type", default)).lower()
    kind = _CONTENT_TYPES.get(kind, kind)
    if kind not in ("text/plain", "text/html", "application/xhtml+xml"):
        raise _Unsupported(f"content type {kind}")
    return kind


def _atom_body(element: Any) -> str:
    if _atom_type(element, "text/plain") == "application/xhtml+xml":
        return _fp_text(_xhtml(element))
    kind, value = _atom_text(element)
    return _body_html({"type": kind, "value": value})


def _xhtml(element: Any) -> str:
    """Inline XHTML content serialised as feedparser does, one enclosing <div> removed."""
    children = list(element)
    if (
        len(children) == 1
        and _xhtml_tag(children[0]) == "div"
        and not (element.text or "").strip()
        and not (children[0].tail or "").strip()
    ):
        element, children = children[0], list(children[0])
    pieces = [xml_escape(element.text or "")]
    for child in children:
        _xhtml_pieces(child, pieces)
    return "".join(pieces)


def _xhtml_pieces(element: Any, pieces: list[str]) -> None:
    tag = _xhtml_tag(element)
    if tag in ("svg", "math"):
        raise _Unsupported(tag)
    attrs = []
    for key, value in element.attrib.items():
        if key.startswith("{"):
            namespace, local = key[1:].split("}", 1)
            if namespace != "http://www.w3.org/XML/1998/namespace":
                raise _Unsupported("namespaced attribute")
            key = "xml:" + local
        key = key.lower()
        value = value.lower() if key in ("rel", "type") else value
        attrs.append(f' {key}="{xml_escape(value, {chr(34): "&quot;"})}"')
    pieces.append(f"<{tag}{''.join(attrs)}>")
    pieces.append(xml_escape(element.text or ""))
    for child in element:
        _xhtml_pieces(child, pieces)
    pieces.append(f"</{tag}>")
    pieces.append(xml_escape(element.tail or ""))


def _xhtml_tag(element: Any) -> str:
    tag = element.tag
    if not isinstance(tag, str):
        raise _Unsupported("entity")
    return (tag.rsplit("}", 1)[-1]).lower()


# JSON Feed (our own reader)


def _looks_like_json(body: bytes, content_type: str | None) -> bool:
    """The body's first character decides; the Content-Type only when that says nothing
    (servers label feeds wrongly both ways)."""
    first = body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if first in (b"{", b"<"):
        return first == b"{"
    return bool(content_type and "json" in content_type.lower())


def _read_json_feed(body: bytes, url: str) -> _Document:
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
    return _Document(
        entries=[_from_json_item(item) for item in items if isinstance(item, dict)],
        title=_plain(document.get("title")),
        base=base if is_http_url(base) else url,
    )


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
    tags = item.get("tags")
    return _Entry(
        guid=str(guid) if isinstance(guid, str | int) and guid != "" else None,
        link=_text_field(item, "url") or _text_field(item, "external_url"),
        title=_text_field(item, "title"),
        html=body_html or _text_field(item, "summary"),
        html_base=None,
        published_at=_from_iso(item.get("date_published") or item.get("date_modified")),
        author=author,
        categories=tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else (),
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


# Normalising


def _to_story(
    entry: _Entry, source: FeedSource, source_name: str, base: str, fetched_at: datetime
) -> Story | str:
    """The story, or why there is none: "link" or "title"."""
    link = urljoin(base, entry.link.strip()) if entry.link else None
    if not link or not is_http_url(link) or len(link) > _MAX_LINK:
        return "link"
    clean_html = _clean_html(_fix_text(entry.html) or "", urljoin(link, entry.html_base or ""))
    text = html_to_text(clean_html)
    title = _clipped(_plain(_fix_text(entry.title)), _MAX_TITLE) or _title_from_text(text)
    if not title:
        return "title"
    url = canonical_url(link)
    return Story(
        story_id=_hash(f"{source.url}\n{entry.guid}") if entry.guid else _hash(url),
        feed_url=source.url,
        source_name=source_name,
        category=source.category,
        url=url,
        title=title,
        published_at=entry.published_at or fetched_at,  # undated: published when first seen
        author=_clipped(_plain(_fix_text(entry.author)), _MAX_AUTHOR),
        categories=_categories(entry.categories),
        text=text,
        html=clean_html,
        is_deduped=source.is_deduped,
    )


# Mojibake (UTF-8 read as windows-1252/latin-1) always has one of these pairs, or a C1
# control; the cheap search keeps ftfy's slower check off clean text.
_MOJIBAKE_HINT = re.compile(
    "[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6"
    "\u02dc\u2013\u2014\u2018-\u201a\u201c-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a"
    "\u20ac\u2122]|[\u0080-\u009f]"
)


def _fix_text(value: object) -> str | None:
    """Repair mojibake (double-encoded UTF-8) where ftfy is sure; never touch clean text."""
    if not isinstance(value, str):
        return None
    if value.isascii() or not _MOJIBAKE_HINT.search(value):
        return value
    # ftfy only, not an encoding guess: it undoes the decode/encode mistake byte for byte
    # and leaves text alone unless it is sure (its own badness check).
    return ftfy.fix_encoding(value)


_URL_ATTRIBUTES = frozenset({"href", "src", "cite", "poster"})


def _clean_html(markup: str, base: str) -> str:
    """Sanitise with nh3, making relative URLs absolute against the body's base."""
    if not markup:
        return ""
    return nh3.clean(markup, attribute_filter=partial(_absolute_url, base))


def _absolute_url(base: str, tag: str, attribute: str, value: str) -> str:
    if attribute in _URL_ATTRIBUTES and value and not is_http_url(value):
        return urljoin(base, value.strip())
    return value


def _categories(values: Iterable[str]) -> tuple[str, ...]:
    names = (_plain(_fix_text(v)) for v in values)
    unique = dict.fromkeys(n for n in names if n)
    return tuple(unique)[:_MAX_CATEGORIES]


def html_to_text(markup: str) -> str:
    """Plain text of an HTML fragment: tags dropped, entities decoded, one line per block."""
    # Line breaks in markup are just spaces; only block ends and <br> break lines.
    flowed = _BLOCK_END.sub("\n", _WHITESPACE.sub(" ", markup))
    stripped = nh3.clean(flowed, tags=set())
    lines = (_SPACES.sub(" ", html.unescape(line)).strip() for line in stripped.splitlines())
    return "\n".join(line for line in lines if line)


# What one entry may store of its short fields: a feed under the size cap can still hold a
# 60,000-character title, stored and carried into every later query otherwise.
_MAX_TITLE = 500
_MAX_AUTHOR = 200
_MAX_LINK = 2048  # as render drops longer links


def _clipped(value: str | None, limit: int) -> str | None:
    """``value`` cut to ``limit`` characters, at a word where one is near, with "…"."""
    if value is None or len(value) <= limit:
        return value
    cut = value[: limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut[limit // 2 :] else cut) + "…"


def _plain(value: object) -> str | None:
    """Plain text of a title-like field: tags dropped, entities decoded, spaces collapsed."""
    if not isinstance(value, str):
        return None
    if "<" in value or "&" in value:
        value = html.unescape(nh3.clean(value, tags=set()))
    return " ".join(value.split()) or None


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


def newest_stories(stories: Sequence[Story], limit: int) -> tuple[Story, ...]:
    """The ``limit`` newest stories, in the feed's order (an undated entry is dated when first
    seen): one feed of 20,000 entries cannot flood an edition or the memory."""
    if len(stories) <= limit:
        return tuple(stories)

    def newest_first(index: int) -> tuple[bool, float, int]:
        published = stories[index].published_at
        return (published is None, -published.timestamp() if published else 0.0, index)

    kept = sorted(sorted(range(len(stories)), key=newest_first)[:limit])
    return tuple(stories[index] for index in kept)
