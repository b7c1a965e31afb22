"""The SQLite store: ``Store`` (digest.store) kept in one SQLite file.

WAL mode, named migrations applied in order (``digest.sqlite_migrations``), ``atomic()`` for
transactions (nested calls use savepoints). ``SQLiteStore.open`` and
``SQLiteStore.open_read_only`` are the only ways to build one. A read-only store is what
``digest preview`` and the read-only commands use: SQLite itself refuses any write, so a
preview cannot mark anything sent; on a read-only filesystem it reads the file as immutable.

Every SQLite failure leaves the store as a ``StoreError`` that names the file, says the cause
in words (a full disk, a lock held too long, a damaged file, ...) and what to do: the
connection is wrapped (``digest.sqlite_connection``), so no query can let a raw ``sqlite3``
error out. Its parts: the feeds (``digest.sqlite_feeds``), the delivery ledger and the send
lock (``digest.sqlite_ledger``), the subscribers (``digest.sqlite_subscribers``), the work
claims several processes share (``digest.sqlite_claims``), and here the
rest: stories, editions, caches, job runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from digest.errors import StoreError
from digest.models import (
    Article,
    CachedSummary,
    Embedding,
    JobRun,
    RenderedDigest,
    StoreCheck,
    Story,
)
from digest.sqlite_claims import SQLiteClaims
from digest.sqlite_connection import (
    Connection,
    connect,
    from_text,
    refuse_unmerged_wal,
    to_datetime,
    to_text,
)
from digest.sqlite_feeds import SQLiteFeeds
from digest.sqlite_ledger import SQLiteLedger
from digest.sqlite_migrations import MIGRATIONS, apply_migrations
from digest.sqlite_subscribers import SQLiteSubscribers
from digest.sqlite_web_limits import SQLiteWebLimits

if TYPE_CHECKING:
    from digest.store import Store

logger = logging.getLogger(__name__)


class SQLiteStore(SQLiteFeeds, SQLiteLedger, SQLiteSubscribers, SQLiteWebLimits, SQLiteClaims):
    """A connection to the store file, a ``Store``. Build with ``open`` or ``open_read_only``
    (or ``open_empty`` where there is no file yet)."""

    # How many stores this process has opened, of every kind: a test can count the opens of
    # one command (once per command or daemon job, so no SQLite connection crosses threads).
    opened: ClassVar[int] = 0

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        *,
        is_read_only: bool = False,
        busy_timeout: float = 30.0,
    ) -> None:
        self._conn = Connection(conn, path, busy_timeout)
        self.path = path
        self.is_read_only = is_read_only

    @classmethod
    def open(cls, path: Path, *, busy_timeout: float = 30.0) -> SQLiteStore:
        """Open (creating if needed) the store for reading and writing, migrated to the latest.

        A writer waits up to ``busy_timeout`` seconds for another process's transaction.
        """
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"{path}: cannot create its folder: {exc.strerror or exc}",
                path=path,
                hint="check [store].path in the settings and that its folder can be created",
            ) from exc
        conn = connect(path, busy_timeout)
        store = cls(conn, path, busy_timeout=busy_timeout)
        try:
            for pragma in ("journal_mode = WAL", "foreign_keys = ON", "synchronous = FULL"):
                store._conn.execute(f"PRAGMA {pragma}")
            store._migrate()
        except BaseException:
            store.close()
            raise
        SQLiteStore.opened += 1
        return store

    @classmethod
    def open_read_only(cls, path: Path, *, busy_timeout: float = 30.0) -> SQLiteStore | None:
        """Open an existing store so that no write is possible; None if there is none yet.

        Where its folder cannot be written (a read-only filesystem), SQLite cannot make the
        ``-shm`` index that reading a WAL store needs, so the file is read as immutable.
        """
        if not path.exists():
            return None
        try:
            return cls._open_read_only(path, "mode=ro", busy_timeout)
        except StoreError as exc:
            if os.access(path.parent, os.W_OK):
                raise
            refuse_unmerged_wal(path, exc)
            logger.debug(
                "%s: its folder is not writable (%s): reading it as immutable, which assumes"
                " nothing writes it, as on a read-only filesystem",
                path,
                exc.cause,
            )
        return cls._open_read_only(path, "mode=ro&immutable=1", busy_timeout)

    @classmethod
    def _open_read_only(cls, path: Path, flags: str, busy_timeout: float) -> SQLiteStore:
        conn = connect(path, busy_timeout, read_only_flags=flags)
        store = cls(conn, path, is_read_only=True, busy_timeout=busy_timeout)
        try:
            store._conn.execute("SELECT count(*) FROM migrations").fetchone()
        except BaseException:
            store.close()
            raise
        SQLiteStore.opened += 1
        return store

    @classmethod
    def open_empty(cls, path: Path) -> SQLiteStore:
        """A read-only store with nothing in it, standing for the one at ``path`` that does not
        exist yet (a read-only command before the first collect). It is in memory only: no
        file is made, and every write is refused as in ``open_read_only``."""
        store = cls(sqlite3.connect(":memory:", isolation_level=None), path, is_read_only=True)
        store._migrate()
        store._conn.execute("PRAGMA query_only = ON")
        SQLiteStore.opened += 1
        return store

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def atomic(self) -> contextlib.AbstractContextManager[None]:
        """A transaction; nested calls become savepoints. BEGIN IMMEDIATE takes the write lock."""
        return self._conn.atomic()

    def _migrate(self) -> None:
        apply_migrations(self._conn)

    def applied_migrations(self) -> tuple[str, ...]:
        rows = self._conn.execute("SELECT name FROM migrations ORDER BY name")
        return tuple(row[0] for row in rows)

    # Summaries

    def cached_summaries(
        self, model_id: str, text_hashes: Sequence[str]
    ) -> tuple[CachedSummary, ...]:
        """The stored summaries by this model of these texts."""
        if "m004_summary_cache" not in self.applied_migrations():
            return ()  # a read-only look at a store from before the cache
        rows = self._rows_for_hashes(
            "SELECT text_hash, summary FROM summaries WHERE model_id = ?", model_id, text_hashes
        )
        return tuple(CachedSummary(model_id=model_id, text_hash=r[0], text=r[1]) for r in rows)

    def save_summaries(self, summaries: Iterable[CachedSummary], now: datetime) -> None:
        """Keep summaries by model and text hash, so no run computes the same summary twice."""
        with self.atomic():
            self._conn.executemany(
                "INSERT OR REPLACE INTO summaries VALUES (?, ?, ?, ?)",
                [(s.model_id, s.text_hash, s.text, to_text(now)) for s in summaries],
            )

    # Embeddings

    def cached_embeddings(
        self, model_key: str, text_hashes: Sequence[str]
    ) -> tuple[Embedding, ...]:
        """The stored, intact vectors of these texts by this model (one whose length does
        not match its dimensions is left out, so it is computed again)."""
        if "m007_embedding_cache" not in self.applied_migrations():
            return ()  # a read-only look at a store from before the cache
        rows = self._rows_for_hashes(
            "SELECT text_hash, dimensions, vector FROM embeddings WHERE model_key = ?",
            model_key,
            text_hashes,
        )
        found = (
            Embedding(model_key=model_key, text_hash=r[0], dimensions=r[1], vector=bytes(r[2]))
            for r in rows
        )
        return tuple(e for e in found if e.is_whole)

    def _rows_for_hashes(self, query: str, key: str, text_hashes: Sequence[str]) -> Iterator[Any]:
        """The rows of ``query`` (one ``?`` for ``key``) whose text_hash is one of these, asked
        500 at a time: SQLite limits how many variables one statement may have."""
        for start in range(0, len(text_hashes), 500):
            chunk = text_hashes[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            yield from self._conn.execute(f"{query} AND text_hash IN ({marks})", (key, *chunk))

    def save_embeddings(self, embeddings: Iterable[Embedding], now: datetime) -> None:
        """Keep vectors by model and text hash, so no run embeds the same text twice."""
        with self.atomic():
            self._conn.executemany(
                "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?)",
                [
                    (e.model_key, e.text_hash, e.dimensions, e.vector, to_text(now))
                    for e in embeddings
                ],
            )

    # Full-text articles

    def article(self, url: str) -> Article | None:
        """The cached extraction of an article page, if it was fetched before."""
        row = self._conn.execute(
            "SELECT fetched_at, text, error, image_url FROM articles WHERE url = ?", (url,)
        ).fetchone()
        if row is None:
            return None
        return Article(
            url=url, fetched_at=from_text(row[0]), text=row[1], error=row[2], image_url=row[3]
        )

    def save_articles(self, articles: Iterable[Article]) -> None:
        with self.atomic():
            self._conn.executemany(
                "INSERT OR REPLACE INTO articles (url, fetched_at, text, error, image_url)"
                " VALUES (?, ?, ?, ?, ?)",
                [(a.url, to_text(a.fetched_at), a.text, a.error, a.image_url) for a in articles],
            )

    # Stories

    def add_stories(self, stories: Iterable[Story], seen_at: datetime) -> int:
        """Store stories not seen before (same id or same link); return how many were new."""
        added = 0
        with self.atomic():
            for story in stories:
                if self.has_story(story):
                    continue
                self._conn.execute(
                    "INSERT INTO stories (story_id, feed_url, source_name, category, url, title,"
                    " published_at, author, text, html, first_seen_at, categories, text_source,"
                    " is_deduped, language, image_url)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        story.story_id,
                        story.feed_url,
                        story.source_name,
                        story.category,
                        story.url,
                        story.title,
                        to_text(story.published_at),
                        story.author,
                        story.text,
                        story.html,
                        to_text(seen_at),
                        json.dumps(story.categories, ensure_ascii=False),
                        story.text_source,
                        int(story.is_deduped),
                        story.language,
                        story.image_url,
                    ),
                )
                added += 1
        return added

    def has_story(self, story: Story) -> bool:
        """Is this story (same id or same link) stored already?"""
        row = self._conn.execute(
            "SELECT 1 FROM stories WHERE story_id = ? OR url = ? LIMIT 1",
            (story.story_id, story.url),
        ).fetchone()
        return row is not None

    def stories_for_edition(self, edition_on: date) -> tuple[Story, ...]:
        """Stories not yet in any sent edition, plus those already assigned to this one."""
        rows = self._conn.execute(
            "SELECT story_id, feed_url, source_name, category, url, title, published_at,"
            " author, text, html, categories, text_source, is_deduped, first_seen_at,"
            " language, image_url FROM stories"
            " WHERE edition_on IS NULL OR edition_on = ?"
            " ORDER BY first_seen_at, story_id",
            (edition_on.isoformat(),),
        )
        return tuple(
            Story(
                story_id=r[0],
                feed_url=r[1],
                source_name=r[2],
                category=r[3],
                url=r[4],
                title=r[5],
                published_at=to_datetime(r[6]),
                author=r[7],
                text=r[8],
                html=r[9],
                categories=tuple(json.loads(r[10])),
                text_source=r[11],
                is_deduped=bool(r[12]),
                first_seen_at=to_datetime(r[13]),
                language=r[14],
                image_url=r[15],
            )
            for r in rows
        )

    # Editions (their delivery ledger: digest.sqlite_ledger)

    def edition(self, edition_on: date) -> RenderedDigest | None:
        row = self._conn.execute(
            "SELECT subject, html, text FROM editions WHERE edition_on = ?",
            (edition_on.isoformat(),),
        ).fetchone()
        if row is None:
            return None
        return RenderedDigest(edition_on=edition_on, subject=row[0], html=row[1], text=row[2])

    def edition_subjects(self) -> tuple[tuple[date, str], ...]:
        """Every archived edition's date and subject line, newest first."""
        rows = self._conn.execute(
            "SELECT edition_on, subject FROM editions ORDER BY edition_on DESC"
        ).fetchall()
        return tuple((date.fromisoformat(day), subject) for day, subject in rows)

    def create_edition(
        self, rendered: RenderedDigest, story_ids: Sequence[str], created_at: datetime
    ) -> None:
        """Archive the edition as rendered and assign its stories to it, in one transaction."""
        day = rendered.edition_on.isoformat()
        with self.atomic():
            self._conn.execute(
                "INSERT INTO editions VALUES (?, ?, ?, ?, ?)",
                (day, rendered.subject, rendered.html, rendered.text, to_text(created_at)),
            )
            self._conn.executemany(
                "UPDATE stories SET edition_on = ? WHERE story_id = ?",
                [(day, story_id) for story_id in story_ids],
            )

    def previous_edition_at(self, edition_on: date) -> datetime | None:
        """When the latest edition of a day before ``edition_on`` was archived."""
        row = self._conn.execute(
            "SELECT created_at FROM editions WHERE edition_on < ? ORDER BY edition_on DESC LIMIT 1",
            (edition_on.isoformat(),),
        ).fetchone()
        return from_text(row[0]) if row else None

    def latest_edition_on(self) -> date | None:
        """The day of the most recent edition archived."""
        row = self._conn.execute("SELECT max(edition_on) FROM editions").fetchone()
        return date.fromisoformat(row[0]) if row[0] else None

    # The daemon's job runs

    def add_job_run(self, run: JobRun) -> None:
        """Record one job run (one commit)."""
        with self.atomic():
            self._insert_job_run("INSERT", run)

    def add_missed_edition(self, run: JobRun) -> bool:
        """Record an edition skipped after the grace; False if that day's miss is recorded."""
        with self.atomic():
            return self._insert_job_run("INSERT OR IGNORE", run) == 1

    def _insert_job_run(self, verb: str, run: JobRun) -> int:
        return self._conn.execute(
            f"{verb} INTO job_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run.job,
                to_text(run.started_at),
                to_text(run.finished_at),
                run.outcome,
                run.summary,
                json.dumps(run.failures, ensure_ascii=False),
                run.edition_on.isoformat() if run.edition_on else None,
                to_text(run.scheduled_at),
            ),
        ).rowcount

    def job_runs(
        self, job: str, *, limit: int = 1, outcome: str | None = None
    ) -> tuple[JobRun, ...]:
        """The most recent runs of a job (of one outcome, if given), newest first."""
        if not self.has_schedule_tables:
            return ()
        rows = self._conn.execute(
            "SELECT job, started_at, finished_at, outcome, summary, failures, edition_on,"
            " scheduled_at FROM job_runs WHERE job = ? AND (? IS NULL OR outcome = ?)"
            " ORDER BY started_at DESC, rowid DESC LIMIT ?",
            (job, outcome, outcome, limit),
        )
        return tuple(
            JobRun(
                job=r[0],
                started_at=from_text(r[1]),
                finished_at=from_text(r[2]),
                outcome=r[3],
                summary=r[4],
                failures=tuple(json.loads(r[5])),
                edition_on=date.fromisoformat(r[6]) if r[6] else None,
                scheduled_at=to_datetime(r[7]),
            )
            for r in rows
        )

    def last_activity(self) -> datetime | None:
        """When a job last ran or an edition was last archived: where the daemon left off."""
        times = [self._conn.execute("SELECT max(created_at) FROM editions").fetchone()[0]]
        if self.has_schedule_tables:
            times.append(self._conn.execute("SELECT max(started_at) FROM job_runs").fetchone()[0])
        known = [from_text(t) for t in times if t]
        return max(known) if known else None


def check_store(path: Path, busy_timeout: float) -> StoreCheck:
    """The SQLite library's version and the store file's migrations, read without writing."""
    found = StoreCheck(engine="SQLite", location=str(path), version=sqlite3.sqlite_version)
    everything = tuple(name for name, _ in MIGRATIONS)
    try:
        store = SQLiteStore.open_read_only(path, busy_timeout=busy_timeout)
    except StoreError as exc:
        return replace(found, problem=str(exc))
    if store is None:
        return replace(found, exists=False, pending=everything)
    with store:
        applied = store.applied_migrations()
    pending = tuple(name for name in everything if name not in applied)
    return replace(found, applied=applied, pending=pending)


if TYPE_CHECKING:
    _is_a_store: type[Store] = SQLiteStore  # mypy checks here that it keeps to the protocol
