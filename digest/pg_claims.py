"""The PostgreSQL store's work claims: the hosts a collector is fetching and the summaries
being made, each under a lease on the server's clock.

A claim is an ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` that takes a row only if it is
free, the claimer's own or its lease has run out: two sessions claiming one row at once wait
for each other on it, and the second sees what the first committed. Rows are claimed in a
fixed order (hosts, text hashes sorted), so two claimers never wait for each other in a
circle. Whether a claimed summary is cached by now is asked in a statement of its own, after
the row is held, so it sees whatever the previous holder committed before letting go.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from digest.models import DueFeed, FeedClaims, FeedTaken
from digest.pg_connection import Connection


class PostgresClaims:
    """Feed and summary claims, on the store's connection (a part of ``PostgresStore``)."""

    _conn: Connection

    def claim_feeds(self, holder: str, feeds: Sequence[DueFeed], *, lease: timedelta) -> FeedClaims:
        by_host: dict[str, list[str]] = {}
        for feed in feeds:
            by_host.setdefault(feed.host, []).append(feed.url)
        taken: list[FeedTaken] = []
        with self._conn.atomic():
            for host in sorted(by_host):
                other = self._claim_host(holder, host, lease)
                if other is not None:
                    taken += [
                        FeedTaken(url=u, holder=other[0], until=other[1]) for u in by_host[host]
                    ]
        order = {feed.url: i for i, feed in enumerate(feeds)}
        lost = {t.url for t in taken}
        return FeedClaims(
            claimed=tuple(f.url for f in feeds if f.url not in lost),
            taken=tuple(sorted(taken, key=lambda t: order[t.url])),
        )

    def _claim_host(self, holder: str, host: str, lease: timedelta) -> tuple[str, datetime] | None:
        """Claim the host; None if claimed, else who has it under a live lease, and until."""
        row = self._conn.execute(
            "INSERT INTO feed_host_claims AS claim (host, holder, expires_at)"
            " VALUES (%s, %s, now() + %s) ON CONFLICT (host) DO UPDATE"
            " SET holder = excluded.holder, expires_at = excluded.expires_at"
            " WHERE claim.holder = excluded.holder OR claim.expires_at <= now()"
            " RETURNING host",
            (host, holder, lease),
        ).fetchone()
        if row is not None:
            return None
        other = self._conn.execute(
            "SELECT holder, expires_at FROM feed_host_claims WHERE host = %s", (host,)
        ).fetchone()
        return str(other[0]), other[1]

    def renew_feed_claims(self, holder: str, *, lease: timedelta) -> None:
        with self._conn.atomic():
            self._conn.execute(
                "UPDATE feed_host_claims SET expires_at = now() + %s WHERE holder = %s",
                (lease, holder),
            )

    def release_feed_claims(self, holder: str) -> None:
        with self._conn.atomic():
            self._conn.execute("DELETE FROM feed_host_claims WHERE holder = %s", (holder,))

    def claim_summaries(
        self, holder: str, model_id: str, text_hashes: Sequence[str], *, lease: timedelta
    ) -> tuple[str, ...]:
        with self._conn.atomic():
            rows = self._conn.execute(
                "INSERT INTO summary_claims AS claim (model_id, text_hash, holder, expires_at)"
                " SELECT %s, wanted.hash, %s, now() + %s"
                " FROM (SELECT DISTINCT unnest(%s::text[]) AS hash ORDER BY 1) AS wanted"
                " ON CONFLICT (model_id, text_hash) DO UPDATE"
                " SET holder = excluded.holder, expires_at = excluded.expires_at"
                " WHERE claim.holder = excluded.holder OR claim.expires_at <= now()"
                " RETURNING text_hash",
                (model_id, holder, lease, list(text_hashes)),
            ).fetchall()
            # Made while this waited for the rows: not to be made again.
            cached = self._conn.execute(
                "DELETE FROM summary_claims AS claim USING summaries"
                " WHERE claim.model_id = %s AND claim.holder = %s"
                " AND claim.text_hash = ANY(%s) AND summaries.model_id = claim.model_id"
                " AND summaries.text_hash = claim.text_hash RETURNING claim.text_hash",
                (model_id, holder, [r[0] for r in rows]),
            ).fetchall()
        mine = {r[0] for r in rows} - {r[0] for r in cached}
        return tuple(h for h in dict.fromkeys(text_hashes) if h in mine)

    def release_summary_claims(
        self, holder: str, model_id: str, text_hashes: Sequence[str]
    ) -> None:
        with self._conn.atomic():
            self._conn.execute(
                "DELETE FROM summary_claims"
                " WHERE holder = %s AND model_id = %s AND text_hash = ANY(%s)",
                (holder, model_id, list(text_hashes)),
            )

    def claim_holders(self) -> tuple[str, ...]:
        rows = self._conn.execute(
            "SELECT holder FROM feed_host_claims UNION SELECT holder FROM summary_claims"
        )
        return tuple(sorted(row[0] for row in rows))

    def drop_claims(self, holder: str) -> None:
        with self._conn.atomic():
            self._conn.execute("DELETE FROM feed_host_claims WHERE holder = %s", (holder,))
            self._conn.execute("DELETE FROM summary_claims WHERE holder = %s", (holder,))
