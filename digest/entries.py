"""The record between parsing's readers and its normaliser: a feed as read from any format.

Every reader (feedparser for RSS/Atom, the lxml fast path, JSON Feed) gives a ``RawFeed`` of
``RawEntry`` values as the format holds them: text not yet repaired or clipped, links not yet
resolved. ``digest.normalise`` alone turns them into ``Story`` records. These records stay
inside the parse stage, so they are not in ``digest.models``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class RawEntry:
    """An entry as read from any format, before normalising."""

    guid: str | None
    link: str | None
    title: str | None
    html: str | None
    html_base: str | None  # the base in force for the body (xml:base, else the feed URL)
    published_at: datetime | None
    author: str | None
    categories: tuple[str, ...] = ()
    image_url: str | None = None  # the lead image the entry names, as given (maybe relative)


@dataclass(frozen=True, slots=True, kw_only=True)
class RawFeed:
    """A feed as read from any format: its entries, its title and the base for links."""

    entries: tuple[RawEntry, ...]
    title: str | None  # as the format gives it: may hold markup and entities
    base: str
    ttl: str | None = None  # RSS <ttl>: minutes the publisher asks readers to wait
    # As declared: RSS <language> or <dc:language>, Atom xml:lang, JSON Feed "language"
    language: str | None = None
