"""The SQLite store's schema: named migrations, applied in order by ``SQLiteStore.open``,
each in the same transaction as its record in the ``migrations`` table (as sqlite-utils and llm
name theirs). A migration is never edited once released: a change is a new one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

from digest.sqlite_connection import Connection, to_text


def _run_each(conn: sqlite3.Connection, script: str) -> None:
    # Not executescript(): it commits first, which would split a migration from its record.
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _m001_initial(conn: sqlite3.Connection) -> None:
    _run_each(
        conn,
        """
        CREATE TABLE feeds (
            url TEXT PRIMARY KEY,
            name TEXT,
            etag TEXT,
            last_modified TEXT,
            last_success_at TEXT,
            last_error_at TEXT,
            last_error TEXT
        );
        CREATE TABLE stories (
            story_id TEXT PRIMARY KEY,
            feed_url TEXT NOT NULL,
            source_name TEXT NOT NULL,
            category TEXT,
            url TEXT NOT NULL,
            title TEXT NOT NULL,
            published_at TEXT,
            author TEXT,
            text TEXT NOT NULL,
            html TEXT NOT NULL,
            first_seen_at TEXT NOT NULL,
            edition_on TEXT
        );
        CREATE INDEX stories_by_edition ON stories (edition_on, first_seen_at);
        CREATE INDEX stories_by_url ON stories (url);
        CREATE TABLE editions (
            edition_on TEXT PRIMARY KEY,
            subject TEXT NOT NULL,
            html TEXT NOT NULL,
            text TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE deliveries (
            edition_on TEXT NOT NULL REFERENCES editions (edition_on),
            address TEXT NOT NULL,
            recipient TEXT NOT NULL,
            message_id TEXT NOT NULL,
            state TEXT NOT NULL
                CHECK (state IN ('pending', 'sending', 'sent', 'failed')),
            sent_at TEXT,
            detail TEXT,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (edition_on, address)
        );
        """,
    )


def _m002_feed_health_and_articles(conn: sqlite3.Connection) -> None:
    _run_each(
        conn,
        """
        ALTER TABLE feeds ADD COLUMN fetch_url TEXT;
        ALTER TABLE feeds ADD COLUMN is_gone INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE feeds ADD COLUMN last_error_kind TEXT;
        CREATE TABLE feed_errors (
            feed_url TEXT NOT NULL,
            failed_at TEXT NOT NULL,
            kind TEXT NOT NULL,
            message TEXT NOT NULL
        );
        CREATE INDEX feed_errors_by_feed ON feed_errors (feed_url, failed_at);
        ALTER TABLE stories ADD COLUMN categories TEXT NOT NULL DEFAULT '[]';
        ALTER TABLE stories ADD COLUMN text_source TEXT NOT NULL DEFAULT 'feed';
        ALTER TABLE stories ADD COLUMN is_deduped INTEGER NOT NULL DEFAULT 1;
        CREATE INDEX stories_by_feed ON stories (feed_url);
        CREATE TABLE articles (
            url TEXT PRIMARY KEY,
            fetched_at TEXT NOT NULL,
            text TEXT,
            error TEXT
        );
        """,
    )


def _m003_feed_body_hash(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE feeds ADD COLUMN body_hash TEXT")


def _m004_summary_cache(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE summaries (model_id TEXT NOT NULL, text_hash TEXT NOT NULL,"
        " summary TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (model_id, text_hash))"
    )


def _m005_delivery_attempts(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE deliveries ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")


def _m006_schedule(conn: sqlite3.Connection) -> None:
    _run_each(
        conn,
        """
        ALTER TABLE feeds ADD COLUMN ttl_minutes INTEGER;
        ALTER TABLE feeds ADD COLUMN not_before TEXT;
        ALTER TABLE feeds ADD COLUMN hold_reason TEXT;
        CREATE TABLE job_runs (
            job TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT NOT NULL,
            outcome TEXT NOT NULL,
            summary TEXT NOT NULL,
            failures TEXT NOT NULL,
            edition_on TEXT,
            scheduled_at TEXT
        );
        CREATE INDEX job_runs_by_job ON job_runs (job, started_at);
        CREATE UNIQUE INDEX one_missed_edition_a_day ON job_runs (edition_on)
            WHERE outcome = 'missed'
        """,
    )


def _m007_embedding_cache(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE embeddings (model_key TEXT NOT NULL, text_hash TEXT NOT NULL,"
        " dimensions INTEGER NOT NULL, vector BLOB NOT NULL, created_at TEXT NOT NULL,"
        " PRIMARY KEY (model_key, text_hash))"
    )


def _m008_story_language_and_image(conn: sqlite3.Connection) -> None:
    _run_each(
        conn,
        """
        ALTER TABLE stories ADD COLUMN language TEXT;
        ALTER TABLE stories ADD COLUMN image_url TEXT
        """,
    )


def _m009_article_image(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE articles ADD COLUMN image_url TEXT")


def _m010_subscribers(conn: sqlite3.Connection) -> None:
    # NOCASE: addresses are ASCII (checked before they get here), compared case-insensitively
    # as the ledger compares them, and kept as given.
    _run_each(
        conn,
        """
        CREATE TABLE subscribers (
            subscriber_id TEXT PRIMARY KEY,
            list_slug TEXT NOT NULL,
            address TEXT NOT NULL COLLATE NOCASE,
            name TEXT,
            state TEXT NOT NULL
                CHECK (state IN ('pending', 'active', 'unsubscribed', 'bounced')),
            created_at TEXT NOT NULL,
            state_changed_at TEXT NOT NULL,
            how TEXT NOT NULL,
            reason TEXT,
            bounce_count INTEGER NOT NULL DEFAULT 0,
            last_bounce_on TEXT,
            UNIQUE (list_slug, address)
        );
        CREATE INDEX subscribers_by_state ON subscribers (list_slug, state)
        """,
    )


def _m011_web_requests(conn: sqlite3.Connection) -> None:
    # What `digest web` counts for its limits; rows older than a limit's window are deleted
    # as the next request for the same key is counted.
    _run_each(
        conn,
        """
        CREATE TABLE web_requests (kind TEXT NOT NULL, key TEXT NOT NULL, at TEXT NOT NULL);
        CREATE INDEX web_requests_by_key ON web_requests (kind, key, at)
        """,
    )


def _m012_delivery_leases(conn: sqlite3.Connection) -> None:
    # The ledger as a work queue: a row is leased to one sender until ``lease_until``, a
    # julianday() on SQLite's own clock, so senders never compare their clocks.
    _run_each(
        conn,
        """
        ALTER TABLE deliveries ADD COLUMN leased_by TEXT;
        ALTER TABLE deliveries ADD COLUMN lease_until REAL;
        CREATE INDEX deliveries_by_state ON deliveries (edition_on, state);
        CREATE INDEX deliveries_by_lease ON deliveries (leased_by)
        """,
    )


def _m013_work_claims(conn: sqlite3.Connection) -> None:
    # Times here are seconds since the epoch by SQLite's clock: a lease is measured on the
    # store's clock, never on a process's.
    _run_each(
        conn,
        """
        CREATE TABLE feed_host_claims (
            host TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            expires_at REAL NOT NULL
        );
        CREATE TABLE summary_claims (
            model_id TEXT NOT NULL,
            text_hash TEXT NOT NULL,
            holder TEXT NOT NULL,
            expires_at REAL NOT NULL,
            PRIMARY KEY (model_id, text_hash)
        )
        """,
    )


MIGRATIONS: tuple[tuple[str, Callable[[sqlite3.Connection], None]], ...] = (
    ("m001_initial", _m001_initial),
    ("m002_feed_health_and_articles", _m002_feed_health_and_articles),
    ("m003_feed_body_hash", _m003_feed_body_hash),
    ("m004_summary_cache", _m004_summary_cache),
    ("m005_delivery_attempts", _m005_delivery_attempts),
    ("m006_schedule", _m006_schedule),
    ("m007_embedding_cache", _m007_embedding_cache),
    ("m008_story_language_and_image", _m008_story_language_and_image),
    ("m009_article_image", _m009_article_image),
    ("m010_subscribers", _m010_subscribers),
    ("m011_web_requests", _m011_web_requests),
    ("m012_delivery_leases", _m012_delivery_leases),
    ("m013_work_claims", _m013_work_claims),
)


def apply_migrations(conn: Connection) -> None:
    """Apply the migrations not applied yet, in order, each with its record in one commit."""
    conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    done = {row[0] for row in conn.execute("SELECT name FROM migrations")}
    for name, migration in MIGRATIONS:
        if name in done:
            continue
        with conn.atomic():
            # Asked again under the write lock: another process opening the store at the
            # same moment may have applied it since ``done`` was read.
            if conn.execute("SELECT 1 FROM migrations WHERE name = ?", (name,)).fetchone():
                continue
            migration(conn.raw)
            conn.execute("INSERT INTO migrations VALUES (?, ?)", (name, to_text(datetime.now(UTC))))
