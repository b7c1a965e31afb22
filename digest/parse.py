"""Parse: one fetched body -> normalised ``Story`` records. Pure: no I/O, no clock.

The entry point of the parse stage; each step is its own module, and every reader gives the
same record (``digest.entries.RawFeed``) to the one normaliser:

    digest.decode          bytes -> clean Unicode (gzip, encodings, no DOCTYPE)
    digest.jsonfeed        JSON Feed 1.0/1.1 -> RawFeed
    digest.feeds_xml_fast  common well-formed RSS/Atom -> RawFeed with lxml, or None
    digest.feeds_xml       any RSS 0.9x/1.0/2.0 or Atom -> RawFeed through feedparser
    digest.normalise       RawFeed -> Story records (sanitised HTML, clean text, ids)

A feed that is not well-formed still yields what feedparser recovers, with a warning in
``ParsedFeed.warnings``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime

from digest.decode import gunzip, xml_text
from digest.entries import RawFeed
from digest.errors import FeedError
from digest.feeds_xml import read_xml
from digest.feeds_xml_fast import read_xml_fast
from digest.jsonfeed import looks_like_json, read_json_feed
from digest.models import FetchResult, ParsedFeed, Story
from digest.normalise import to_stories, with_languages, without_boilerplate

logger = logging.getLogger(__name__)


def parse_feed(result: FetchResult) -> ParsedFeed:
    """Turn a fetched body into stories; raise FeedError if it yields nothing usable."""
    return _parse_with(result, fast=True)


def _parse_with(result: FetchResult, *, fast: bool) -> ParsedFeed:
    """parse_feed; ``fast=False`` sends every RSS/Atom body through feedparser (tests)."""
    source = result.source
    warnings: list[str] = []
    body = gunzip(result.body, source.url, warnings)
    if not body.strip():
        raise FeedError("the response was empty", feed_url=source.url)
    if looks_like_json(body, result.content_type):
        feed = read_json_feed(body, source.url)
    else:
        feed = _read_xml_feed(body, result.content_type, source.url, warnings, fast)
    stories, skipped = to_stories(feed, source, result.fetched_at)
    if not feed.entries:
        raise FeedError("the feed has no entries", feed_url=source.url)
    if not stories:
        raise FeedError(f"no usable entries: skipped {skipped}", feed_url=source.url)
    if skipped:
        warnings.append(f"skipped {skipped}")
    return ParsedFeed(
        stories=with_languages(without_boilerplate(stories), feed.language),
        warnings=tuple(warnings),
        ttl_minutes=_minutes(feed.ttl),
    )


def _read_xml_feed(
    body: bytes, content_type: str | None, url: str, warnings: list[str], fast: bool
) -> RawFeed:
    text = xml_text(body, content_type, warnings)
    if fast and (feed := read_xml_fast(text, url)) is not None:
        return feed
    return read_xml(text, url, warnings)


def _minutes(ttl: str | None) -> int | None:
    value = (ttl or "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


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
    """The ``limit`` newest stories, in the feed's order (undated entries count as older than
    any dated one): one feed of 20,000 entries cannot flood an edition or the memory."""
    if len(stories) <= limit:
        return tuple(stories)

    def newest_first(index: int) -> tuple[bool, float, int]:
        published = stories[index].published_at
        return (published is None, -published.timestamp() if published else 0.0, index)

    kept = sorted(sorted(range(len(stories)), key=newest_first)[:limit])
    return tuple(stories[index] for index in kept)
