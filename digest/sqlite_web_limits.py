"""The SQLite store's web limits: the recent requests ``digest web`` counts (confirmation
emails per address, form posts per client), so a limit holds across processes and restarts."""

from __future__ import annotations

from datetime import datetime, timedelta

from digest.sqlite_connection import Connection, to_text


class SQLiteWebLimits:
    """Counted web requests, on the store's connection (a part of ``SQLiteStore``)."""

    _conn: Connection

    def take_allowance(
        self, kind: str, key: str, now: datetime, *, window: timedelta, limit: int
    ) -> bool:
        """Count one ``kind`` request for ``key`` if fewer than ``limit`` were counted in the
        last ``window`` (True), else count nothing (False); in one write transaction."""
        with self._conn.atomic():
            self._conn.execute(
                "DELETE FROM web_requests WHERE kind = ? AND key = ? AND at <= ?",
                (kind, key, to_text(now - window)),
            )
            row = self._conn.execute(
                "SELECT count(*) FROM web_requests WHERE kind = ? AND key = ?", (kind, key)
            ).fetchone()
            if int(row[0]) >= limit:
                return False
            self._conn.execute(
                "INSERT INTO web_requests (kind, key, at) VALUES (?, ?, ?)",
                (kind, key, to_text(now)),
            )
            return True
