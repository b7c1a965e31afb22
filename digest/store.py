"""The store: what digest keeps between runs, as a protocol the use cases are written against.

It holds the feeds' HTTP state, holds and failures, the stories, the editions as sent, the
subscribers, the delivery ledger, the web limits' counts, the daemon's job runs, and caches
(summaries, sentence vectors, article texts). Records go in and come out, never rows or dicts.
There is one implementation per engine: ``digest.sqlite_store.SQLiteStore`` (one SQLite file,
the default) and ``digest.pg_store.PostgresStore`` (a PostgreSQL database that several
processes and machines share), each with its own SQL and migrations. The only places that
build one are their ``open`` and ``open_read_only`` (called by ``digest.runtime``, from
``[store].path`` or ``[store].url``), and everything else says ``Store``.

Every implementation:

- raises ``StoreError`` (naming what it could not read or write, and why) for any failure of
  its storage, never its driver's own exceptions;
- runs each write method in its own transaction, and ``atomic()`` groups several into one
  (nested blocks roll back alone); a block whose transaction the engine rolled back commits
  nothing of it;
- once opened read-only (``is_read_only``), refuses every write with ``StoreError``;
- passes tests/test_store.py, the conformance suite, run against every implementation.

The delivery ledger (``Ledger``) is the part that makes delivery exactly-once, and the part
several sender processes will share: its rows are claimed ``sending`` in their own commit
before the hand-over, and only one sender holds the send lock at a time (a file lock beside
the SQLite file; a session advisory lock on PostgreSQL).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import Protocol, Self

from digest.models import (
    Article,
    CachedSummary,
    Delivery,
    DeliveryState,
    Embedding,
    FeedFailure,
    FeedHealth,
    FeedSource,
    FeedState,
    FetchFailure,
    FetchResult,
    JobRun,
    RenderedDigest,
    SendLockHolder,
    Story,
    Subscriber,
    SubscriberState,
)


class Ledger(Protocol):
    """The delivery ledger: one row per edition and recipient (keyed by ``Delivery.address``),
    and the lock that lets one sender at a time work through it."""

    def add_deliveries(self, deliveries: Iterable[Delivery], now: datetime) -> None:
        """Record pending deliveries; a recipient already in the ledger keeps its row."""
        ...

    def claim_delivery(
        self, delivery: Delivery, now: datetime, *, is_uncertain_ok: bool = False
    ) -> Delivery | None:
        """Mark a pending or failed row ``sending`` in its own commit, one attempt more; None
        if another sender claimed it first. ``is_uncertain_ok`` also claims a ``sending`` row."""
        ...

    def set_delivery_state(
        self,
        delivery: Delivery,
        state: DeliveryState,
        now: datetime,
        detail: str | None = None,
        *,
        is_synced: bool = True,
    ) -> Delivery:
        """Move a row to ``state`` in its own commit (``sent_at`` set when sent); return it.
        ``is_synced=False`` may lose this commit on a power cut, never an earlier one."""
        ...

    def reopen_deliveries(self, edition_on: date, addresses: Iterable[str], now: datetime) -> int:
        """Put sent and uncertain rows of these addresses back to ``pending``; how many."""
        ...

    def deliveries(self, edition_on: date) -> tuple[Delivery, ...]:
        """An edition's rows, in the order they were added."""
        ...

    def undelivered(self, since: date) -> tuple[Delivery, ...]:
        """Rows of editions since ``since`` that are not (known to be) sent, oldest first."""
        ...

    def latest_delivery_date(self) -> date | None:
        """The most recent edition with any row."""
        ...

    def sent_since(self, at: datetime) -> tuple[datetime, ...]:
        """When each message of any edition sent after ``at`` was sent, oldest first (the
        rate limits count these)."""
        ...

    def send_lock(
        self,
        *,
        wait_seconds: float,
        stop: threading.Event | None = None,
        on_wait: Callable[[SendLockHolder], None] | None = None,
    ) -> AbstractContextManager[bool]:
        """Hold the one sender's lock, released however the holder ends (killed included);
        wait up to ``wait_seconds`` (then ``StoreError``), telling ``on_wait`` who holds it.
        Yields False if ``stop`` was set while waiting."""
        ...


class Subscribers(Protocol):
    """Each list's readers (keyed by list and address, compared case-insensitively), never
    deleted: one who leaves stays, unsubscribed or bounced, so no import brings them back."""

    def subscribers(
        self, list_slug: str, states: Collection[SubscriberState] = ()
    ) -> tuple[Subscriber, ...]:
        """The list's subscribers (in one of ``states``; all if none given), oldest first."""
        ...

    def subscriber(self, list_slug: str, address: str) -> Subscriber | None:
        """One subscriber of the list by address, in any case."""
        ...

    def subscriber_by_id(self, subscriber_id: str) -> Subscriber | None:
        """A subscriber by the id a signed link carries."""
        ...

    def add_subscribers(
        self,
        list_slug: str,
        readers: Iterable[tuple[str, str | None]],
        *,
        how: str,
        now: datetime,
        state: SubscriberState = SubscriberState.ACTIVE,
    ) -> int:
        """Add each (address, name) not on the list yet, all in one transaction; one already
        there keeps its state. How many were added."""
        ...

    def set_subscriber_state(
        self,
        list_slug: str,
        address: str,
        state: SubscriberState,
        *,
        how: str,
        now: datetime,
        reason: str | None = None,
        name: str | None = None,
    ) -> Subscriber:
        """Move a subscriber (added if new) to ``state``, recording when, how and why; their
        consecutive bounces restart from zero; a ``name`` given replaces theirs."""
        ...

    def record_bounce(
        self,
        list_slug: str,
        address: str,
        edition_on: date,
        answer: str,
        now: datetime,
        *,
        limit: int,
    ) -> Subscriber | None:
        """Count an edition refused for an active subscriber, once per edition; at ``limit``
        consecutive ones they are bounced, ``answer`` the reason. None: no such address."""
        ...

    def clear_bounces(self, list_slug: str, address: str) -> None:
        """An edition reached the subscriber: their consecutive bounces restart from zero."""
        ...


class WebLimits(Protocol):
    """The requests ``digest web`` counts, so that its limits hold across processes."""

    def take_allowance(
        self, kind: str, key: str, now: datetime, *, window: timedelta, limit: int
    ) -> bool:
        """Count one ``kind`` request for ``key`` unless ``limit`` were counted in the last
        ``window``; whether it was counted (allowed)."""
        ...


class Store(Ledger, Subscribers, WebLimits, Protocol):
    """What digest keeps between runs. Close it (or use it as a context manager) when done."""

    @property
    def is_read_only(self) -> bool:
        """Opened so that every write is refused (``digest preview``, the read-only commands)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def atomic(self) -> AbstractContextManager[None]:
        """One transaction around the block, committed at its end and rolled back if it raises;
        a nested block is rolled back alone."""
        ...

    # Feeds

    def record_fetch(self, result: FetchResult) -> None:
        """Keep a fetch's validators and new address (success) or its error (failure, also
        added to the feed's failures)."""
        ...

    def feed_state(self, url: str) -> FeedState | None:
        """What is remembered of a feed between fetches; None if it was never fetched."""
        ...

    def hold_feed(
        self, url: str, not_before: datetime | None, reason: str | None, ttl_minutes: int | None
    ) -> None:
        """Remember when a feed may be fetched again, why, and its own RSS ``<ttl>``."""
        ...

    def held_feeds(self, now: datetime) -> tuple[FeedState, ...]:
        """Feeds held back from fetching until some time after ``now``."""
        ...

    def revive_feed(self, url: str) -> None:
        """Fetch again a feed that answered 410 Gone."""
        ...

    def feed_health(self, sources: Sequence[FeedSource]) -> tuple[FeedHealth, ...]:
        """How each feed is doing, in the order given (never fetched: a bare record)."""
        ...

    def feed_failures(self, url: str, limit: int = 20) -> tuple[FetchFailure, ...]:
        """A feed's most recent failures, newest first."""
        ...

    def failing_feeds(
        self, sources: Sequence[FeedSource], since: datetime | None
    ) -> tuple[FeedFailure, ...]:
        """Those of ``sources`` whose most recent fetch failed after ``since`` (None: whenever),
        in the order given and under the names given."""
        ...

    # Stories and editions

    def add_stories(self, stories: Iterable[Story], seen_at: datetime) -> int:
        """Keep the stories not seen before (same id or same link); how many were new."""
        ...

    def has_story(self, story: Story) -> bool:
        """Is this story (same id or same link) kept already?"""
        ...

    def stories_for_edition(self, edition_on: date) -> tuple[Story, ...]:
        """Stories in no edition yet, and those of this one, in the order first seen."""
        ...

    def create_edition(
        self, rendered: RenderedDigest, story_ids: Sequence[str], created_at: datetime
    ) -> None:
        """Archive an edition as rendered and give it its stories, in one transaction."""
        ...

    def edition(self, edition_on: date) -> RenderedDigest | None:
        """An archived edition, exactly as sent."""
        ...

    def edition_subjects(self) -> tuple[tuple[date, str], ...]:
        """Every archived edition's day and subject line, newest first."""
        ...

    def previous_edition_at(self, edition_on: date) -> datetime | None:
        """When the latest edition of a day before ``edition_on`` was archived."""
        ...

    def latest_edition_on(self) -> date | None:
        """The day of the most recent archived edition."""
        ...

    # Caches: computed once, kept by what they depend on

    def cached_summaries(
        self, model_id: str, text_hashes: Sequence[str]
    ) -> tuple[CachedSummary, ...]:
        """The kept summaries by this model of these texts (those it has)."""
        ...

    def save_summaries(self, summaries: Iterable[CachedSummary], now: datetime) -> None:
        """Keep summaries (a second one of the same model and text replaces the first)."""
        ...

    def cached_embeddings(
        self, model_key: str, text_hashes: Sequence[str]
    ) -> tuple[Embedding, ...]:
        """The kept, whole vectors of these texts by this model (those it has)."""
        ...

    def save_embeddings(self, embeddings: Iterable[Embedding], now: datetime) -> None:
        """Keep vectors (a second one of the same model and text replaces the first)."""
        ...

    def article(self, url: str) -> Article | None:
        """The kept extraction of an article page (its text, or why there is none)."""
        ...

    def save_articles(self, articles: Iterable[Article]) -> None:
        """Keep article extractions by URL."""
        ...

    # The daemon's job runs

    def add_job_run(self, run: JobRun) -> None:
        """Keep one job run."""
        ...

    def add_missed_edition(self, run: JobRun) -> bool:
        """Keep an edition skipped after the grace; False if that day's miss is kept already."""
        ...

    def job_runs(
        self, job: str, *, limit: int = 1, outcome: str | None = None
    ) -> tuple[JobRun, ...]:
        """A job's most recent runs (of one outcome, if given), newest first."""
        ...

    def last_activity(self) -> datetime | None:
        """When a job last ran or an edition was last archived."""
        ...
