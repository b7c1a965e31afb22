"""What is particular to the SQLite store: its file (WAL, migrations), SQLite's locks, a
look at a store an older digest wrote, and how its transactions meet SQLite's own rollbacks.
What every store does is tests/test_store.py."""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from digest.errors import StoreError
from digest.models import Delivery, DeliveryState, FeedHealth, FeedSource
from digest.sqlite_migrations import MIGRATIONS
from digest.sqlite_store import SQLiteStore
from tests.conftest import make_story

NOW = datetime(2024, 3, 1, 6, tzinfo=UTC)
DAY = date(2024, 3, 1)


def test_migrations_run_once_and_the_file_is_wal(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "digest.db"
    with SQLiteStore.open(path) as store:
        assert store.applied_migrations() == tuple(name for name, _ in MIGRATIONS)
    with SQLiteStore.open(path) as store:
        assert store.applied_migrations() == tuple(name for name, _ in MIGRATIONS)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_read_only_store_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    SQLiteStore.open(path).close()
    assert SQLiteStore.open_read_only(tmp_path / "missing.db") is None
    store = SQLiteStore.open_read_only(path)
    assert store is not None
    with store, pytest.raises(StoreError, match="readonly"):
        store.add_stories([make_story(1)], NOW)


def test_a_store_locked_by_another_process_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    SQLiteStore.open(path).close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with (
            SQLiteStore.open(path, busy_timeout=0.1) as store,
            pytest.raises(StoreError) as caught,
        ):
            store.add_stories([make_story(1)], NOW)
        assert "database is locked" in str(caught.value)
        assert "another digest process" in str(caught.value)
    finally:
        other.execute("ROLLBACK")
        other.close()


def _read_only_before(path: Path, table: str, migration: str) -> SQLiteStore:
    """A store made now, then taken back to before ``migration`` (its ``table`` dropped),
    opened read-only: what a newer ``digest`` reading an older store sees."""
    with SQLiteStore.open(path):
        pass
    conn = sqlite3.connect(path)
    conn.execute(f"DROP TABLE {table}")
    conn.execute("DELETE FROM migrations WHERE name = ?", (migration,))
    conn.commit()
    conn.close()
    store = SQLiteStore.open_read_only(path)
    assert store is not None
    return store


def test_a_read_only_look_at_a_store_from_before_the_embedding_cache_finds_none(
    tmp_path: Path,
) -> None:
    with _read_only_before(tmp_path / "d.db", "embeddings", "m007_embedding_cache") as store:
        assert store.cached_embeddings("m/fp32", ["sha256:a"]) == ()


def test_a_read_only_look_at_a_store_from_before_subscribers_finds_none(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    with _read_only_before(path, "subscribers", "m010_subscribers") as store:
        assert store.subscribers("default") == ()
        assert store.subscriber("default", "a@example.org") is None
        assert store.subscriber_by_id("sub_x") is None
    with SQLiteStore.open(path) as store:  # migrated on the next writable open
        assert store.subscribers("default") == ()
        assert "m010_subscribers" in store.applied_migrations()


# Transactions and SQLite's own rollbacks


def _roll_back_on_boom(path: Path) -> None:
    """Make SQLite roll back the whole transaction that adds a story titled "Boom" (as a full
    disk or an I/O error can), savepoints and all."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(
            "CREATE TRIGGER roll_back BEFORE INSERT ON stories WHEN NEW.title = 'Boom'"
            " BEGIN SELECT RAISE(ROLLBACK, 'rolled back by a trigger'); END"
        )


def test_a_block_that_goes_on_after_sqlite_rolled_its_transaction_back_writes_nothing(
    tmp_path: Path,
) -> None:
    """Before: the rest of the block ran outside any transaction, each write committed on its
    own, and the block's end failed with "cannot commit - no transaction is active"."""
    path = tmp_path / "d.db"
    SQLiteStore.open(path).close()
    _roll_back_on_boom(path)
    boom = replace(make_story(2), title="Boom")
    with SQLiteStore.open(path) as store:
        with pytest.raises(StoreError, match="rolled back") as caught, store.atomic():
            store.add_stories([make_story(1)], NOW)
            with contextlib.suppress(StoreError):
                store.add_stories([boom], NOW)
            store.add_stories([make_story(3)], NOW)
        assert "no transaction is active" not in str(caught.value)
        assert store.stories_for_edition(DAY) == ()
        store.add_stories([make_story(4)], NOW)  # the next transaction is a new one
        assert [s.story_id for s in store.stories_for_edition(DAY)] == ["sha256:4"]


def test_sqlite_rolling_back_inside_a_nested_block_is_the_error_reported(
    tmp_path: Path,
) -> None:
    path = tmp_path / "d.db"
    SQLiteStore.open(path).close()
    _roll_back_on_boom(path)
    with SQLiteStore.open(path) as store:
        with pytest.raises(StoreError, match="rolled back by a trigger"), store.atomic():
            store.add_stories([make_story(1)], NOW)
            with store.atomic():
                store.add_stories([replace(make_story(2), title="Boom")], NOW)
        assert store.stories_for_edition(DAY) == ()
        store.add_stories([make_story(3)], NOW)
        assert [s.story_id for s in store.stories_for_edition(DAY)] == ["sha256:3"]


def test_a_commit_that_fails_leaves_no_transaction_open(tmp_path: Path) -> None:
    """A COMMIT that fails (here a foreign key checked at the end; a full disk in
    tests/test_store_faults.py) is rolled back: the next write is not refused with "cannot
    start a transaction within a transaction"."""
    pending = Delivery(
        edition_on=DAY, recipient="a@example.org", message_id="<1@x>", state=DeliveryState.PENDING
    )
    with SQLiteStore.open(tmp_path / "d.db") as store:
        with pytest.raises(StoreError, match="FOREIGN KEY"), store.atomic():
            store._conn.execute("PRAGMA defer_foreign_keys = ON")  # checked at COMMIT
            store.add_stories([make_story(1)], NOW)
            store.add_deliveries([pending], NOW)  # of an edition never archived
        assert store.deliveries(DAY) == () and store.stories_for_edition(DAY) == ()
        store.add_stories([make_story(2)], NOW)
        assert [s.story_id for s in store.stories_for_edition(DAY)] == ["sha256:2"]


# Opening


def test_each_store_opened_is_counted_once(tmp_path: Path) -> None:
    """``SQLiteStore.opened`` counts the stores a process opened: how a test sees that a
    command opens its store once."""
    path = tmp_path / "d.db"
    before = SQLiteStore.opened
    SQLiteStore.open(path).close()
    assert SQLiteStore.opened == before + 1
    assert SQLiteStore.open_read_only(tmp_path / "missing.db") is None
    (tmp_path / "other.db").write_bytes(b"not a database at all, " * 512)
    with pytest.raises(StoreError):
        SQLiteStore.open_read_only(tmp_path / "other.db")
    assert SQLiteStore.opened == before + 1  # neither opened anything
    for store in (SQLiteStore.open_read_only(path), SQLiteStore.open_empty(tmp_path / "new.db")):
        assert store is not None
        store.close()
    assert SQLiteStore.opened == before + 3


def test_an_empty_store_reads_as_a_store_never_written_and_makes_no_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "new.db"
    source = FeedSource(url="https://example.org/feed", name="Example")
    with SQLiteStore.open_empty(path) as store:
        assert store.is_read_only
        assert store.feed_health([source]) == (FeedHealth(source=source),)
        assert store.deliveries(DAY) == () and store.latest_delivery_date() is None
        assert store.job_runs("collect") == () and store.last_activity() is None
        assert store.stories_for_edition(DAY) == () and store.edition(DAY) is None
        with pytest.raises(StoreError, match=f"{path}: the store cannot be written"):
            store.add_stories([make_story(1)], NOW)
    assert list(tmp_path.iterdir()) == []
