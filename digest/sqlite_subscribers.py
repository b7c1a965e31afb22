"""The SQLite store's subscribers: each list's readers, their state (pending, active,
unsubscribed, bounced), when and how it last changed, and their consecutive bounces.

``SQLiteSubscribers`` is the subscribers' part of ``SQLiteStore``. A row is never deleted: a
reader who leaves stays, unsubscribed, so that no import can quietly bring them back.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Collection, Iterable
from datetime import date, datetime

from digest.models import Subscriber, SubscriberState
from digest.sqlite_connection import Connection, from_text, to_text

_COLUMNS = (
    "subscriber_id, list_slug, address, name, state, created_at, state_changed_at, how, reason,"
    " bounce_count, last_bounce_on"
)


def _new_id() -> str:
    # Random, not a hash of the address: a signed link shows its id to whoever reads it.
    return "sub_" + secrets.token_urlsafe(16)


def _subscriber(row: tuple[str, ...]) -> Subscriber:
    return Subscriber(
        subscriber_id=row[0],
        list_slug=row[1],
        address=row[2],
        name=row[3],
        state=SubscriberState(row[4]),
        created_at=from_text(row[5]),
        state_changed_at=from_text(row[6]),
        how=row[7],
        reason=row[8],
        bounce_count=int(row[9]),
        last_bounce_on=date.fromisoformat(row[10]) if row[10] else None,
    )


class SQLiteSubscribers:
    """Subscribers, on the store's connection (a part of ``SQLiteStore``)."""

    _conn: Connection

    @functools.cached_property
    def has_subscriber_table(self) -> bool:
        """Is m010 applied? (A read-only look at an older store finds it is not.)"""
        row = self._conn.execute("SELECT 1 FROM migrations WHERE name = 'm010_subscribers'")
        return row.fetchone() is not None

    def subscribers(
        self, list_slug: str, states: Collection[SubscriberState] = ()
    ) -> tuple[Subscriber, ...]:
        """The list's subscribers (in one of ``states``; all if none given), oldest first."""
        if not self.has_subscriber_table:
            return ()
        wanted = tuple(states)
        marks = ", ".join("?" * len(wanted))
        where = f" AND state IN ({marks})" if wanted else ""
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM subscribers WHERE list_slug = ?{where} ORDER BY rowid",
            (list_slug, *wanted),
        )
        return tuple(_subscriber(row) for row in rows)

    def subscriber(self, list_slug: str, address: str) -> Subscriber | None:
        """One subscriber of the list by address, in any case."""
        if not self.has_subscriber_table:
            return None
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM subscribers WHERE list_slug = ? AND address = ?",
            (list_slug, address),
        ).fetchone()
        return _subscriber(row) if row else None

    def subscriber_by_id(self, subscriber_id: str) -> Subscriber | None:
        """A subscriber by the id a signed link carries."""
        if not self.has_subscriber_table:
            return None
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM subscribers WHERE subscriber_id = ?", (subscriber_id,)
        ).fetchone()
        return _subscriber(row) if row else None

    def add_subscribers(
        self,
        list_slug: str,
        readers: Iterable[tuple[str, str | None]],
        *,
        how: str,
        now: datetime,
        state: SubscriberState = SubscriberState.ACTIVE,
    ) -> int:
        """Add each (address, name) not on the list yet, in one transaction; one it has keeps
        its state, whatever it is. How many were added."""
        at = to_text(now)
        with self._conn.atomic():
            return self._conn.executemany(
                f"INSERT INTO subscribers ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, 0,"
                " NULL) ON CONFLICT (list_slug, address) DO NOTHING",
                [
                    (_new_id(), list_slug, address, name, state, at, at, how)
                    for address, name in readers
                ],
            ).rowcount

    def set_subscriber_state(
        self,
        list_slug: str,
        address: str,
        state: SubscriberState,
        *,
        how: str,
        now: datetime,
        reason: str | None = None,
        name: str | None = None,
    ) -> Subscriber:
        """Move a subscriber to ``state`` (adding them if new), saying when, how and why; their
        consecutive bounces start again from zero. A ``name`` given replaces theirs."""
        at = to_text(now)
        with self._conn.atomic():
            self._conn.execute(
                f"INSERT INTO subscribers ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0,"
                " NULL) ON CONFLICT (list_slug, address) DO UPDATE SET state = excluded.state,"
                " state_changed_at = excluded.state_changed_at, how = excluded.how,"
                " reason = excluded.reason, bounce_count = 0, last_bounce_on = NULL,"
                " name = coalesce(excluded.name, name)",
                (_new_id(), list_slug, address, name, state, at, at, how, reason),
            )
            found = self.subscriber(list_slug, address)
        assert found is not None  # just written, in this transaction
        return found

    def record_bounce(
        self,
        list_slug: str,
        address: str,
        edition_on: date,
        answer: str,
        now: datetime,
        *,
        limit: int,
    ) -> Subscriber | None:
        """Count an edition the server refused for an active subscriber (once per edition);
        at ``limit`` consecutive ones they are bounced, with ``answer`` as the reason. The
        subscriber as they are now; None if the list has no such address."""
        with self._conn.atomic():
            found = self.subscriber(list_slug, address)
            if found is None or found.state is not SubscriberState.ACTIVE:
                return found
            is_counted = found.last_bounce_on == edition_on
            count = found.bounce_count if is_counted else found.bounce_count + 1
            self._conn.execute(
                "UPDATE subscribers SET bounce_count = ?, last_bounce_on = ?"
                " WHERE subscriber_id = ?",
                (count, edition_on.isoformat(), found.subscriber_id),
            )
            if count >= limit:
                self._conn.execute(
                    "UPDATE subscribers SET state = 'bounced', state_changed_at = ?,"
                    " how = 'bounce', reason = ? WHERE subscriber_id = ?",
                    (to_text(now), answer, found.subscriber_id),
                )
            return self.subscriber(list_slug, address)

    def clear_bounces(self, list_slug: str, address: str) -> None:
        """An edition reached the subscriber: their consecutive bounces start from zero."""
        with self._conn.atomic():
            self._conn.execute(
                "UPDATE subscribers SET bounce_count = 0, last_bounce_on = NULL"
                " WHERE list_slug = ? AND address = ? AND bounce_count > 0",
                (list_slug, address),
            )
