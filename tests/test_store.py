"""The store's conformance suite: what every ``Store`` implementation does, run against each.

A new implementation joins by one line in ``IMPLEMENTATIONS``: a callable that takes the
test's request (for the fixtures it needs: a temporary folder, a PostgreSQL schema) and gives
``Stores``, which opens one store as many times as a test needs (two senders are two
connections). What is particular to SQLite (its file, WAL, locks, an older schema) is tested
in tests/test_sqlite_store.py, what is particular to PostgreSQL in tests/test_pg_store.py.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Protocol

import pytest

from digest.errors import StoreError
from digest.models import (
    Article,
    CachedSummary,
    Delivery,
    DeliveryState,
    DueFeed,
    Embedding,
    FeedHealth,
    FeedSource,
    FetchResult,
    JobRun,
    RenderedDigest,
    SendLockHolder,
    Story,
    SubscriberState,
)
from digest.pg_store import PostgresStore
from digest.sqlite_store import SQLiteStore
from digest.store import Store
from tests.conftest import make_story

NOW = datetime(2024, 3, 1, 6, tzinfo=UTC)
DAY = date(2024, 3, 1)


class Stores(Protocol):
    """One store, opened anew on each call: for reading and writing, or read-only."""

    def open(self) -> Store: ...

    def open_read_only(self) -> Store: ...


@dataclass(frozen=True)
class SQLiteStores:
    folder: Path

    def open(self) -> Store:
        return SQLiteStore.open(self.folder / "digest.db")

    def open_read_only(self) -> Store:
        store = SQLiteStore.open_read_only(self.folder / "digest.db")
        assert store is not None
        return store


@dataclass(frozen=True)
class PostgresStores:
    url: str

    def open(self) -> Store:
        return PostgresStore.open(self.url)

    def open_read_only(self) -> Store:
        store = PostgresStore.open_read_only(self.url)
        assert store is not None
        return store


def _sqlite(request: pytest.FixtureRequest) -> Stores:
    return SQLiteStores(request.getfixturevalue("tmp_path"))


def _postgres(request: pytest.FixtureRequest) -> Stores:
    return PostgresStores(request.getfixturevalue("postgres_url"))


IMPLEMENTATIONS: list[object] = [
    pytest.param(_sqlite, id="sqlite"),
    pytest.param(_postgres, id="postgresql", marks=pytest.mark.postgres),
]


@pytest.fixture(params=IMPLEMENTATIONS)
def stores(request: pytest.FixtureRequest) -> Stores:
    make: Callable[[pytest.FixtureRequest], Stores] = request.param
    return make(request)


@pytest.fixture
def store(stores: Stores) -> Iterator[Store]:
    with stores.open() as store:
        yield store


def _edition(day: date = DAY, subject: str = "S") -> RenderedDigest:
    return RenderedDigest(edition_on=day, subject=subject, html="<p>h</p>", text="t")


def _pending(recipient: str, day: date = DAY) -> Delivery:
    return Delivery(
        edition_on=day,
        recipient=recipient,
        message_id=f"<{recipient}>",
        state=DeliveryState.PENDING,
    )


# Stories and editions


def test_stories_are_deduplicated_by_id_and_by_link(store: Store) -> None:
    assert store.add_stories([make_story(1), make_story(2)], NOW) == 2
    assert store.add_stories([make_story(1), make_story(3, url="https://example.org/2")], NOW) == 0
    assert [s.story_id for s in store.stories_for_edition(date(2024, 3, 1))] == [
        "sha256:1",
        "sha256:2",
    ]
    assert store.has_story(make_story(1)) and store.has_story(
        make_story(9, url="https://example.org/2")
    )
    assert not store.has_story(make_story(9))


def test_a_story_comes_back_as_it_went_in(store: Store) -> None:
    story = Story(
        story_id="sha256:x",
        feed_url="https://example.org/feed",
        source_name="Example",
        category=None,
        url="https://example.org/x",
        title="Ünïcode “title”",
        published_at=None,
        author="A. Writer",
        text="Text.",
        html="<p>Text.</p>",
        categories=("Science", "Space"),
        text_source="article",
        is_deduped=False,
        language="de",
        image_url="https://example.org/x.jpg",
    )
    store.add_stories([story], NOW)
    # first_seen_at is the store's: when it was added, whatever the story said
    assert store.stories_for_edition(DAY) == (replace(story, first_seen_at=NOW),)


def test_a_story_belongs_to_the_first_edition_that_takes_it(store: Store) -> None:
    day = date(2024, 3, 1)
    store.add_stories([make_story(1), make_story(2)], NOW)
    rendered = RenderedDigest(edition_on=day, subject="S", html="<p>h</p>", text="t")
    store.create_edition(rendered, ["sha256:1", "sha256:2"], NOW)
    store.add_stories([make_story(3)], NOW)
    assert [s.story_id for s in store.stories_for_edition(day)] == [
        "sha256:1",
        "sha256:2",
        "sha256:3",
    ]
    next_day = [s.story_id for s in store.stories_for_edition(date(2024, 3, 2))]
    assert next_day == ["sha256:3"]
    assert store.edition(day) == rendered


def test_the_archive_lists_editions_newest_first(store: Store) -> None:
    assert store.latest_edition_on() is None and store.edition_subjects() == ()
    assert store.edition(DAY) is None
    for day, subject in ((DAY, "First"), (DAY + timedelta(days=1), "Second")):
        store.create_edition(_edition(day, subject), [], NOW)
    assert store.edition_subjects() == ((DAY + timedelta(days=1), "Second"), (DAY, "First"))
    assert store.latest_edition_on() == DAY + timedelta(days=1)


def test_an_edition_is_archived_once(store: Store) -> None:
    store.create_edition(_edition(subject="First"), [], NOW)
    with pytest.raises(StoreError):
        store.create_edition(_edition(subject="Again"), [], NOW)
    assert store.edition(DAY) == _edition(subject="First")


# Feeds


def test_feed_state_keeps_validators_and_the_last_error(store: Store) -> None:
    source = FeedSource(url="https://example.org/feed", name="Example")
    store.record_fetch(FetchResult(source=source, fetched_at=NOW, status=200, etag='"1"'))
    store.record_fetch(FetchResult(source=source, fetched_at=NOW, error="HTTP 500"))
    state = store.feed_state(source.url)
    assert state is not None and state.etag == '"1"' and state.last_error == "HTTP 500"
    assert [f.error for f in store.failing_feeds([source], None)] == ["HTTP 500"]
    store.record_fetch(FetchResult(source=source, fetched_at=NOW, status=304))
    assert store.failing_feeds([source], None) == ()


def test_failing_feeds_are_the_given_ones_failing_since_a_time(store: Store) -> None:
    # issue 15: a feed no longer configured, or one that failed before the last edition,
    # stayed in the footer after the URL was fixed and every feed read fine
    old, kept, renamed = (FeedSource(url=f"https://{n}.example/feed") for n in "abc")
    for source, at in ((old, NOW), (kept, NOW - timedelta(hours=2)), (renamed, NOW)):
        store.record_fetch(FetchResult(source=source, fetched_at=at, error=f"{source.url} 500"))
    now_named = replace(renamed, name="Renamed since")
    configured = [now_named, kept]
    failing = store.failing_feeds(configured, None)
    assert [(f.feed_url, f.name) for f in failing] == [
        (renamed.url, "Renamed since"),  # in the order given, under the name given
        (kept.url, kept.url),
    ]
    assert [f.error for f in failing] == [f"{renamed.url} 500", f"{kept.url} 500"]
    since = NOW - timedelta(hours=1)
    assert [f.feed_url for f in store.failing_feeds(configured, since)] == [renamed.url]
    assert store.failing_feeds(configured, NOW) == ()  # after it, not at it
    assert store.failing_feeds([], None) == ()
    assert store.failing_feeds([FeedSource(url="https://never.example/feed")], None) == ()


def test_the_previous_edition_is_the_last_archived_before_a_day(store: Store) -> None:
    assert store.previous_edition_at(DAY) is None
    store.create_edition(_edition(DAY - timedelta(days=2)), [], NOW - timedelta(days=2))
    store.create_edition(_edition(DAY - timedelta(days=1)), [], NOW - timedelta(hours=20))
    store.create_edition(_edition(DAY), [], NOW)
    assert store.previous_edition_at(DAY) == NOW - timedelta(hours=20)
    assert store.previous_edition_at(DAY + timedelta(days=1)) == NOW
    assert store.previous_edition_at(DAY - timedelta(days=2)) is None


def test_a_feed_is_held_until_its_time(store: Store) -> None:
    source = FeedSource(url="https://example.org/feed", name="Example")
    assert store.feed_state(source.url) is None
    store.record_fetch(FetchResult(source=source, fetched_at=NOW, status=200))
    store.hold_feed(source.url, NOW + timedelta(hours=1), "TTL 60 minutes", 60)
    [held] = store.held_feeds(NOW)
    assert (held.url, held.not_before, held.hold_reason, held.ttl_minutes) == (
        source.url,
        NOW + timedelta(hours=1),
        "TTL 60 minutes",
        60,
    )
    assert store.held_feeds(NOW + timedelta(hours=1)) == ()


def test_feed_health_failures_and_a_gone_feed_revived(store: Store) -> None:
    ok, gone, new = (FeedSource(url=f"https://example.org/{n}", name=n) for n in "ogn")
    store.record_fetch(FetchResult(source=ok, fetched_at=NOW, status=200))
    store.add_stories([make_story(1)], NOW)  # of https://example.org/feed, no configured feed
    for minutes, error in ((0, "HTTP 500"), (5, "HTTP 410")):
        store.record_fetch(
            FetchResult(
                source=gone,
                fetched_at=NOW + timedelta(minutes=minutes),
                status=410 if minutes else 500,
                error=error,
                error_kind="http",
            )
        )
    health = store.feed_health([new, gone, ok])
    assert [h.status for h in health] == ["new", "gone", "ok"]
    assert health[0] == FeedHealth(source=new)
    assert (health[1].failures, health[1].last_error_kind) == (2, "http")
    failures = store.feed_failures(gone.url)
    assert [(f.message, f.failed_at) for f in failures] == [
        ("HTTP 410", NOW + timedelta(minutes=5)),
        ("HTTP 500", NOW),
    ]
    assert len(store.feed_failures(gone.url, limit=1)) == 1
    state = store.feed_state(gone.url)
    assert state is not None and state.is_gone
    store.revive_feed(gone.url)
    state = store.feed_state(gone.url)
    assert state is not None and not state.is_gone


# Caches


def test_summaries_round_trip_by_model_and_text(store: Store) -> None:
    kept = [
        CachedSummary(model_id="m1", text_hash="sha256:a", text="A in short."),
        CachedSummary(model_id="m1", text_hash="sha256:b", text="B in short."),
        CachedSummary(model_id="m2", text_hash="sha256:a", text="A by another model."),
    ]
    store.save_summaries(kept, NOW)
    found = store.cached_summaries("m1", ["sha256:a", "sha256:b", "sha256:c"])
    assert sorted(found, key=lambda s: s.text_hash) == kept[:2]
    assert store.cached_summaries("m3", ["sha256:a"]) == ()
    store.save_summaries([CachedSummary(model_id="m1", text_hash="sha256:a", text="New.")], NOW)
    assert [s.text for s in store.cached_summaries("m1", ["sha256:a"])] == ["New."]


def test_embeddings_round_trip_by_model_and_text_and_a_damaged_one_is_left_out(
    stores: Stores,
) -> None:
    vector = struct.pack("<3f", 0.5, -0.25, 1.0)
    kept = [
        Embedding(model_key="m/fp32", text_hash="sha256:a", dimensions=3, vector=vector),
        Embedding(model_key="m/fp32", text_hash="sha256:b", dimensions=3, vector=vector[:8]),
        Embedding(model_key="m/bf16", text_hash="sha256:c", dimensions=3, vector=vector),
    ]
    with stores.open() as store:
        store.save_embeddings(kept, NOW)
    with stores.open_read_only() as store:
        found = store.cached_embeddings("m/fp32", ["sha256:a", "sha256:b", "sha256:c"])
        assert store.cached_embeddings("m/bf16", ["sha256:a"]) == ()
    assert found == (kept[0],)  # b is 8 bytes for 3 floats: ignored; c is another model's
    assert struct.unpack("<3f", found[0].vector) == (0.5, -0.25, 1.0)


def test_articles_are_kept_with_their_text_and_image_or_their_error(store: Store) -> None:
    read = Article(
        url="https://example.org/a",
        fetched_at=NOW,
        text="The whole text.",
        image_url="https://img.example.org/a.jpg",
    )
    failed = Article(url="https://example.org/b", fetched_at=NOW, error="HTTP 404")
    store.save_articles([read, failed])
    assert store.article(read.url) == read and store.article(failed.url) == failed
    assert store.article("https://example.org/c") is None


# The daemon's job runs


def _run(job: str, hours: int, outcome: str = "ok", day: date | None = None) -> JobRun:
    started = NOW + timedelta(hours=hours)
    return JobRun(
        job=job,
        started_at=started,
        finished_at=started + timedelta(minutes=1),
        outcome=outcome,
        summary=f"{job} at {hours}",
        failures=("feed A",) if outcome == "failed" else (),
        edition_on=day,
    )


def test_job_runs_come_back_newest_first_and_a_miss_is_kept_once(store: Store) -> None:
    assert store.job_runs("collect") == () and store.last_activity() is None
    runs = [_run("collect", 0), _run("collect", 2, "failed"), _run("edition", 1, "ok", DAY)]
    for run in runs:
        store.add_job_run(run)
    assert store.job_runs("collect") == (runs[1],)
    assert store.job_runs("collect", limit=5) == (runs[1], runs[0])
    assert store.job_runs("collect", limit=5, outcome="ok") == (runs[0],)
    missed = _run("edition", 3, "missed", DAY + timedelta(days=1))
    assert store.add_missed_edition(missed)
    assert not store.add_missed_edition(_run("edition", 4, "missed", missed.edition_on))
    assert store.job_runs("edition", limit=5, outcome="missed") == (missed,)
    assert store.last_activity() == missed.started_at


# The delivery ledger


def test_delivery_ledger_is_unique_per_edition_and_recipient(store: Store) -> None:
    day = date(2024, 3, 1)
    pending = Delivery(
        edition_on=day, recipient="a@example.org", message_id="<1@x>", state=DeliveryState.PENDING
    )
    store.create_edition(RenderedDigest(edition_on=day, subject="S", html="h", text="t"), [], NOW)
    store.add_deliveries([pending], NOW)
    sent = store.set_delivery_state(pending, DeliveryState.SENT, NOW, "250 OK")
    store.add_deliveries([pending], NOW)  # a second plan keeps the row as it is
    assert store.deliveries(day) == (sent,)
    assert sent.sent_at == NOW


def test_two_senders_cannot_claim_the_same_delivery(stores: Stores) -> None:
    day = date(2024, 3, 1)
    pending = Delivery(
        edition_on=day,
        recipient="A <a@example.org>",
        message_id="<1@x>",
        state=DeliveryState.PENDING,
    )
    with stores.open() as first, stores.open() as second:
        first.create_edition(
            RenderedDigest(edition_on=day, subject="S", html="h", text="t"), [], NOW
        )
        first.add_deliveries([pending], NOW)
        claimed = first.claim_delivery(pending, NOW)
        assert claimed is not None and claimed.state is DeliveryState.SENDING
        assert second.claim_delivery(pending, NOW) is None
        # The same address under another display name is the same recipient.
        renamed = Delivery(
            edition_on=day,
            recipient="a@EXAMPLE.org",
            message_id="<1@x>",
            state=DeliveryState.PENDING,
        )
        second.add_deliveries([renamed], NOW)
        assert [d.recipient for d in second.deliveries(day)] == ["A <a@example.org>"]
        failed = first.set_delivery_state(claimed, DeliveryState.FAILED, NOW, "452 mailbox full")
        assert second.claim_delivery(failed, NOW) is not None  # a failed delivery is retried


def test_an_uncertain_row_is_claimed_only_when_asked_and_counts_its_attempts(
    store: Store,
) -> None:
    store.create_edition(_edition(), [], NOW)
    store.add_deliveries([_pending("a@example.org")], NOW)
    [row] = store.deliveries(DAY)
    claimed = store.claim_delivery(row, NOW)
    assert claimed is not None and claimed.attempts == 1
    assert store.claim_delivery(claimed, NOW) is None  # left "sending": uncertain
    again = store.claim_delivery(claimed, NOW, is_uncertain_ok=True)
    assert again is not None and again.attempts == 2
    assert store.deliveries(DAY) == (again,)


def test_undelivered_rows_and_a_forced_resend(store: Store) -> None:
    yesterday = DAY - timedelta(days=1)
    for day in (yesterday, DAY):
        store.create_edition(_edition(day), [], NOW)
        store.add_deliveries([_pending("a@example.org", day), _pending("b@example.org", day)], NOW)
    assert store.latest_delivery_date() == DAY
    for row in store.deliveries(yesterday):
        store.set_delivery_state(row, DeliveryState.SENT, NOW, "250 OK")
    sent_a = store.set_delivery_state(
        store.deliveries(DAY)[0], DeliveryState.SENT, NOW, "250 OK", is_synced=False
    )
    assert store.undelivered(yesterday) == (store.deliveries(DAY)[1],)
    assert store.reopen_deliveries(DAY, ["a@example.org", "b@example.org"], NOW) == 1
    reopened = store.deliveries(DAY)[0]
    assert reopened.address == sent_a.address and reopened.state is DeliveryState.PENDING
    assert reopened.sent_at is None and reopened.detail == "resend forced"


def test_sent_since_lists_the_messages_sent_of_every_edition_oldest_first(
    store: Store,
) -> None:
    yesterday = DAY - timedelta(days=1)
    for day in (yesterday, DAY):
        store.create_edition(_edition(day), [], NOW)
        store.add_deliveries([_pending("a@example.org", day), _pending("b@example.org", day)], NOW)
    assert store.sent_since(NOW - timedelta(hours=1)) == ()
    a_today, b_today = store.deliveries(DAY)
    store.set_delivery_state(store.deliveries(yesterday)[0], DeliveryState.SENT, NOW, "250 OK")
    later = NOW + timedelta(minutes=30, microseconds=5)
    store.set_delivery_state(a_today, DeliveryState.SENT, later, "250 OK", is_synced=False)
    store.set_delivery_state(b_today, DeliveryState.FAILED, later, "451 try later")
    assert store.sent_since(NOW - timedelta(hours=1)) == (NOW, later)
    assert store.sent_since(NOW - timedelta(microseconds=1)) == (NOW, later)
    assert store.sent_since(NOW) == (later,)  # after the moment, not at it
    assert store.sent_since(later) == ()
    claimed = store.claim_delivery(b_today, later + timedelta(seconds=1))
    assert claimed is not None  # in flight: its slot is taken from its claim
    assert store.sent_since(NOW) == (later, later + timedelta(seconds=1))


def _queue(store: Store, count: int) -> tuple[Delivery, ...]:
    store.create_edition(_edition(), [], NOW)
    store.add_deliveries([_pending(f"r{n}@example.org") for n in range(count)], NOW)
    return store.deliveries(DAY)


def _lease(store: Store, sender: str, size: int = 50, **options: object) -> tuple[str, ...]:
    """Lease a batch (60 s, retrying failures before NOW); the recipients leased."""
    chosen = {"lease_seconds": 60.0, "retry_before": NOW, **options}
    batch = store.claim_batch(DAY, sender, size=size, **chosen)  # type: ignore[arg-type]
    return tuple(d.recipient for d in batch)


def test_two_senders_lease_separate_batches_and_a_claim_needs_the_lease(stores: Stores) -> None:
    with stores.open() as first, stores.open() as second:
        rows = _queue(first, 5)
        assert _lease(first, "one", size=3) == (
            "r0@example.org",
            "r1@example.org",
            "r2@example.org",
        )
        assert _lease(second, "two", size=3) == ("r3@example.org", "r4@example.org")
        assert _lease(second, "two") == ()  # all leased, none expired
        assert second.claim_delivery(rows[0], NOW, sender="two") is None  # first's row
        claimed = first.claim_delivery(rows[0], NOW, sender="one")
        assert claimed is not None and claimed.state is DeliveryState.SENDING
        assert second.leased_elsewhere(DAY, "two") == 3  # the one in flight too
        assert first.leased_elsewhere(DAY, "one") == 2
        first.set_delivery_state(claimed, DeliveryState.SENT, NOW, "250 OK")
        assert second.leased_elsewhere(DAY, "two") == 2  # an outcome ends the lease
        assert first.renew_leases("one", 60.0) == 2
        assert first.release_leases("one") == 2
        assert second.leased_elsewhere(DAY, "two") == 0
        assert _lease(second, "two") == ("r1@example.org", "r2@example.org")
        assert first.claim_delivery(rows[1], NOW, sender="one") is None  # lost with its lease


def test_an_expired_lease_goes_back_to_the_queue(stores: Stores) -> None:
    with stores.open() as first, stores.open() as second:
        rows = _queue(first, 2)
        assert len(_lease(first, "dead", lease_seconds=0.0)) == 2  # runs out at once
        assert first.leased_elsewhere(DAY, "alive") == 0
        assert _lease(second, "alive") == ("r0@example.org", "r1@example.org")
        assert first.renew_leases("dead", 60.0) == 0  # not its rows any more
        assert first.claim_delivery(rows[0], NOW, sender="dead") is None


def test_a_failure_is_retried_by_another_sender_that_started_after_it(store: Store) -> None:
    rows = _queue(store, 3)
    _lease(store, "one")
    failed = store.claim_delivery(rows[0], NOW, sender="one")
    uncertain = store.claim_delivery(rows[1], NOW, sender="one")
    assert failed is not None and uncertain is not None
    store.set_delivery_state(failed, DeliveryState.FAILED, NOW, "451 try later")
    store.release_leases("one")
    assert _lease(store, "one") == ("r2@example.org",)  # never its own failure again
    store.release_leases("one")
    before = NOW - timedelta(seconds=1)
    assert _lease(store, "two", retry_before=before) == ("r2@example.org",)  # failed after
    store.release_leases("two")
    assert _lease(store, "two") == ("r0@example.org", "r2@example.org")
    store.release_leases("two")
    resend = _lease(store, "three", is_uncertain_ok=True, excluding=["r2@example.org"])
    assert resend == ("r0@example.org", "r1@example.org")  # --resend-uncertain


def test_one_sender_builds_an_edition_at_a_time(stores: Stores) -> None:
    told: list[SendLockHolder] = []
    stop = threading.Event()
    stop.set()
    with stores.open() as first, stores.open() as second:
        with first.send_lock(wait_seconds=60) as is_locked:
            assert is_locked
            with second.send_lock(wait_seconds=60, stop=stop, on_wait=told.append) as is_second:
                assert not is_second  # stopped while waiting
            with (
                pytest.raises(StoreError, match="still building the edition"),
                second.send_lock(wait_seconds=0),
            ):
                pass
        assert [holder.pid for holder in told] == [os.getpid()]
        with second.send_lock(wait_seconds=0) as is_locked:
            assert is_locked


# Transactions and read-only stores


# Subscribers

LIST = "default"
ACTIVE, BOUNCED = SubscriberState.ACTIVE, SubscriberState.BOUNCED


def test_subscribers_are_added_once_by_address_in_any_case(store: Store) -> None:
    added = store.add_subscribers(
        LIST, [("Ann@example.org", "Ann"), ("bob@example.org", None)], how="import", now=NOW
    )
    assert added == 2
    later = NOW + timedelta(days=1)
    again = [("ANN@example.org", "Other"), ("cy@example.org", None)]
    assert store.add_subscribers(LIST, again, how="settings", now=later) == 1
    found = store.subscribers(LIST)
    assert [s.address for s in found] == ["Ann@example.org", "bob@example.org", "cy@example.org"]
    ann = found[0]
    assert (ann.name, ann.state, ann.how, ann.created_at) == ("Ann", ACTIVE, "import", NOW)
    assert ann.state_changed_at == NOW and ann.reason is None and ann.bounce_count == 0
    assert ann.recipient == "Ann <Ann@example.org>"
    assert store.subscriber(LIST, "ann@EXAMPLE.ORG") == ann
    assert store.subscriber_by_id(ann.subscriber_id) == ann
    assert len({s.subscriber_id for s in found}) == 3
    assert (
        store.subscribers("another-list") == () and store.subscriber("x", "ann@example.org") is None
    )


def test_a_state_change_keeps_the_subscriber_and_says_when_how_and_why(store: Store) -> None:
    store.add_subscribers(LIST, [("ann@example.org", None)], how="settings", now=NOW)
    first = store.subscriber(LIST, "ann@example.org")
    later = NOW + timedelta(hours=3)
    gone = store.set_subscriber_state(
        LIST, "ANN@example.org", SubscriberState.UNSUBSCRIBED, how="cli", now=later
    )
    assert first is not None and gone.subscriber_id == first.subscriber_id
    assert (gone.state, gone.how, gone.state_changed_at, gone.created_at) == (
        SubscriberState.UNSUBSCRIBED, "cli", later, NOW,
    )  # fmt: skip
    # An import never brings them back; only a state change does.
    assert store.add_subscribers(LIST, [("ann@example.org", None)], how="settings", now=later) == 0
    assert store.subscribers(LIST, [ACTIVE]) == ()
    new = store.set_subscriber_state(
        LIST, "new@example.org", SubscriberState.PENDING, how="form", now=later, name="New"
    )
    assert (new.state, new.name, new.created_at) == (SubscriberState.PENDING, "New", later)
    states = [SubscriberState.UNSUBSCRIBED, SubscriberState.PENDING]
    assert [s.address for s in store.subscribers(LIST, states)] == [
        "ann@example.org", "new@example.org",
    ]  # fmt: skip


def test_bounces_count_once_per_edition_until_the_limit(store: Store) -> None:
    store.add_subscribers(LIST, [("a@example.org", None)], how="cli", now=NOW)
    answer = "550 5.7.1 rejected"
    first = store.record_bounce(LIST, "a@example.org", DAY, answer, NOW, limit=3)
    again = store.record_bounce(LIST, "A@example.org", DAY, answer, NOW, limit=3)  # same edition
    assert first is not None and again is not None
    assert (first.bounce_count, again.bounce_count, again.state) == (1, 1, ACTIVE)
    assert again.last_bounce_on == DAY
    store.clear_bounces(LIST, "a@example.org")
    cleared = store.subscriber(LIST, "a@example.org")
    assert cleared is not None and cleared.bounce_count == 0
    for n in range(3):
        day = DAY + timedelta(days=n + 1)
        bounced = store.record_bounce(LIST, "a@example.org", day, answer, NOW, limit=3)
    assert bounced is not None
    assert (bounced.state, bounced.how, bounced.reason, bounced.bounce_count) == (
        BOUNCED, "bounce", answer, 3,
    )  # fmt: skip
    assert store.record_bounce(LIST, "nobody@example.org", DAY, answer, NOW, limit=1) is None


def test_a_hard_bounce_counts_at_once_and_only_for_an_active_subscriber(store: Store) -> None:
    store.add_subscribers(LIST, [("a@example.org", None)], how="cli", now=NOW)
    store.set_subscriber_state(
        LIST, "b@example.org", SubscriberState.UNSUBSCRIBED, how="cli", now=NOW
    )
    bounced = store.record_bounce(LIST, "a@example.org", DAY, "550 5.1.1 unknown", NOW, limit=1)
    kept = store.record_bounce(LIST, "b@example.org", DAY, "550 5.1.1 unknown", NOW, limit=1)
    assert bounced is not None and bounced.state is BOUNCED
    assert (
        kept is not None and kept.state is SubscriberState.UNSUBSCRIBED and kept.bounce_count == 0
    )
    back = store.set_subscriber_state(LIST, "a@example.org", ACTIVE, how="cli", now=NOW)
    assert (back.state, back.bounce_count, back.reason) == (ACTIVE, 0, None)


def test_ten_thousand_subscribers_are_added_in_one_transaction(store: Store) -> None:
    readers = [(f"reader{n}@example.org", None) for n in range(10_000)]
    with pytest.raises(RuntimeError), store.atomic():
        store.add_subscribers(LIST, readers, how="import", now=NOW)
        raise RuntimeError("rolled back")
    assert store.subscribers(LIST) == ()
    assert store.add_subscribers(LIST, [*readers, readers[0]], how="import", now=NOW) == 10_000
    assert len(store.subscribers(LIST, [ACTIVE])) == 10_000


def test_atomic_rolls_back_and_nests_with_savepoints(store: Store) -> None:
    with store.atomic():
        store.add_stories([make_story(1)], NOW)
        with pytest.raises(RuntimeError), store.atomic():
            store.add_stories([make_story(2)], NOW)
            raise RuntimeError("inner")
    with pytest.raises(RuntimeError), store.atomic():
        store.add_stories([make_story(3)], NOW)
        raise RuntimeError("outer")
    ids = [s.story_id for s in store.stories_for_edition(date(2024, 3, 1))]
    assert ids == ["sha256:1"]


def test_a_failed_write_in_a_transaction_rolls_back_all_of_it(store: Store) -> None:
    store.create_edition(_edition(subject="First"), [], NOW)
    with pytest.raises(StoreError), store.atomic():
        store.add_stories([make_story(1)], NOW)
        store.create_edition(_edition(subject="Again"), ["sha256:1"], NOW)
    assert store.stories_for_edition(DAY) == ()
    store.add_stories([make_story(2)], NOW)  # and the store goes on
    assert [s.story_id for s in store.stories_for_edition(DAY)] == ["sha256:2"]


def test_read_only_store_cannot_write(stores: Stores) -> None:
    stores.open().close()
    with stores.open_read_only() as store:
        assert store.is_read_only
        with pytest.raises(StoreError):
            store.add_stories([make_story(1)], NOW)
        with pytest.raises(StoreError):
            store.record_fetch(
                FetchResult(source=FeedSource(url="https://example.org/f"), fetched_at=NOW)
            )
        with pytest.raises(StoreError):
            store.add_subscribers("default", [("a@example.org", None)], how="cli", now=NOW)
        assert store.stories_for_edition(DAY) == () and store.subscribers("default") == ()
    with stores.open() as store:
        assert not store.is_read_only


# Work claims: several processes sharing the work, each piece done by one

HOUR = timedelta(hours=1)


def _due(url: str) -> DueFeed:
    return DueFeed(url=url, host=url.split("/")[2])


def test_a_hosts_feeds_are_claimed_together_by_one_holder(stores: Stores) -> None:
    with stores.open() as first, stores.open() as second:
        feeds = [
            _due("https://a.example/1"),
            _due("https://a.example/2"),
            _due("https://b.example/"),
        ]
        assert first.claim_feeds("one", feeds, lease=HOUR).claimed == tuple(f.url for f in feeds)
        wanted = [_due("https://a.example/2"), _due("https://c.example/")]
        claims = second.claim_feeds("two", wanted, lease=HOUR)
    assert claims.claimed == ("https://c.example/",)
    (taken,) = claims.taken
    assert (taken.url, taken.holder) == ("https://a.example/2", "one")
    assert taken.until > datetime.now(UTC) + HOUR - timedelta(minutes=5)  # the store's clock


def test_a_claim_whose_lease_ran_out_or_was_given_up_is_anyones(stores: Stores) -> None:
    with stores.open() as first, stores.open() as second:
        first.claim_feeds("one", [_due("https://a.example/")], lease=timedelta(0))
        assert second.claim_feeds("two", [_due("https://a.example/")], lease=HOUR).claimed
        second.release_feed_claims("two")
        assert first.claim_feeds("one", [_due("https://a.example/")], lease=timedelta(0)).claimed
        first.renew_feed_claims("one", lease=HOUR)  # and now it lasts
        assert not second.claim_feeds("two", [_due("https://a.example/")], lease=HOUR).claimed


def test_two_holders_claiming_at_once_never_share_a_host(stores: Stores) -> None:
    feeds = [_due(f"https://host{n}.example/feed") for n in range(60)]
    claimed: dict[str, tuple[str, ...]] = {}

    def claim(holder: str, order: list[DueFeed]) -> None:
        with stores.open() as own:
            claimed[holder] = own.claim_feeds(holder, order, lease=HOUR).claimed

    threads = [
        threading.Thread(target=claim, args=("one", feeds)),
        threading.Thread(target=claim, args=("two", feeds[::-1])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not set(claimed["one"]) & set(claimed["two"])
    assert set(claimed["one"]) | set(claimed["two"]) == {f.url for f in feeds}


def test_a_summary_is_claimed_by_one_holder_unless_cached(stores: Stores) -> None:
    with stores.open() as first, stores.open() as second:
        assert first.claim_summaries("one", "m", ["h1", "h2"], lease=HOUR) == ("h1", "h2")
        second.save_summaries([CachedSummary(model_id="m", text_hash="h4", text="s")], NOW)
        assert second.claim_summaries("two", "m", ["h2", "h3", "h4"], lease=HOUR) == ("h3",)
        assert second.claim_summaries("two", "other", ["h2"], lease=HOUR) == ("h2",)  # by model
        assert first.claim_summaries("one", "m", ["h1", "h2"], lease=HOUR) == ("h1", "h2")
        first.release_summary_claims("one", "m", ["h2"])
        assert second.claim_summaries("two", "m", ["h1", "h2"], lease=HOUR) == ("h2",)
        first.claim_summaries("one", "m", ["h1"], lease=timedelta(0))  # runs out at once
        assert second.claim_summaries("two", "m", ["h1"], lease=HOUR) == ("h1",)


def test_the_claims_of_a_holder_that_is_gone_are_dropped_all_at_once(stores: Stores) -> None:
    with stores.open() as store:
        store.claim_feeds("gone", [_due("https://a.example/")], lease=HOUR)
        store.claim_summaries("gone", "m", ["h1"], lease=HOUR)
        store.claim_summaries("here", "m", ["h2"], lease=HOUR)
        assert store.claim_holders() == ("gone", "here")
        store.drop_claims("gone")
        assert store.claim_holders() == ("here",)
        assert store.claim_feeds("here", [_due("https://a.example/")], lease=HOUR).claimed
        assert store.claim_summaries("here", "m", ["h1"], lease=HOUR) == ("h1",)
