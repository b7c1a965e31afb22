"""Collecting: ``digest collect`` and the daemon's collect job.

collect_all:  every due feed fetched once (digest.fetching), its new stories stored as it
              arrives, each feed in its own transaction; a CollectReport says what each gave.
collect_once: collect_all, then (unless told not to) today's edition summarised as it
              stands, so that a preview or the send finds the summaries done.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from digest.editions import summarize_edition
from digest.errors import StoreError
from digest.feed_claims import claims_kept
from digest.fetching import FeedOutcome, Fetched, PageFetch, feed_hold, fetch_new_stories
from digest.interrupt import Interrupted, abandonable
from digest.models import FeedSource, FeedState, FeedTaken
from digest.runtime import Runtime, claim_holder
from digest.store import Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedReport:
    """What one feed gave in one collect run."""

    url: str
    name: str
    # "new", "unchanged" (304 or nothing new), "failed", "gone" (410), "skipped": not due
    # yet (politeness: its TTL, max-age, Retry-After or minimum interval) or another
    # collector's (fetching its host's feeds), "not read": an
    # interrupt came first (nothing of it stored; the next collect fetches it), or "not
    # saved": the store failed first (likewise)
    status: str
    new_stories: int = 0
    error: str | None = None
    error_kind: str | None = None
    moved_to: str | None = None  # a permanent redirect: fetched from here from now on
    warnings: tuple[str, ...] = ()  # e.g. a feed that is not well-formed, read in part
    not_before: datetime | None = None  # skipped: not fetched before this time ...
    hold_reason: str | None = None  # ... for this reason
    taken_by: str | None = None  # skipped as another collector's: which (its claim's holder)


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectReport:
    feeds: tuple[FeedReport, ...]
    # A stop request ended the run while "collecting" (the feeds "not read" were not stored)
    # or "summarising" (every feed stored; the summaries not all cached)
    stopped_while: str | None = None
    stored_feeds: int = 0  # feeds fetched (or failed) and stored by this run
    pages: tuple[PageFetch, ...] = ()  # the article pages this run asked for
    store_error: str | None = None  # the store failed (a full disk, ...): the run stopped there

    @property
    def pages_failed(self) -> tuple[PageFetch, ...]:
        return tuple(p for p in self.pages if p.failure not in (None, "skipped"))

    @property
    def pages_skipped(self) -> tuple[PageFetch, ...]:
        """Pages not fetched: their host did not answer, again and again, earlier in the run."""
        return tuple(p for p in self.pages if p.failure == "skipped")

    @property
    def new_stories(self) -> int:
        return sum(f.new_stories for f in self.feeds)

    @property
    def failed(self) -> tuple[FeedReport, ...]:
        return tuple(f for f in self.feeds if f.status in ("failed", "gone"))

    @property
    def all_failed(self) -> bool:
        return bool(self.feeds) and len(self.failed) == len(self.feeds)

    @property
    def skipped(self) -> tuple[FeedReport, ...]:
        """Feeds not fetched this time: not due yet, or another collector's."""
        return tuple(f for f in self.feeds if f.status == "skipped")

    @property
    def taken(self) -> tuple[FeedReport, ...]:
        """Feeds skipped as another collector's (it is fetching their hosts' feeds)."""
        return tuple(f for f in self.feeds if f.taken_by is not None)

    @property
    def not_read(self) -> tuple[FeedReport, ...]:
        """Feeds an interrupt kept from being fetched or stored."""
        return tuple(f for f in self.feeds if f.status == "not read")

    @property
    def not_saved(self) -> tuple[FeedReport, ...]:
        """Feeds a store failure kept from being stored."""
        return tuple(f for f in self.feeds if f.status == "not saved")


def collect_once(
    runtime: Runtime, *, summarize: bool = True, stop: threading.Event | None = None
) -> CollectReport:
    """Collect every feed once, and (unless told not to) summarise the stories today's
    edition would lead with, so that a preview or the send finds them done. A stop request
    ends either step at once; the report says where (``stopped_while``)."""
    report = collect_all(runtime, stop=stop)
    is_whole = report.stopped_while is None and report.store_error is None
    if summarize and report.new_stories and is_whole:
        try:
            with abandonable(stop):
                summarize_edition(runtime)
        except Interrupted:
            return replace(report, stopped_while="summarising")
    return report


def collect_all(runtime: Runtime, *, stop: threading.Event | None = None) -> CollectReport:
    """Fetch every feed once and store the new stories; one feed's failure stops nothing.

    Each feed is stored as soon as it is parsed (teasers once their article pages are in), in
    its own transaction: a stop request ends the run at once, keeping the feeds stored so far
    (the others are reported "not read"), and so does a store failure (the others are "not
    saved"; ``store_error`` says why). Feeds that answered 410 Gone are not fetched again
    (``digest feeds add`` revives one). Several collectors may share the store: each claims
    its feeds first (``digest.feed_claims``), and skips those another one has.
    """
    fetched = Fetched(feeds=iter(()), gone=[])
    reports: list[FeedReport] = []
    pages: list[PageFetch] = []
    stopped_while = store_error = None
    holder = None if runtime.store.is_read_only else claim_holder()
    try:
        with claims_kept(runtime, holder) if holder else contextlib.nullcontext():
            fetched = fetch_new_stories(runtime, save_articles=True, holder=holder)
            with abandonable(stop):
                for feed in fetched.feeds:
                    reports.append(_store_feed(runtime.store, feed, fetched.states))
                    pages += feed.pages
    except Interrupted:
        stopped_while = "collecting"
    except StoreError as exc:  # nothing more can be stored: stop, and report what was
        store_error = str(exc)
    stored = len(reports)
    sources = runtime.settings.feed_sources
    reports += _unfetched_reports(sources, fetched, reports, is_store_failed=bool(store_error))
    order = {source.url: i for i, source in enumerate(sources)}
    return CollectReport(
        feeds=tuple(sorted(reports, key=lambda r: order[r.url])),
        pages=tuple(pages),
        stopped_while=stopped_while,
        stored_feeds=stored,
        store_error=store_error,
    )


def _unfetched_reports(
    sources: Sequence[FeedSource],
    fetched: Fetched,
    stored: list[FeedReport],
    *,
    is_store_failed: bool,
) -> list[FeedReport]:
    """The reports of the feeds this run did not store: gone, held, not read or not saved."""
    done = {r.url for r in stored} | {s.url for s in (*fetched.gone, *fetched.held)}
    done |= fetched.taken.keys()
    why = _NOT_SAVED if is_store_failed else _NOT_READ
    reports = [_left_report(s, why) for s in sources if s.url not in done]
    reports += [_gone_report(source) for source in fetched.gone]
    reports += [_held_report(source, fetched.states[source.url]) for source in fetched.held]
    reports += [_taken_report(s, fetched.taken[s.url]) for s in sources if s.url in fetched.taken]
    return reports


def _store_feed(store: Store, feed: FeedOutcome, states: dict[str, FeedState]) -> FeedReport:
    result = feed.result
    state = states.get(result.source.url)
    ttl = feed.ttl_minutes if feed.is_parsed else (state.ttl_minutes if state else None)
    with store.atomic():
        store.record_fetch(result)
        new = store.add_stories(feed.stories, seen_at=result.fetched_at)
        store.hold_feed(result.source.url, *feed_hold(result, ttl), ttl)
    if result.error:
        logger.info("feed %s failed: %s", result.source.url, result.error)  # the report says it
    return _feed_report(feed, new)


def _feed_report(feed: FeedOutcome, new: int) -> FeedReport:
    result, source = feed.result, feed.result.source
    status = "failed" if result.error else "new" if new else "unchanged"
    if result.is_gone:
        status = "gone"
    return FeedReport(
        url=source.url,
        name=source.title,
        status=status,
        new_stories=new,
        error=result.error,
        error_kind=result.error_kind,
        moved_to=result.moved_to,
        warnings=feed.warnings,
    )


def _held_report(source: FeedSource, state: FeedState) -> FeedReport:
    return FeedReport(
        url=source.url,
        name=source.title,
        status="skipped",
        not_before=state.not_before,
        hold_reason=state.hold_reason,
    )


def _taken_report(source: FeedSource, taken: FeedTaken) -> FeedReport:
    return FeedReport(
        url=source.url,
        name=source.title,
        status="skipped",
        not_before=taken.until,
        hold_reason=f"another collector ({taken.holder}) is fetching its host's feeds",
        taken_by=taken.holder,
    )


# Why a feed this run did not store is left for the next: (status, what it means).
_NOT_READ = ("not read", "interrupted before it was fetched and stored; the next collect reads it")
_NOT_SAVED = (
    "not saved",
    "the store failed before it was saved; the next collect fetches it again",
)


def _left_report(source: FeedSource, why: tuple[str, str]) -> FeedReport:
    status, error = why
    return FeedReport(url=source.url, name=source.title, status=status, error=error)


def _gone_report(source: FeedSource) -> FeedReport:
    error = "answered 410 Gone earlier; not fetched (re-add it with `digest feeds add` to retry)"
    return FeedReport(
        url=source.url, name=source.title, status="gone", error=error, error_kind="gone"
    )
