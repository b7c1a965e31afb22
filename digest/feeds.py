"""Feeds: ``digest feeds list | failures | add | import | export``.

The configured feeds live in the settings file (``add`` and ``import`` append to it, after
checking a new feed by fetching it once); how each is doing lives in the store (read-only for
``list`` and ``failures``; ``add`` and ``import`` revive a feed that had answered 410 Gone).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

from digest.config import Settings
from digest.errors import DigestError, FeedError
from digest.models import FeedHealth, FeedSource, FetchFailure
from digest.opml import OpmlImport, read_opml, write_opml
from digest.runtime import Clock, Runtime
from digest.settings_file import append_feeds
from digest.store import Store
from digest.urls import feed_url_key


@dataclass(frozen=True, slots=True, kw_only=True)
class AddReport:
    """What ``digest feeds add`` did."""

    source: FeedSource  # as it is now configured
    is_added: bool = True  # False: it was configured already (and gone: revived)
    is_revived: bool = False  # it had answered 410 Gone and will be fetched again
    moved_from: str | None = None  # the URL given, when the check found it moved permanently
    stories: int | None = None  # entries the check read (None: not checked)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportReport:
    """What ``digest feeds import`` did (or, dry, would do) with one OPML file."""

    opml: OpmlImport
    added: tuple[FeedSource, ...]
    skipped: tuple[FeedSource, ...]  # already configured


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


def add_feed(
    runtime: Runtime,
    url: str,
    *,
    name: str | None = None,
    category: str | None = None,
    check: bool = True,
) -> AddReport:
    """Add a feed to the config file; by default only once one fetch and parse prove it works.

    Re-adding a configured feed that answered 410 Gone revives it instead.
    """
    settings, clock = runtime.settings, runtime.clock
    source = FeedSource(url=_feed_location(url), name=name, category=category)
    existing = configured_feed(settings, source.url)
    if existing is not None:
        return _readd(runtime, existing, check=check)
    checked, stories = _check_feed(settings, source, clock) if check else (source, None)
    if not append_feeds(settings.config_path, (checked,)):
        raise DigestError(f"{checked.url} (where {url} moved to) is already configured")
    return AddReport(
        source=checked,
        is_revived=bool(_revive_gone(runtime.store, [checked.url])),
        moved_from=source.url if checked.url != source.url else None,
        stories=stories,
    )


def _readd(runtime: Runtime, existing: FeedSource, *, check: bool) -> AddReport:
    state = runtime.store.feed_state(existing.url)
    if state is None or not state.is_gone:
        raise DigestError(
            f"{existing.url} is already configured (as {existing.title!r}); nothing added",
            hint="`digest feeds list` shows how it is doing",
        )
    stories = _check_feed(runtime.settings, existing, runtime.clock)[1] if check else None
    _revive_gone(runtime.store, [existing.url])
    return AddReport(source=existing, is_added=False, is_revived=True, stories=stories)


def _check_feed(settings: Settings, source: FeedSource, clock: Clock) -> tuple[FeedSource, int]:
    """Fetch and parse a feed once: its new address if it moved, its title, its entry count."""
    # Imported here, not above: `feeds list` and `failures` start without aiohttp and lxml.
    from digest.collect import FetchLimits, fetch_all
    from digest.parse import parse_feed

    limits = FetchLimits(
        timeout_seconds=settings.collect.timeout_seconds,
        max_bytes=settings.collect.max_bytes,
        allowed_internal_networks=settings.collect.allowed_internal_networks,
    )
    [result] = fetch_all([source], {}, limits, clock)
    hint = "check the URL, or add it anyway with --no-check"
    if result.is_gone:
        raise FeedError(
            f"{source.url} answers 410 Gone: its publisher has removed it; not added",
            feed_url=source.url,
            hint="remove it from the settings file",
        )
    if result.error:
        kind = f"{result.error_kind}: " if result.error_kind else ""
        raise FeedError(
            f"{source.url}: {kind}{result.error}; not added", feed_url=source.url, hint=hint
        )
    try:
        stories = parse_feed(result).stories
    except FeedError as exc:
        raise FeedError(
            f"{source.url}: {exc.message}; not added", feed_url=source.url, hint=hint
        ) from exc
    name = source.name or stories[0].source_name
    return replace(source, url=result.moved_to or source.url, name=name), len(stories)


def import_opml(
    runtime: Runtime,
    path: str | os.PathLike[str],
    *,
    category: str | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Append the feeds an OPML file lists that are not configured yet (none with dry_run)."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise DigestError(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from exc
    found = read_opml(data, os.fspath(path))
    feeds = tuple(replace(f, category=category) if category else f for f in found.feeds)
    added = append_feeds(runtime.settings.config_path, feeds, dry_run=dry_run)
    if added and not dry_run:
        _revive_gone(runtime.store, [f.url for f in added])
    skipped = tuple(f for f in feeds if f not in added)
    return ImportReport(opml=found, added=added, skipped=skipped)


def export_opml(settings: Settings) -> bytes:
    """Every configured feed as OPML 2.0, one parent outline per category."""
    return write_opml(settings.feed_sources, f"{settings.render.title}: feeds")


def _feed_location(url: str) -> str:
    """An http(s) URL as given; a local path made absolute, as the config file needs it."""
    url = url.strip()
    if "://" in url or os.path.isabs(url):
        return url
    return os.path.abspath(os.path.expanduser(url))


def _revive_gone(store: Store, urls: Sequence[str]) -> list[str]:
    """Mark feeds that had answered 410 Gone as fetchable again; return those revived."""
    gone = [url for url in urls if (state := store.feed_state(url)) and state.is_gone]
    if gone:
        with store.atomic():
            for url in gone:
                store.revive_feed(url)
    return gone
