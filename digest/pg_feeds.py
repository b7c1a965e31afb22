"""The PostgreSQL store's feeds: what it remembers of each feed between fetches (validators,
a permanent new address, 410 Gone, politeness holds) and its failures, for ``digest feeds``
and ``digest status``.

``PostgresFeeds`` is the feeds' part of ``PostgresStore``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from digest.models import FeedFailure, FeedHealth, FeedSource, FeedState, FetchFailure, FetchResult
from digest.pg_connection import Connection

_STATE_COLUMNS = (
    "url, etag, last_modified, last_success_at, last_error_at, last_error, fetch_url, is_gone,"
    " body_hash, ttl_minutes, not_before, hold_reason"
)


def _feed_state(row: Any) -> FeedState:
    return FeedState(
        url=row[0],
        etag=row[1],
        last_modified=row[2],
        last_success_at=row[3],
        last_error_at=row[4],
        last_error=row[5],
        fetch_url=row[6],
        is_gone=row[7],
        body_hash=row[8],
        ttl_minutes=row[9],
        not_before=row[10],
        hold_reason=row[11],
    )


class PostgresFeeds:
    """Feeds' state, holds, health and failures, on the store's connection (a part of
    ``PostgresStore``)."""

    _conn: Connection

    def feed_state(self, url: str) -> FeedState | None:
        row = self._conn.execute(
            f"SELECT {_STATE_COLUMNS} FROM feeds WHERE url = %s", (url,)
        ).fetchone()
        return _feed_state(row) if row else None

    def hold_feed(
        self, url: str, not_before: datetime | None, reason: str | None, ttl_minutes: int | None
    ) -> None:
        """Remember when a feed may be fetched again, why, and its own RSS ``<ttl>``."""
        with self._conn.atomic():
            self._conn.execute(
                "UPDATE feeds SET not_before = %s, hold_reason = %s, ttl_minutes = %s"
                " WHERE url = %s",
                (not_before, reason, ttl_minutes, url),
            )

    def held_feeds(self, now: datetime) -> tuple[FeedState, ...]:
        """Feeds that politeness keeps from being fetched before some time after ``now``."""
        rows = self._conn.execute(
            f"SELECT {_STATE_COLUMNS} FROM feeds WHERE not_before > %s ORDER BY not_before, url",
            (now,),
        )
        return tuple(_feed_state(row) for row in rows)

    def record_fetch(self, result: FetchResult) -> None:
        """Remember a fetch's validators and new address (on success) or its error (on failure,
        also kept in ``feed_errors`` for ``digest feeds``), in one statement."""
        source = result.source
        with self._conn.atomic():
            if result.is_ok:
                self._record_success(result)
                return
            kind = result.error_kind or "error"
            self._conn.execute(
                "INSERT INTO feeds AS f (url, name, fetch_url, last_error_at, last_error,"
                " last_error_kind, is_gone) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (url) DO UPDATE SET name = excluded.name,"
                " fetch_url = coalesce(excluded.fetch_url, f.fetch_url),"
                " last_error_at = excluded.last_error_at, last_error = excluded.last_error,"
                " last_error_kind = excluded.last_error_kind, is_gone = excluded.is_gone,"
                " body_hash = NULL",
                (
                    source.url,
                    source.name,
                    result.moved_to,
                    result.fetched_at,
                    result.error,
                    kind,
                    result.is_gone,
                ),
            )
            self._conn.execute(
                "INSERT INTO feed_errors (feed_url, failed_at, kind, message)"
                " VALUES (%s, %s, %s, %s)",
                (source.url, result.fetched_at, kind, result.error or ""),
            )

    def _record_success(self, result: FetchResult) -> None:
        self._conn.execute(
            "INSERT INTO feeds AS f (url, name, fetch_url, last_success_at, etag, last_modified,"
            " body_hash) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (url) DO UPDATE SET name = excluded.name,"
            " fetch_url = coalesce(excluded.fetch_url, f.fetch_url),"
            " last_success_at = excluded.last_success_at, last_error = NULL,"
            " last_error_at = NULL, last_error_kind = NULL,"
            " etag = coalesce(excluded.etag, f.etag),"
            " last_modified = coalesce(excluded.last_modified, f.last_modified),"
            " body_hash = coalesce(excluded.body_hash, f.body_hash)",
            (
                result.source.url,
                result.source.name,
                result.moved_to,
                result.fetched_at,
                result.etag,
                result.last_modified,
                result.body_hash,
            ),
        )

    def revive_feed(self, url: str) -> None:
        """Fetch a feed again that answered 410 Gone (the user re-added it)."""
        with self._conn.atomic():
            self._conn.execute("UPDATE feeds SET is_gone = false WHERE url = %s", (url,))

    def feed_health(self, sources: Sequence[FeedSource]) -> tuple[FeedHealth, ...]:
        """How each configured feed is doing, in the order given (never fetched: empty), in
        one query."""
        rows = self._conn.execute(
            "SELECT f.url, f.last_success_at, f.last_error_at, f.last_error, f.last_error_kind,"
            " f.fetch_url, f.is_gone,"
            " (SELECT count(*) FROM stories WHERE feed_url = f.url),"
            " (SELECT count(*) FROM feed_errors WHERE feed_url = f.url)"
            " FROM feeds f WHERE f.url = ANY(%s)",
            ([source.url for source in sources],),
        )
        found = {row[0]: row[1:] for row in rows}
        return tuple(_health(source, found.get(source.url)) for source in sources)

    def feed_failures(self, url: str, limit: int = 20) -> tuple[FetchFailure, ...]:
        """A feed's most recent failures, newest first."""
        rows = self._conn.execute(
            "SELECT failed_at, kind, message FROM feed_errors WHERE feed_url = %s"
            " ORDER BY failed_at DESC, seq DESC LIMIT %s",
            (url, limit),
        )
        return tuple(
            FetchFailure(feed_url=url, failed_at=r[0], kind=r[1], message=r[2]) for r in rows
        )

    def failing_feeds(
        self, sources: Sequence[FeedSource], since: datetime | None
    ) -> tuple[FeedFailure, ...]:
        """Those of ``sources`` whose most recent fetch failed after ``since`` (None: whenever),
        in the order given and under the names given."""
        rows = self._conn.execute(
            "SELECT url, last_error FROM feeds WHERE url = ANY(%s) AND last_error IS NOT NULL"
            " AND (%s::timestamptz IS NULL OR last_error_at > %s)",
            ([source.url for source in sources], since, since),
        )
        errors = dict(rows.fetchall())
        return tuple(
            FeedFailure(feed_url=source.url, name=source.title, error=errors[source.url])
            for source in sources
            if source.url in errors
        )


def _health(source: FeedSource, row: Any) -> FeedHealth:
    if row is None:
        return FeedHealth(source=source)
    return FeedHealth(
        source=source,
        last_success_at=row[0],
        last_error_at=row[1],
        last_error=row[2],
        last_error_kind=row[3],
        fetch_url=row[4],
        is_gone=row[5],
        stories=row[6],
        failures=row[7],
    )
