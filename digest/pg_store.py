"""The PostgreSQL store: ``Store`` (digest.store) kept in a PostgreSQL database, for a store
that several processes or machines share.

Named migrations applied in order under an advisory lock (``digest.pg_migrations``),
``atomic()`` for transactions (nested calls use savepoints). ``PostgresStore.open`` and
``PostgresStore.open_read_only`` are the only ways to build one. A read-only store's sessions
have ``default_transaction_read_only`` on, so the server itself refuses any write: a preview
cannot mark anything sent.

Every psycopg failure leaves the store as a ``StoreError`` that names the server, says the
cause in words and what to do (``digest.pg_connection``). Its parts: the feeds
(``digest.pg_feeds``), the delivery ledger and the send lock (``digest.pg_ledger``), the
subscribers (``digest.pg_subscribers``), the web limits (``digest.pg_web_limits``), and here
the rest: stories, editions, caches, job runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import date, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

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
from digest.pg_connection import Connection, open_connection, server_name, session_conninfo
from digest.pg_feeds import PostgresFeeds
from digest.pg_ledger import PostgresLedger
from digest.pg_migrations import applied_migrations, apply_migrations, pending_migrations
from digest.pg_subscribers import PostgresSubscribers
from digest.pg_web_limits import PostgresWebLimits

if TYPE_CHECKING:
    from digest.store import Store

_STORY_COLUMNS = (
    "story_id, feed_url, source_name, category, url, title, published_at, author, text, html,"
    " categories, text_source, is_deduped, language, image_url, first_seen_at"
)
_JOB_RUN_COLUMNS = (
    "job, started_at, finished_at, outcome, summary, failures, edition_on, scheduled_at"
)


class PostgresStore(PostgresFeeds, PostgresLedger, PostgresSubscribers, PostgresWebLimits):
    """A session on the store's database, a ``Store``. Build with ``open`` or
    ``open_read_only``."""

    def __init__(self, conn: Connection, session: str, *, is_read_only: bool) -> None:
        self._conn = conn
        self.session = session
        self.server = conn.server
        self.is_read_only = is_read_only

    @classmethod
    def open(cls, url: str, *, lock_timeout: float = 30.0) -> PostgresStore:
        """Open the store at ``url`` for reading and writing, migrated to the latest (its
        tables are made on first use). A write waits up to ``lock_timeout`` seconds for
        another session's lock."""
        session = session_conninfo(url, is_read_only=False, lock_timeout=lock_timeout)
        store = cls(open_connection(session), session, is_read_only=False)
        try:
            apply_migrations(store._conn)
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def open_read_only(cls, url: str, *, lock_timeout: float = 30.0) -> PostgresStore | None:
        """Open the store at ``url`` so that no write is possible; None if it has no tables
        yet."""
        session = session_conninfo(url, is_read_only=True, lock_timeout=lock_timeout)
        store = cls(open_connection(session), session, is_read_only=True)
        if not store.applied_migrations():
            store.close()
            return None
        return store

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def atomic(self) -> contextlib.AbstractContextManager[None]:
        """A transaction; nested calls become savepoints."""
        return self._conn.atomic()

    def applied_migrations(self) -> tuple[str, ...]:
        return applied_migrations(self._conn)

    # Caches

    def cached_summaries(
        self, model_id: str, text_hashes: Sequence[str]
    ) -> tuple[CachedSummary, ...]:
        """The stored summaries by this model of these texts."""
        rows = self._conn.execute(
            "SELECT text_hash, summary FROM summaries WHERE model_id = %s AND text_hash = ANY(%s)",
            (model_id, list(text_hashes)),
        )
        return tuple(CachedSummary(model_id=model_id, text_hash=r[0], text=r[1]) for r in rows)

    def save_summaries(self, summaries: Iterable[CachedSummary], now: datetime) -> None:
        """Keep summaries by model and text hash, so no run computes the same summary twice."""
        with self.atomic():
            self._conn.executemany(
                "INSERT INTO summaries (model_id, text_hash, summary, created_at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (model_id, text_hash) DO UPDATE"
                " SET summary = excluded.summary, created_at = excluded.created_at",
                [(s.model_id, s.text_hash, s.text, now) for s in summaries],
            )

    def cached_embeddings(
        self, model_key: str, text_hashes: Sequence[str]
    ) -> tuple[Embedding, ...]:
        """The stored, intact vectors of these texts by this model (one whose length does
        not match its dimensions is left out, so it is computed again)."""
        rows = self._conn.execute(
            "SELECT text_hash, dimensions, vector FROM embeddings"
            " WHERE model_key = %s AND text_hash = ANY(%s)",
            (model_key, list(text_hashes)),
        )
        found = (
            Embedding(model_key=model_key, text_hash=r[0], dimensions=r[1], vector=bytes(r[2]))
            for r in rows
        )
        return tuple(e for e in found if e.is_whole)

    def save_embeddings(self, embeddings: Iterable[Embedding], now: datetime) -> None:
        """Keep vectors by model and text hash, so no run embeds the same text twice."""
        with self.atomic():
            self._conn.executemany(
                "INSERT INTO embeddings (model_key, text_hash, dimensions, vector, created_at)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (model_key, text_hash) DO UPDATE"
                " SET dimensions = excluded.dimensions, vector = excluded.vector,"
                " created_at = excluded.created_at",
                [(e.model_key, e.text_hash, e.dimensions, e.vector, now) for e in embeddings],
            )

    def article(self, url: str) -> Article | None:
        """The cached extraction of an article page, if it was fetched before."""
        row = self._conn.execute(
            "SELECT fetched_at, text, error, image_url FROM articles WHERE url = %s", (url,)
        ).fetchone()
        if row is None:
            return None
        return Article(url=url, fetched_at=row[0], text=row[1], error=row[2], image_url=row[3])

    def save_articles(self, articles: Iterable[Article]) -> None:
        with self.atomic():
            self._conn.executemany(
                "INSERT INTO articles (url, fetched_at, text, error, image_url)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (url) DO UPDATE"
                " SET fetched_at = excluded.fetched_at, text = excluded.text,"
                " error = excluded.error, image_url = excluded.image_url",
                [(a.url, a.fetched_at, a.text, a.error, a.image_url) for a in articles],
            )

    # Stories

    def add_stories(self, stories: Iterable[Story], seen_at: datetime) -> int:
        """Store stories not seen before (same id or same link: both unique), pipelined in one
        transaction; return how many were new."""
        with self.atomic():
            return self._conn.executemany(
                f"INSERT INTO stories ({_STORY_COLUMNS}) VALUES"
                " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                [(*_story_values(story), seen_at) for story in stories],
            )

    def has_story(self, story: Story) -> bool:
        """Is this story (same id or same link) stored already?"""
        row = self._conn.execute(
            "SELECT EXISTS (SELECT 1 FROM stories WHERE story_id = %s OR url = %s)",
            (story.story_id, story.url),
        ).fetchone()
        return bool(row[0])

    def stories_for_edition(self, edition_on: date) -> tuple[Story, ...]:
        """Stories not yet in any sent edition, plus those already assigned to this one."""
        rows = self._conn.execute(
            f"SELECT {_STORY_COLUMNS} FROM stories WHERE edition_on IS NULL OR edition_on = %s"
            " ORDER BY first_seen_at, story_id",
            (edition_on,),
        )
        return tuple(_story(row) for row in rows)

    # Editions (their delivery ledger: digest.pg_ledger)

    def edition(self, edition_on: date) -> RenderedDigest | None:
        row = self._conn.execute(
            "SELECT subject, html, text FROM editions WHERE edition_on = %s", (edition_on,)
        ).fetchone()
        if row is None:
            return None
        return RenderedDigest(edition_on=edition_on, subject=row[0], html=row[1], text=row[2])

    def edition_subjects(self) -> tuple[tuple[date, str], ...]:
        """Every archived edition's date and subject line, newest first."""
        rows = self._conn.execute("SELECT edition_on, subject FROM editions ORDER BY 1 DESC")
        return tuple((day, subject) for day, subject in rows)

    def create_edition(
        self, rendered: RenderedDigest, story_ids: Sequence[str], created_at: datetime
    ) -> None:
        """Archive the edition as rendered and assign its stories to it, in one transaction."""
        day = rendered.edition_on
        with self.atomic():
            self._conn.execute(
                "INSERT INTO editions (edition_on, subject, html, text, created_at)"
                " VALUES (%s, %s, %s, %s, %s)",
                (day, rendered.subject, rendered.html, rendered.text, created_at),
            )
            self._conn.execute(
                "UPDATE stories SET edition_on = %s WHERE story_id = ANY(%s)",
                (day, list(story_ids)),
            )

    def previous_edition_at(self, edition_on: date) -> datetime | None:
        """When the latest edition of a day before ``edition_on`` was archived."""
        row = self._conn.execute(
            "SELECT created_at FROM editions WHERE edition_on < %s"
            " ORDER BY edition_on DESC LIMIT 1",
            (edition_on,),
        ).fetchone()
        return row[0] if row else None

    def latest_edition_on(self) -> date | None:
        """The day of the most recent edition archived."""
        day: date | None = self._conn.execute("SELECT max(edition_on) FROM editions").fetchone()[0]
        return day

    # The daemon's job runs

    def add_job_run(self, run: JobRun) -> None:
        """Record one job run (one commit)."""
        with self.atomic():
            self._insert_job_run(run, "")

    def add_missed_edition(self, run: JobRun) -> bool:
        """Record an edition skipped after the grace; False if that day's miss is recorded."""
        with self.atomic():
            added = self._insert_job_run(
                run, " ON CONFLICT (edition_on) WHERE outcome = 'missed' DO NOTHING"
            )
        return added == 1

    def _insert_job_run(self, run: JobRun, on_conflict: str) -> int:
        return int(
            self._conn.execute(
                f"INSERT INTO job_runs ({_JOB_RUN_COLUMNS})"
                f" VALUES (%s, %s, %s, %s, %s, %s, %s, %s){on_conflict}",
                (
                    run.job,
                    run.started_at,
                    run.finished_at,
                    run.outcome,
                    run.summary,
                    list(run.failures),
                    run.edition_on,
                    run.scheduled_at,
                ),
            ).rowcount
        )

    def job_runs(
        self, job: str, *, limit: int = 1, outcome: str | None = None
    ) -> tuple[JobRun, ...]:
        """The most recent runs of a job (of one outcome, if given), newest first."""
        rows = self._conn.execute(
            f"SELECT {_JOB_RUN_COLUMNS} FROM job_runs"
            " WHERE job = %s AND (%s::text IS NULL OR outcome = %s)"
            " ORDER BY started_at DESC, seq DESC LIMIT %s",
            (job, outcome, outcome, limit),
        )
        return tuple(_job_run(row) for row in rows)

    def last_activity(self) -> datetime | None:
        """When a job last ran or an edition was last archived: where the daemon left off."""
        row = self._conn.execute(
            "SELECT greatest((SELECT max(created_at) FROM editions),"
            " (SELECT max(started_at) FROM job_runs))"
        ).fetchone()
        moment: datetime | None = row[0]
        return moment


def check_store(url: str) -> StoreCheck:
    """The server's version and the store's migrations, read without writing anything."""
    session = session_conninfo(url, is_read_only=True, lock_timeout=30.0)
    found = StoreCheck(engine="PostgreSQL", location=server_name(url))
    try:
        conn = open_connection(session)
    except StoreError as exc:
        return replace(found, problem=str(exc))
    try:
        version = conn.execute("SHOW server_version").fetchone()[0]
        applied = applied_migrations(conn)
        pending = pending_migrations(conn)
    except StoreError as exc:
        return replace(found, problem=str(exc))
    finally:
        conn.close()
    return replace(found, version=version, exists=bool(applied), applied=applied, pending=pending)


def _story_values(story: Story) -> tuple[Any, ...]:
    return (
        story.story_id,
        story.feed_url,
        story.source_name,
        story.category,
        story.url,
        story.title,
        story.published_at,
        story.author,
        story.text,
        story.html,
        list(story.categories),
        story.text_source,
        story.is_deduped,
        story.language,
        story.image_url,
    )


def _story(row: Any) -> Story:
    return Story(
        story_id=row[0],
        feed_url=row[1],
        source_name=row[2],
        category=row[3],
        url=row[4],
        title=row[5],
        published_at=row[6],
        author=row[7],
        text=row[8],
        html=row[9],
        categories=tuple(row[10]),
        text_source=row[11],
        is_deduped=row[12],
        language=row[13],
        image_url=row[14],
        first_seen_at=row[15],
    )


def _job_run(row: Any) -> JobRun:
    return JobRun(
        job=row[0],
        started_at=row[1],
        finished_at=row[2],
        outcome=row[3],
        summary=row[4],
        failures=tuple(row[5]),
        edition_on=row[6],
        scheduled_at=row[7],
    )


if TYPE_CHECKING:
    _is_a_store: type[Store] = PostgresStore  # mypy checks here that it keeps to the protocol
