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

The delivery ledger (``Ledger``) is the part that makes delivery exactly-once, and the work
queue any number of senders share: each leases batches of rows (a lease measured on the
database's clock, so a dead sender's rows go back to the others when it runs out), claims
each row ``sending`` in its own commit before the hand-over, and only one sender at a time
holds the send lock, around building the edition and adding its rows (a file lock beside
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
    DueFeed,
    Embedding,
    FeedClaims,
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
    the work queue senders lease rows from, and the lock around building an edition."""

    def add_deliveries(self, deliveries: Iterable[Delivery], now: datetime) -> None:
        """Record pending deliveries; a recipient already in the ledger keeps its row."""
        ...

    def claim_batch(
        self,
        edition_on: date,
        sender: str,
        *,
        size: int,
        lease_seconds: float,
        retry_before: datetime,
        is_uncertain_ok: bool = False,
        excluding: Collection[str] = (),
    ) -> tuple[Delivery, ...]:
        """Lease to ``sender`` (for ``lease_seconds`` on the database's clock) up to ``size``
        of the edition's rows in the order added, among those whose lease is free or expired:
        pending rows, and failed ones (uncertain ones too, if ``is_uncertain_ok``) last
        updated by another sender at or before ``retry_before`` (so no sender retries its own
        failures in a loop); none of the addresses ``excluding``. Two senders never lease the
        same row at once."""
        ...

    def renew_leases(self, sender: str, lease_seconds: float) -> int:
        """Extend the leases ``sender`` still holds to ``lease_seconds`` from now; how many."""
        ...

    def release_leases(self, sender: str) -> int:
        """Give the rows leased to ``sender`` back to the queue now; how many."""
        ...

    def leased_elsewhere(self, edition_on: date, sender: str) -> int:
        """How many of the edition's rows other senders hold under a lease not yet expired."""
        ...

    def claim_delivery(
        self,
        delivery: Delivery,
        now: datetime,
        *,
        sender: str | None = None,
        is_uncertain_ok: bool = False,
    ) -> Delivery | None:
        """Mark a pending or failed row ``sending`` in its own commit, one attempt more; None
        if another sender claimed it first, or (given ``sender``) it is no longer leased to
        ``sender``. ``is_uncertain_ok`` also claims a ``sending`` row. Its lease is kept."""
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
        Any other state than ``sending`` ends its lease. ``is_synced=False`` may lose this
        commit on a power cut, never an earlier one."""
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
        """When each message of any edition sent after ``at`` was sent, or claimed if it is
        still ``sending``, oldest first (the rate limits count these). Inside ``atomic()``,
        no other sender can claim a row until the block ends: read with a claim, the count
        is exact across processes."""
        ...

    def send_lock(
        self,
        *,
        wait_seconds: float,
        stop: threading.Event | None = None,
        on_wait: Callable[[SendLockHolder], None] | None = None,
    ) -> AbstractContextManager[bool]:
        """Hold the lock around building an edition and adding its rows, released however
        the holder ends (killed included); wait up to ``wait_seconds`` (then ``StoreError``),
        telling ``on_wait`` who holds it. Yields False if ``stop`` was set while waiting."""
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


class WorkClaims(Protocol):
    """Work several collecting processes share, each piece done by one of them: claims with a
    lease measured on the store's own clock (so the machines' clocks do not matter), held by a
    ``holder`` (one name per process). A claim whose lease has run out is anyone's again, so
    the work of a process that died is taken up by the next."""

    def claim_feeds(self, holder: str, feeds: Sequence[DueFeed], *, lease: timedelta) -> FeedClaims:
        """Claim, in one transaction, the hosts of these feeds for ``lease``: all of a host's
        feeds go to one holder. A host another holder has under a live lease is not claimed:
        its feeds come back as taken. The holder's own live claims are renewed."""
        ...

    def renew_feed_claims(self, holder: str, *, lease: timedelta) -> None:
        """Extend the holder's host claims to ``lease`` from now."""
        ...

    def release_feed_claims(self, holder: str) -> None:
        """Give up the holder's host claims."""
        ...

    def claim_summaries(
        self, holder: str, model_id: str, text_hashes: Sequence[str], *, lease: timedelta
    ) -> tuple[str, ...]:
        """Claim, in one transaction, the summaries by this model of these texts that are not
        cached and that no other holder has under a live lease; which were claimed (the
        holder's own claims among them, renewed)."""
        ...

    def release_summary_claims(
        self, holder: str, model_id: str, text_hashes: Sequence[str]
    ) -> None:
        """Give up the holder's claims on these summaries (made, or not to be made by it)."""
        ...

    def claim_holders(self) -> tuple[str, ...]:
        """Every holder with a claim of any kind, its lease live or not."""
        ...

    def drop_claims(self, holder: str) -> None:
        """Give up every claim of a holder known to be gone (its process has ended)."""
        ...


class Store(Ledger, Subscribers, WebLimits, WorkClaims, Protocol):
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
