"""What is particular to the SQLite store: its file (WAL, migrations), SQLite's locks, a
look at a store an older digest wrote, and how its transactions meet SQLite's own rollbacks.
What every store does is tests/test_store.py."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.errors import StoreError
from digest.models import Story
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


def test_read_only_store_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    SQLiteStore.open(path).close()
    assert SQLiteStore.open_read_only(tmp_path / "missing.db") is None
    store = SQLiteStore.open_read_only(path)
    assert store is not None
    with store, pytest.raises(StoreError, match="readonly"):
        store.add_stories([_story(1)], NOW)


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
            store.add_stories([_story(1)], NOW)
        assert "database is locked" in str(caught.value)
        assert "another digest process" in str(caught.value)
    finally:
        other.execute("ROLLBACK")
        other.close()


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
