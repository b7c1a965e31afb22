"""Feed health: how each configured feed is doing, and a feed's failures, read from the store
(read-only)."""

from __future__ import annotations

from digest.config import Settings
from digest.errors import DigestError
from digest.models import FeedHealth, FeedSource, FetchFailure
from digest.sqlite_store import SQLiteStore
from digest.urls import feed_url_key


def feed_health(settings: Settings) -> tuple[FeedHealth, ...]:
    """How each configured feed is doing, read from the store without changing it."""
    store = SQLiteStore.open_read_only(
        settings.store.path, busy_timeout=settings.store.busy_timeout_seconds
    )
    if store is None:
        return tuple(FeedHealth(source=source) for source in settings.feed_sources)
    with store:
        return store.feed_health(settings.feed_sources)


def feed_failures(
    settings: Settings, url: str, limit: int = 20
) -> tuple[FeedSource, tuple[FetchFailure, ...]]:
    """A configured feed and its most recent failures, newest first."""
    source = configured_feed(settings, url)
    if source is None:
        raise DigestError(
            f"{url} is not one of the configured feeds", hint="`digest feeds list` shows them"
        )
    store = SQLiteStore.open_read_only(
        settings.store.path, busy_timeout=settings.store.busy_timeout_seconds
    )
    if store is None:
        return source, ()
    with store:
        return source, store.feed_failures(source.url, limit)


def configured_feed(settings: Settings, url: str) -> FeedSource | None:
    """The configured feed with this URL (ignoring case, scheme, default port, a trailing
    slash), or None."""
    key = feed_url_key(url)
    return next((s for s in settings.feed_sources if feed_url_key(s.url) == key), None)
