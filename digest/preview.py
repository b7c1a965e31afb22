"""Preview: ``digest preview``, today's edition exactly as ``send`` would build it now, or a
past edition exactly as readers got it, from the archive.

It runs on a read-only runtime (a read-only store, no mailer factory): a preview cannot
change or send anything, by construction. Feeds fetched first are kept in memory only. With
``--serve``, a server on 127.0.0.1 (digest/serve.py) shows the edition, rendered again when a
template changes, and the archive.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from digest.config import Settings
from digest.edition_data import edition_data
from digest.editions import build_edition, edition_failures, render_edition
from digest.errors import DigestError
from digest.fetching import fetch_new_stories
from digest.ledger import edition_date
from digest.models import Digest, FeedFailure, FilterCount, RenderedDigest, Story
from digest.render import make_environment, template_files
from digest.render_settings import section_rules
from digest.runtime import Runtime
from digest.serve import PreviewPages, PreviewServer


@dataclass(frozen=True, slots=True, kw_only=True)
class Preview:
    """An edition as previewed: rendered, and as built (None: from the archive, as sent)."""

    rendered: RenderedDigest
    edition: Digest | None = None

    @property
    def filter_counts(self) -> tuple[FilterCount, ...]:
        """What each keyword list removed (none known of an archived edition)."""
        return self.edition.filter_counts if self.edition else ()


def preview_edition(runtime: Runtime, *, collect: bool, on: date | None = None) -> RenderedDigest:
    """Today's edition exactly as ``send`` would build it now, or (``on``) a past edition
    exactly as readers got it, from the archive; writes nothing anywhere."""
    return preview_report(runtime, collect=collect, on=on).rendered


def preview_report(runtime: Runtime, *, collect: bool, on: date | None = None) -> Preview:
    """``preview_edition``, with the edition as built when it was built now (its keyword
    filters' counts, its stories as data)."""
    if on is not None:
        return Preview(rendered=archived_edition(runtime, on))
    edition = _latest_edition(runtime, collect=collect)
    if isinstance(edition, RenderedDigest):
        return Preview(rendered=edition)
    return Preview(rendered=render_edition(runtime.settings, edition), edition=edition)


def preview_data(runtime: Runtime, *, collect: bool) -> dict[str, Any]:
    """Today's edition as ``send`` would build it now, as data (``digest.edition_data``)."""
    found = preview_report(runtime, collect=collect)
    if found.edition is None:
        raise DigestError(
            f"today's edition ({found.rendered.edition_on.isoformat()}) was sent already, and "
            "the archive keeps it as the email readers got, not as data",
            hint="`digest preview --text` or `--out FILE` shows it as sent",
        )
    settings = runtime.settings
    return edition_data(
        found.edition,
        found.rendered,
        title=settings.render.title,
        priorities=section_rules(settings).priorities,
    )


def _latest_edition(runtime: Runtime, *, collect: bool) -> RenderedDigest | Digest:
    """Today's edition as archived if it was sent, else as built now (not yet rendered)."""
    now = runtime.clock()
    day = edition_date(runtime.settings, now)
    store = runtime.store
    archived = store.edition(day)
    if archived is not None:
        return archived
    stories = list(store.stories_for_edition(day))
    failures = edition_failures(runtime, day)
    if collect:
        fresh, failures = _fetch_unstored(runtime, failures)
        stories = _merge(stories, fresh)
    return build_edition(runtime, stories, failures, now)


def archived_edition(runtime: Runtime, day: date) -> RenderedDigest:
    """The edition of ``day`` as it was sent, from the archive."""
    found = runtime.store.edition(day)
    if found is not None:
        return found
    dates = ", ".join(d.isoformat() for d, _ in runtime.store.edition_subjects()[:10])
    raise DigestError(
        f"no edition of {day.isoformat()} in the archive ({runtime.settings.store.location})",
        hint=f"archived editions, newest first: {dates}" if dates else "none was sent yet",
    )


def preview_server(runtime: Runtime, *, collect: bool, port: int = 0) -> PreviewServer:
    """A server on 127.0.0.1 showing today's edition (rendered again whenever a template
    changes) and the archive. Built from a read-only runtime, it writes nothing; each request
    for the archive reads it on the request's own thread, with its own connection."""
    live = _LiveEdition(runtime.settings, _latest_edition(runtime, collect=collect))
    pages = PreviewPages(
        latest=live.rendered,
        archived=functools.partial(_archived, runtime),
        archive=functools.partial(_archive, runtime),
        version=live.version,
    )
    return PreviewServer(pages, port)


def _archived(runtime: Runtime, day: date) -> RenderedDigest | None:
    with runtime.reopen() as own:  # on the server's request thread
        return own.store.edition(day)


def _archive(runtime: Runtime) -> tuple[tuple[date, str], ...]:
    with runtime.reopen() as own:
        return own.store.edition_subjects()


class _LiveEdition:
    """Today's edition for the preview server, rendered again when a template changes."""

    def __init__(self, settings: Settings, edition: RenderedDigest | Digest) -> None:
        self.settings = settings
        self.edition = edition
        self._lock = threading.Lock()
        self._cache: tuple[str, RenderedDigest] | None = None

    def version(self) -> str:
        env = make_environment(self.settings.render.template_dir)
        stamps = []
        for path in template_files(env):
            with contextlib.suppress(FileNotFoundError):  # deleted while we looked
                stamps.append((str(path), path.stat().st_mtime_ns, path.stat().st_size))
        return hashlib.sha256(repr(stamps).encode()).hexdigest()[:16]

    def rendered(self) -> RenderedDigest:
        if isinstance(self.edition, RenderedDigest):
            return self.edition  # sent already: what readers got, whatever the templates say
        with self._lock:
            version = self.version()
            if self._cache is None or self._cache[0] != version:
                self._cache = (version, render_edition(self.settings, self.edition))
            return self._cache[1]


def _fetch_unstored(
    runtime: Runtime, stored: Sequence[FeedFailure]
) -> tuple[list[Story], tuple[FeedFailure, ...]]:
    """Fetch feeds as collect would, keeping the stories in memory only; the failures are
    this fetch's, and the ``stored`` ones of the feeds it did not fetch (held back)."""
    fetched = fetch_new_stories(runtime, save_articles=False)
    feeds = list(fetched.feeds)
    stories = [story for feed in feeds for story in feed.stories]
    now = {f.result.source.url: f.result for f in feeds}
    failures = [f for f in stored if f.feed_url not in now]
    failures += [
        FeedFailure(feed_url=url, name=result.source.title, error=result.error)
        for url, result in now.items()
        if result.error
    ]
    order = {source.url: n for n, source in enumerate(runtime.settings.feed_sources)}
    return stories, tuple(sorted(failures, key=lambda f: order.get(f.feed_url, len(order))))


def _merge(stored: Iterable[Story], fresh: Iterable[Story]) -> list[Story]:
    merged: list[Story] = []
    seen: set[str] = set()
    for story in (*stored, *fresh):
        if story.story_id in seen or story.url in seen:
            continue
        seen.update((story.story_id, story.url))
        merged.append(story)
    return merged
