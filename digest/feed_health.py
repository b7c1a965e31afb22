"""Feed health: how each configured feed is doing, and a feed's failures, read from the
runtime's store."""

from __future__ import annotations

from digest.config import Settings, feed_url_key
from digest.errors import DigestError
from digest.models import FeedHealth, FeedSource, FetchFailure
from digest.runtime import Runtime


def feed_health(runtime: Runtime) -> tuple[FeedHealth, ...]:
    """How each configured feed is doing, read from the store."""
    return runtime.store.feed_health(runtime.settings.feed_sources)


def feed_failures(
    runtime: Runtime, url: str, limit: int = 20
) -> tuple[FeedSource, tuple[FetchFailure, ...]]:
    """A configured feed and its most recent failures, newest first."""
    source = configured_feed(runtime.settings, url)
    if source is None:
        raise DigestError(
            f"{url} is not one of the configured feeds", hint="`digest feeds list` shows them"
        )
    return source, runtime.store.feed_failures(source.url, limit)


def configured_feed(settings: Settings, url: str) -> FeedSource | None:
    """The configured feed with this URL (ignoring case, scheme, default port, a trailing
    slash), or None."""
    key = feed_url_key(url)
    return next((s for s in settings.feed_sources if feed_url_key(s.url) == key), None)
