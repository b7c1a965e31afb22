"""The PostgreSQL store's schema: named migrations, applied in order by ``PostgresStore.open``,
each in the same transaction as its record in the ``migrations`` table. A migration is never
edited once released: a change is a new one.

The logical schema is the SQLite store's (``digest.sqlite_migrations``) in PostgreSQL's own
types: ``timestamptz`` and ``date`` for times and days, ``boolean``, ``text[]`` for lists,
``bytea`` for vectors, and a ``bigint`` identity where SQLite keeps rows in ``rowid`` order.
Tables go in the session's current schema (the first of its search_path). Two processes that
open a new store at once migrate it once: the migrations run under an advisory lock.
"""

from __future__ import annotations

from digest.pg_connection import Connection

# pg_advisory_lock(_LOCKS, hashtext(current_schema())): one store per schema, so stores in
# two schemas of a database never wait for each other. The send lock uses _LOCKS + 1.
MIGRATION_LOCK = 0x6D696772  # "migr"

_M001_INITIAL = """
CREATE TABLE feeds (
    url text PRIMARY KEY,
    name text,
    fetch_url text,
    etag text,
    last_modified text,
    body_hash text,
    is_gone boolean NOT NULL DEFAULT false,
    last_success_at timestamptz,
    last_error_at timestamptz,
    last_error text,
    last_error_kind text,
    ttl_minutes integer,
    not_before timestamptz,
    hold_reason text
);
CREATE INDEX feeds_held ON feeds (not_before) WHERE not_before IS NOT NULL;
CREATE TABLE feed_errors (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    feed_url text NOT NULL,
    failed_at timestamptz NOT NULL,
    kind text NOT NULL,
    message text NOT NULL
);
CREATE INDEX feed_errors_by_feed ON feed_errors (feed_url, failed_at);
CREATE TABLE stories (
    story_id text PRIMARY KEY,
    feed_url text NOT NULL,
    source_name text NOT NULL,
    category text,
    categories text[] NOT NULL DEFAULT '{}',
    url text NOT NULL,
    title text NOT NULL,
    published_at timestamptz,
    author text,
    text text NOT NULL,
    html text NOT NULL,
    text_source text NOT NULL DEFAULT 'feed',
    is_deduped boolean NOT NULL DEFAULT true,
    language text,
    image_url text,
    first_seen_at timestamptz NOT NULL,
    edition_on date
);
CREATE INDEX stories_by_edition ON stories (edition_on, first_seen_at);
-- One story per link (as SQLite's add_stories keeps it), also for two collectors at once.
CREATE UNIQUE INDEX stories_by_url ON stories (url);
CREATE INDEX stories_by_feed ON stories (feed_url);
CREATE TABLE editions (
    edition_on date PRIMARY KEY,
    subject text NOT NULL,
    html text NOT NULL,
    text text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE TABLE deliveries (
    seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    edition_on date NOT NULL REFERENCES editions (edition_on),
    address text NOT NULL,
    recipient text NOT NULL,
    message_id text NOT NULL,
    state text NOT NULL CHECK (state IN ('pending', 'sending', 'sent', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    sent_at timestamptz,
    detail text,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (edition_on, address)
);
CREATE INDEX deliveries_sent ON deliveries (sent_at) WHERE state = 'sent';
CREATE TABLE send_lock_holder (
    backend_pid integer PRIMARY KEY,
    pid integer NOT NULL,
    command text NOT NULL,
    since_at timestamptz NOT NULL
);
CREATE TABLE articles (
    url text PRIMARY KEY,
    fetched_at timestamptz NOT NULL,
    text text,
    error text,
    image_url text
);
CREATE TABLE summaries (
    model_id text NOT NULL,
    text_hash text NOT NULL,
    summary text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (model_id, text_hash)
);
CREATE TABLE embeddings (
    model_key text NOT NULL,
    text_hash text NOT NULL,
    dimensions integer NOT NULL,
    vector bytea NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (model_key, text_hash)
);
CREATE TABLE job_runs (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job text NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    outcome text NOT NULL,
    summary text NOT NULL,
    failures text[] NOT NULL,
    edition_on date,
    scheduled_at timestamptz
);
CREATE INDEX job_runs_by_job ON job_runs (job, started_at);
CREATE UNIQUE INDEX one_missed_edition_a_day ON job_runs (edition_on) WHERE outcome = 'missed';
CREATE TABLE subscribers (
    seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    subscriber_id text PRIMARY KEY,
    list_slug text NOT NULL,
    address text NOT NULL,
    name text,
    state text NOT NULL CHECK (state IN ('pending', 'active', 'unsubscribed', 'bounced')),
    created_at timestamptz NOT NULL,
    state_changed_at timestamptz NOT NULL,
    how text NOT NULL,
    reason text,
    bounce_count integer NOT NULL DEFAULT 0,
    last_bounce_on date
);
-- Addresses are ASCII (checked before they get here) and compared case-insensitively, as
-- the ledger compares them; kept as given.
CREATE UNIQUE INDEX subscribers_by_address ON subscribers (list_slug, lower(address));
CREATE INDEX subscribers_by_state ON subscribers (list_slug, state);
CREATE TABLE web_requests (kind text NOT NULL, key text NOT NULL, at timestamptz NOT NULL);
CREATE INDEX web_requests_by_key ON web_requests (kind, key, at)
"""

MIGRATIONS: tuple[tuple[str, str], ...] = (("m001_initial", _M001_INITIAL),)


def applied_migrations(conn: Connection) -> tuple[str, ...]:
    """The names of the migrations applied to the store in the session's schema (none if it
    has no ``migrations`` table yet)."""
    if conn.execute("SELECT to_regclass('migrations')").fetchone()[0] is None:
        return ()
    return tuple(row[0] for row in conn.execute("SELECT name FROM migrations ORDER BY name"))


def pending_migrations(conn: Connection) -> tuple[str, ...]:
    """The names of the migrations not applied yet, in the order they would be."""
    done = set(applied_migrations(conn))
    return tuple(name for name, _ in MIGRATIONS if name not in done)


def apply_migrations(conn: Connection) -> None:
    """Apply the migrations not applied yet, in order, each with its record in one commit,
    holding the store's migration lock so that two processes starting at once migrate once."""
    if not pending_migrations(conn):
        return
    lock = (MIGRATION_LOCK,)
    conn.execute("SELECT pg_advisory_lock(%s, hashtext(current_schema()))", lock)
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS migrations"
            " (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        # Asked again under the lock: another process may have applied them since.
        for name, script in MIGRATIONS:
            if name in pending_migrations(conn):
                with conn.atomic():
                    conn.execute(script)
                    conn.execute("INSERT INTO migrations (name) VALUES (%s)", (name,))
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s, hashtext(current_schema()))", lock)
