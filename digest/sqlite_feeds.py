"""The SQLite store's feeds: what it remembers of each feed between fetches (validators,
a permanent new address, 410 Gone, politeness holds) and its failures, for ``digest feeds``
and ``digest status``.

``SQLiteFeeds`` is the feeds' part of ``SQLiteStore``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime

from digest.models import FeedFailure, FeedHealth, FeedSource, FeedState, FetchFailure, FetchResult
from digest.sqlite_connection import Connection, from_text, to_datetime, to_text


class SQLiteFeeds:
    """Feeds' state, holds, health and failures, on the store's connection (a part of
    ``SQLiteStore``)."""

    _conn: Connection

    @functools.cached_property
    def has_schedule_tables(self) -> bool:
        """Is m006 applied? (A read-only look at an older store finds it is not.)"""
        row = self._conn.execute("SELECT 1 FROM migrations WHERE name = 'm006_schedule'")
        return row.fetchone() is not None

    def feed_state(self, url: str) -> FeedState | None:
        row = self._conn.execute(
            "SELECT url, etag, last_modified, last_success_at, last_error_at, last_error,"
            " fetch_url, is_gone, body_hash FROM feeds WHERE url = ?",
            (url,),
        ).fetchone()
        if row is None:
            return None
        ttl_minutes, not_before, hold_reason = self._feed_hold(url)
        return FeedState(
            ttl_minutes=ttl_minutes,
            not_before=not_before,
            hold_reason=hold_reason,
            url=row[0],
            etag=row[1],
            last_modified=row[2],
            last_success_at=to_datetime(row[3]),
            last_error_at=to_datetime(row[4]),
            last_error=row[5],
            fetch_url=row[6],
            is_gone=bool(row[7]),
            body_hash=row[8],
        )

    def _feed_hold(self, url: str) -> tuple[int | None, datetime | None, str | None]:
        if not self.has_schedule_tables:
            return None, None, None
        row = self._conn.execute(
            "SELECT ttl_minutes, not_before, hold_reason FROM feeds WHERE url = ?", (url,)
        ).fetchone()
        return row[0], to_datetime(row[1]), row[2]

    def hold_feed(
        self, url: str, not_before: datetime | None, reason: str | None, ttl_minutes: int | None
    ) -> None:
        """Remember when a feed may be fetched again, why, and its own RSS ``<ttl>``."""
        with self._conn.atomic():
            self._conn.execute(
                "UPDATE feeds SET not_before = ?, hold_reason = ?, ttl_minutes = ? WHERE url = ?",
                (to_text(not_before), reason, ttl_minutes, url),
            )

    def held_feeds(self, now: datetime) -> tuple[FeedState, ...]:
        """Feeds that politeness keeps from being fetched before some time after ``now``."""
        if not self.has_schedule_tables:
            return ()
        rows = self._conn.execute(
            "SELECT url FROM feeds WHERE not_before > ? ORDER BY not_before, url", (to_text(now),)
        )
        return tuple(state for (url,) in rows.fetchall() if (state := self.feed_state(url)))

    def record_fetch(self, result: FetchResult) -> None:
        """Remember a fetch's validators and new address (on success) or its error (on failure).

        Every failure is also kept in ``feed_errors`` (time, kind, message) for ``digest feeds``.
        """
        source = result.source
        with self._conn.atomic():
            self._conn.execute(
                "INSERT INTO feeds (url, name) VALUES (?, ?) ON CONFLICT (url) DO UPDATE"
                " SET name = excluded.name",
                (source.url, source.name),
            )
            when = to_text(result.fetched_at)
            if result.moved_to:
                self._conn.execute(
                    "UPDATE feeds SET fetch_url = ? WHERE url = ?", (result.moved_to, source.url)
                )
            if result.is_ok:
                self._conn.execute(
                    "UPDATE feeds SET last_success_at = ?, last_error = NULL,"
                    " last_error_at = NULL, last_error_kind = NULL,"
                    " etag = coalesce(?, etag), last_modified = coalesce(?, last_modified),"
                    " body_hash = coalesce(?, body_hash) WHERE url = ?",
                    (when, result.etag, result.last_modified, result.body_hash, source.url),
                )
                return
            kind = result.error_kind or "error"
            self._conn.execute(
                "UPDATE feeds SET last_error_at = ?, last_error = ?, last_error_kind = ?,"
                " is_gone = ?, body_hash = NULL WHERE url = ?",
                (when, result.error, kind, int(result.is_gone), source.url),
            )
            self._conn.execute(
                "INSERT INTO feed_errors VALUES (?, ?, ?, ?)",
                (source.url, when, kind, result.error or ""),
            )

    def revive_feed(self, url: str) -> None:
        """Fetch a feed again that answered 410 Gone (the user re-added it)."""
        with self._conn.atomic():
            self._conn.execute("UPDATE feeds SET is_gone = 0 WHERE url = ?", (url,))

    def feed_health(self, sources: Sequence[FeedSource]) -> tuple[FeedHealth, ...]:
        """How each configured feed is doing, in the order given (never fetched: empty)."""
        return tuple(self._health(source) for source in sources)

    def _health(self, source: FeedSource) -> FeedHealth:
        row = self._conn.execute(
            "SELECT last_success_at, last_error_at, last_error, last_error_kind, fetch_url,"
            " is_gone, (SELECT count(*) FROM stories WHERE feed_url = feeds.url),"
            " (SELECT count(*) FROM feed_errors WHERE feed_url = feeds.url)"
            " FROM feeds WHERE url = ?",
            (source.url,),
        ).fetchone()
        if row is None:
            return FeedHealth(source=source)
        return FeedHealth(
            source=source,
            last_success_at=to_datetime(row[0]),
            last_error_at=to_datetime(row[1]),
            last_error=row[2],
            last_error_kind=row[3],
            fetch_url=row[4],
            is_gone=bool(row[5]),
            stories=row[6],
            failures=row[7],
        )

    def feed_failures(self, url: str, limit: int = 20) -> tuple[FetchFailure, ...]:
        """A feed's most recent failures, newest first."""
        rows = self._conn.execute(
            "SELECT failed_at, kind, message FROM feed_errors WHERE feed_url = ?"
            " ORDER BY failed_at DESC, rowid DESC LIMIT ?",
            (url, limit),
        )
        return tuple(
            FetchFailure(feed_url=url, failed_at=from_text(r[0]), kind=r[1], message=r[2])
            for r in rows
        )

    def failing_feeds(
        self, sources: Sequence[FeedSource], since: datetime | None
    ) -> tuple[FeedFailure, ...]:
        """Those of ``sources`` whose most recent fetch failed after ``since`` (None: whenever),
        in the order given and under the names given."""
        failures = []
        for source in sources:
            row = self._conn.execute(
                "SELECT last_error, last_error_at FROM feeds"
                " WHERE url = ? AND last_error IS NOT NULL",
                (source.url,),
            ).fetchone()
            failed_at = to_datetime(row[1]) if row else None
            if row and (since is None or (failed_at is not None and failed_at > since)):
                failures.append(FeedFailure(feed_url=source.url, name=source.title, error=row[0]))
        return tuple(failures)
