"""The SQLite store's work claims: the hosts a collector is fetching and the summaries being
made, each under a lease on SQLite's own clock, taken under the store's write lock (``BEGIN
IMMEDIATE``), so that two processes never both take one."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from digest.models import DueFeed, FeedClaims, FeedTaken
from digest.sqlite_connection import Connection

# Seconds since the epoch, by SQLite's clock (to the millisecond).
_NOW = "SELECT (julianday('now') - 2440587.5) * 86400.0"


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class SQLiteClaims:
    """Feed and summary claims, on the store's connection (a part of ``SQLiteStore``)."""

    _conn: Connection

    def _clock(self) -> float:
        return float(self._conn.execute(_NOW).fetchone()[0])

    def claim_feeds(self, holder: str, feeds: Sequence[DueFeed], *, lease: timedelta) -> FeedClaims:
        by_host: dict[str, list[str]] = {}
        for feed in feeds:
            by_host.setdefault(feed.host, []).append(feed.url)
        taken: list[FeedTaken] = []
        with self._conn.atomic():
            now = self._clock()
            for host, urls in by_host.items():
                row = self._conn.execute(
                    "SELECT holder, expires_at FROM feed_host_claims WHERE host = ?", (host,)
                ).fetchone()
                if row is not None and row[0] != holder and row[1] > now:
                    until = _moment(row[1])
                    taken += [FeedTaken(url=url, holder=row[0], until=until) for url in urls]
                    continue
                self._conn.execute(
                    "INSERT INTO feed_host_claims (host, holder, expires_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (host) DO UPDATE"
                    " SET holder = excluded.holder, expires_at = excluded.expires_at",
                    (host, holder, now + lease.total_seconds()),
                )
        lost = {t.url for t in taken}
        return FeedClaims(
            claimed=tuple(f.url for f in feeds if f.url not in lost), taken=tuple(taken)
        )

    def renew_feed_claims(self, holder: str, *, lease: timedelta) -> None:
        with self._conn.atomic():
            self._conn.execute(
                "UPDATE feed_host_claims SET expires_at = ? WHERE holder = ?",
                (self._clock() + lease.total_seconds(), holder),
            )

    def release_feed_claims(self, holder: str) -> None:
        with self._conn.atomic():
            self._conn.execute("DELETE FROM feed_host_claims WHERE holder = ?", (holder,))

    def claim_summaries(
        self, holder: str, model_id: str, text_hashes: Sequence[str], *, lease: timedelta
    ) -> tuple[str, ...]:
        claimed = []
        with self._conn.atomic():
            now = self._clock()
            for text_hash in dict.fromkeys(text_hashes):
                if self._is_summary_taken(holder, model_id, text_hash, now):
                    continue
                self._conn.execute(
                    "INSERT INTO summary_claims (model_id, text_hash, holder, expires_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (model_id, text_hash) DO UPDATE"
                    " SET holder = excluded.holder, expires_at = excluded.expires_at",
                    (model_id, text_hash, holder, now + lease.total_seconds()),
                )
                claimed.append(text_hash)
        return tuple(claimed)

    def _is_summary_taken(self, holder: str, model_id: str, text_hash: str, now: float) -> bool:
        """Is the summary cached, or claimed by another holder under a live lease?"""
        key = (model_id, text_hash)
        where = "WHERE model_id = ? AND text_hash = ?"
        if self._conn.execute(f"SELECT 1 FROM summaries {where}", key).fetchone():
            return True
        row = self._conn.execute(
            f"SELECT holder, expires_at FROM summary_claims {where}", key
        ).fetchone()
        return row is not None and row[0] != holder and row[1] > now

    def release_summary_claims(
        self, holder: str, model_id: str, text_hashes: Sequence[str]
    ) -> None:
        with self._conn.atomic():
            self._conn.executemany(
                "DELETE FROM summary_claims WHERE holder = ? AND model_id = ? AND text_hash = ?",
                [(holder, model_id, text_hash) for text_hash in text_hashes],
            )

    def claim_holders(self) -> tuple[str, ...]:
        rows = self._conn.execute(
            "SELECT holder FROM feed_host_claims UNION SELECT holder FROM summary_claims"
        )
        return tuple(sorted(row[0] for row in rows))

    def drop_claims(self, holder: str) -> None:
        with self._conn.atomic():
            self._conn.execute("DELETE FROM feed_host_claims WHERE holder = ?", (holder,))
            self._conn.execute("DELETE FROM summary_claims WHERE holder = ?", (holder,))
