from __future__ import annotations

import sqlite3
import struct
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from digest.errors import StoreError
from digest.models import (
    Delivery,
    DeliveryState,
    Embedding,
    FeedSource,
    FetchResult,
    RenderedDigest,
    Story,
)
from digest.sqlite_migrations import MIGRATIONS
from digest.sqlite_store import SQLiteStore

NOW = datetime(2024, 3, 1, 6, tzinfo=UTC)


def _story(n: int, url: str | None = None) -> Story:
    return Story(
        story_id=f"sha256:{n}",
        feed_url="https://example.org/feed",
        source_name="Example",
        category="World",
        url=url or f"https://example.org/{n}",
        title=f"Story {n}",
        published_at=NOW,
        text=f"Text {n}.",
        html=f"<p>Text {n}.</p>",
    )


def test_migrations_run_once_and_the_file_is_wal(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "digest.db"
    with SQLiteStore.open(path) as store:
        assert store.applied_migrations() == tuple(name for name, _ in MIGRATIONS)
    with SQLiteStore.open(path) as store:
        assert store.applied_migrations() == tuple(name for name, _ in MIGRATIONS)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_stories_are_deduplicated_by_id_and_by_link(tmp_path: Path) -> None:
    with SQLiteStore.open(tmp_path / "d.db") as store:
        assert store.add_stories([_story(1), _story(2)], NOW) == 2
        assert store.add_stories([_story(1), _story(3, url="https://example.org/2")], NOW) == 0
        assert [s.story_id for s in store.stories_for_edition(date(2024, 3, 1))] == [
            "sha256:1",
            "sha256:2",
        ]
        assert store.has_story(_story(1)) and store.has_story(
            _story(9, url="https://example.org/2")
        )
        assert not store.has_story(_story(9))


def test_a_story_belongs_to_the_first_edition_that_takes_it(tmp_path: Path) -> None:
    day = date(2024, 3, 1)
    with SQLiteStore.open(tmp_path / "d.db") as store:
        store.add_stories([_story(1), _story(2)], NOW)
        rendered = RenderedDigest(edition_on=day, subject="S", html="<p>h</p>", text="t")
        store.create_edition(rendered, ["sha256:1", "sha256:2"], NOW)
        store.add_stories([_story(3)], NOW)
        assert [s.story_id for s in store.stories_for_edition(day)] == [
            "sha256:1",
            "sha256:2",
            "sha256:3",
        ]
        next_day = [s.story_id for s in store.stories_for_edition(date(2024, 3, 2))]
        assert next_day == ["sha256:3"]
        assert store.edition(day) == rendered


def test_feed_state_keeps_validators_and_the_last_error(tmp_path: Path) -> None:
    source = FeedSource(url="https://example.org/feed", name="Example")
    with SQLiteStore.open(tmp_path / "d.db") as store:
        store.record_fetch(FetchResult(source=source, fetched_at=NOW, status=200, etag='"1"'))
        store.record_fetch(FetchResult(source=source, fetched_at=NOW, error="HTTP 500"))
        state = store.feed_state(source.url)
        assert state is not None and state.etag == '"1"' and state.last_error == "HTTP 500"
        assert [f.error for f in store.failing_feeds()] == ["HTTP 500"]
        store.record_fetch(FetchResult(source=source, fetched_at=NOW, status=304))
        assert store.failing_feeds() == ()


def test_delivery_ledger_is_unique_per_edition_and_recipient(tmp_path: Path) -> None:
    day = date(2024, 3, 1)
    pending = Delivery(
        edition_on=day, recipient="a@example.org", message_id="<1@x>", state=DeliveryState.PENDING
    )
    with SQLiteStore.open(tmp_path / "d.db") as store:
        store.create_edition(
            RenderedDigest(edition_on=day, subject="S", html="h", text="t"), [], NOW
        )
        store.add_deliveries([pending], NOW)
        sent = store.set_delivery_state(pending, DeliveryState.SENT, NOW, "250 OK")
        store.add_deliveries([pending], NOW)  # a second plan keeps the row as it is
        assert store.deliveries(day) == (sent,)
        assert sent.sent_at == NOW


def test_atomic_rolls_back_and_nests_with_savepoints(tmp_path: Path) -> None:
    with SQLiteStore.open(tmp_path / "d.db") as store:
        with store.atomic():
            store.add_stories([_story(1)], NOW)
            with pytest.raises(RuntimeError), store.atomic():
                store.add_stories([_story(2)], NOW)
                raise RuntimeError("inner")
        with pytest.raises(RuntimeError), store.atomic():
            store.add_stories([_story(3)], NOW)
            raise RuntimeError("outer")
        ids = [s.story_id for s in store.stories_for_edition(date(2024, 3, 1))]
        assert ids == ["sha256:1"]


def test_read_only_store_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    SQLiteStore.open(path).close()
    assert SQLiteStore.open_read_only(tmp_path / "missing.db") is None
    store = SQLiteStore.open_read_only(path)
    assert store is not None
    with store, pytest.raises(StoreError, match="readonly"):
        store.add_stories([_story(1)], NOW)


def test_two_senders_cannot_claim_the_same_delivery(tmp_path: Path) -> None:
    day = date(2024, 3, 1)
    pending = Delivery(
        edition_on=day,
        recipient="A <a@example.org>",
        message_id="<1@x>",
        state=DeliveryState.PENDING,
    )
    with (
        SQLiteStore.open(tmp_path / "d.db") as first,
        SQLiteStore.open(tmp_path / "d.db") as second,
    ):
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


def test_a_store_locked_by_another_process_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    SQLiteStore.open(path).close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with SQLiteStore.open(path, busy_timeout=0.1) as store, pytest.raises(StoreError) as caught:
            store.add_stories([_story(1)], NOW)
        assert "database is locked" in str(caught.value)
        assert "another digest process" in str(caught.value)
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_embeddings_round_trip_by_model_and_text_and_a_damaged_one_is_left_out(
    tmp_path: Path,
) -> None:
    vector = struct.pack("<3f", 0.5, -0.25, 1.0)
    kept = [
        Embedding(model_key="m/fp32", text_hash="sha256:a", dimensions=3, vector=vector),
        Embedding(model_key="m/fp32", text_hash="sha256:b", dimensions=3, vector=vector[:8]),
        Embedding(model_key="m/bf16", text_hash="sha256:c", dimensions=3, vector=vector),
    ]
    with SQLiteStore.open(tmp_path / "d.db") as store:
        store.save_embeddings(kept, NOW)
    store = SQLiteStore.open_read_only(tmp_path / "d.db")
    assert store is not None
    with store:
        found = store.cached_embeddings("m/fp32", ["sha256:a", "sha256:b", "sha256:c"])
        assert store.cached_embeddings("m/bf16", ["sha256:a"]) == ()
    assert found == (kept[0],)  # b is 8 bytes for 3 floats: ignored; c is another model's
    assert struct.unpack("<3f", found[0].vector) == (0.5, -0.25, 1.0)


def test_a_read_only_look_at_a_store_from_before_the_embedding_cache_finds_none(
    tmp_path: Path,
) -> None:
    path = tmp_path / "d.db"
    with SQLiteStore.open(path):
        pass
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE embeddings")
    conn.execute("DELETE FROM migrations WHERE name = 'm007_embedding_cache'")
    conn.commit()
    conn.close()
    store = SQLiteStore.open_read_only(path)
    assert store is not None
    with store:
        assert store.cached_embeddings("m/fp32", ["sha256:a"]) == ()
