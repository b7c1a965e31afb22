"""The PostgreSQL store's web limits: the recent requests ``digest web`` counts (confirmation
emails per address, form posts per client), so a limit holds across processes and machines."""

from __future__ import annotations

from datetime import datetime, timedelta

from digest.pg_connection import Connection


class PostgresWebLimits:
    """Counted web requests, on the store's connection (a part of ``PostgresStore``)."""

    _conn: Connection

    def take_allowance(
        self, kind: str, key: str, now: datetime, *, window: timedelta, limit: int
    ) -> bool:
        """Count one ``kind`` request for ``key`` if fewer than ``limit`` were counted in the
        last ``window`` (True), else count nothing (False).

        Two processes counting the same key at once take turns: a transaction-level advisory
        lock on the key serialises them, where SQLite's one writer does it for the file.
        """
        with self._conn.atomic():
            self._conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(current_schema() || %s))",
                (f" {kind} {key}",),
            )
            self._conn.execute(
                "DELETE FROM web_requests WHERE kind = %s AND key = %s AND at <= %s",
                (kind, key, now - window),
            )
            row = self._conn.execute(
                "SELECT count(*) FROM web_requests WHERE kind = %s AND key = %s", (kind, key)
            ).fetchone()
            if int(row[0]) >= limit:
                return False
            self._conn.execute(
                "INSERT INTO web_requests (kind, key, at) VALUES (%s, %s, %s)", (kind, key, now)
            )
            return True
