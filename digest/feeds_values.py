"""feedparser's values, reproduced for the lxml fast path (``digest.feeds_xml_fast``). Pure.

How feedparser names an element (its known namespace prefix, "_", local name), what its
pop() leaves of an element's text, how it resolves a URI without a base, how it reads an
author's "Name <email>" and a date. The fast path maps each field with these, so that it
gives what the feedparser path (``digest.feeds_xml``) gives.
"""

from __future__ import annotations

import contextlib
import email.utils
import re
from datetime import UTC, datetime
from functools import lru_cache
from time import struct_time
from typing import Any
from urllib.parse import urljoin

import feedparser.api
import feedparser.datetimes

_NAMESPACES = {
    uri.lower(): prefix for uri, prefix in feedparser.api.StrictFeedParser.namespaces.items()
}
_URI_SLASHES = re.compile("^([A-Za-z][A-Za-z0-9+-.]*://)(/*)(.*?)")
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


class Unsupported(Exception):
    """The document uses something the fast path does not read exactly as feedparser."""


def fp_name(element: Any) -> str:
    """The name feedparser dispatches an element on: its known prefix, "_", local name."""
    return fp_tag(element.tag, element.prefix)


@lru_cache(maxsize=1024)
def fp_tag(tag: str, given_prefix: str | None) -> str:
    if tag[0] != "{":
        return tag.lower()
    namespace, local = tag[1:].split("}", 1)
    lowered = namespace.lower()
    if "backend.userland.com/rss" in lowered:
        lowered = "http://backend.userland.com/rss"
    prefix = _NAMESPACES.get(lowered, given_prefix)
    return f"{prefix.lower()}_{local.lower()}" if prefix else local.lower()


def fp_text(value: str | None) -> str:
    """An element's text as feedparser's pop() leaves it: stripped, UTF-8 read as Latin-1
    undone, C1 controls mapped to windows-1252."""
    output = (value or "").strip()
    if output.isascii():
        return output
    with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
        output = output.encode("iso-8859-1").decode("utf-8")
    return output.translate(_CP1252_C1) if _C1_CONTROL.search(output) else output


def fp_urljoin(uri: str) -> str:
    """feedparser's resolve_uri with no base: collapses extra slashes after the scheme."""
    uri = _URI_SLASHES.sub(r"\1\3", uri)
    try:
        return urljoin("", uri)
    except ValueError:
        return ""


def fp_author_name(author: str) -> str | None:
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


def fp_date(value: str) -> datetime | None:
    """The time feedparser's date parser gives, by the stdlib for the two common forms."""
    if _RFC822.fullmatch(value):
        moment = email.utils.parsedate_to_datetime(value)
    elif _ISO8601.fullmatch(value):
        moment = datetime.fromisoformat(value)
    else:
        return from_struct(feedparser.datetimes._parse_date(value))
    if not 1900 <= moment.year <= 9999:
        return from_struct(feedparser.datetimes._parse_date(value))
    return moment.astimezone(UTC).replace(microsecond=0)


def from_struct(value: struct_time | None) -> datetime | None:
    """An aware UTC time from feedparser's struct_time; None for none or a time out of range."""
    if value is None:
        return None
    try:
        return datetime(*value[:6], tzinfo=UTC)
    except (TypeError, ValueError):
        return None
