"""The PostgreSQL store's subscribers: each list's readers, their state (pending, active,
unsubscribed, bounced), when and how it last changed, and their consecutive bounces.

``PostgresSubscribers`` is the subscribers' part of ``PostgresStore``. A row is never deleted:
a reader who leaves stays, unsubscribed, so that no import can quietly bring them back.
Addresses are compared case-insensitively through the unique index on ``lower(address)``.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Iterable
from datetime import date, datetime
from typing import Any

from digest.models import Subscriber, SubscriberState
from digest.pg_connection import Connection

_COLUMNS = (
    "subscriber_id, list_slug, address, name, state, created_at, state_changed_at, how, reason,"
    " bounce_count, last_bounce_on"
)
_SAME_ADDRESS = "list_slug = %s AND lower(address) = lower(%s)"


def _new_id() -> str:
    # Random, not a hash of the address: a signed link shows its id to whoever reads it.
    return "sub_" + secrets.token_urlsafe(16)


def _subscriber(row: Any) -> Subscriber:
    return Subscriber(
        subscriber_id=row[0],
        list_slug=row[1],
        address=row[2],
        name=row[3],
        state=SubscriberState(row[4]),
        created_at=row[5],
        state_changed_at=row[6],
        how=row[7],
        reason=row[8],
        bounce_count=row[9],
        last_bounce_on=row[10],
    )


class PostgresSubscribers:
    """Subscribers, on the store's connection (a part of ``PostgresStore``)."""

    _conn: Connection

    def subscribers(
        self, list_slug: str, states: Collection[SubscriberState] = ()
    ) -> tuple[Subscriber, ...]:
        """The list's subscribers (in one of ``states``; all if none given), oldest first."""
        wanted = [str(state) for state in states] or None
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM subscribers WHERE list_slug = %s"
            " AND (%s::text[] IS NULL OR state = ANY(%s)) ORDER BY seq",
            (list_slug, wanted, wanted),
        )
        return tuple(_subscriber(row) for row in rows)

    def subscriber(self, list_slug: str, address: str) -> Subscriber | None:
        """One subscriber of the list by address, in any case."""
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM subscribers WHERE {_SAME_ADDRESS}", (list_slug, address)
        ).fetchone()
        return _subscriber(row) if row else None

    def subscriber_by_id(self, subscriber_id: str) -> Subscriber | None:
        """A subscriber by the id a signed link carries."""
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM subscribers WHERE subscriber_id = %s", (subscriber_id,)
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
        with self._conn.atomic():
            return self._conn.executemany(
                f"INSERT INTO subscribers ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s,"
                " NULL, 0, NULL) ON CONFLICT (list_slug, lower(address)) DO NOTHING",
                [
                    (_new_id(), list_slug, address, name, state, now, now, how)
                    for address, name in readers
                ],
            )

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
        with self._conn.atomic():
            row = self._conn.execute(
                f"INSERT INTO subscribers AS s ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s,"
                " %s, %s, 0, NULL) ON CONFLICT (list_slug, lower(address)) DO UPDATE"
                " SET state = excluded.state, state_changed_at = excluded.state_changed_at,"
                " how = excluded.how, reason = excluded.reason, bounce_count = 0,"
                " last_bounce_on = NULL, name = coalesce(excluded.name, s.name)"
                f" RETURNING {_COLUMNS}",
                (_new_id(), list_slug, address, name, state, now, now, how, reason),
            ).fetchone()
        return _subscriber(row)

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
            row = self._conn.execute(
                "UPDATE subscribers SET last_bounce_on = %(day)s,"
                " bounce_count = bounce_count + 1,"
                " state = CASE WHEN bounce_count + 1 >= %(limit)s THEN 'bounced' ELSE state END,"
                " state_changed_at = CASE WHEN bounce_count + 1 >= %(limit)s"
                "  THEN %(now)s ELSE state_changed_at END,"
                " how = CASE WHEN bounce_count + 1 >= %(limit)s THEN 'bounce' ELSE how END,"
                " reason = CASE WHEN bounce_count + 1 >= %(limit)s THEN %(answer)s ELSE reason END"
                " WHERE list_slug = %(list)s AND lower(address) = lower(%(address)s)"
                " AND state = 'active' AND last_bounce_on IS DISTINCT FROM %(day)s"
                f" RETURNING {_COLUMNS}",
                {
                    "day": edition_on,
                    "limit": limit,
                    "now": now,
                    "answer": answer,
                    "list": list_slug,
                    "address": address,
                },
            ).fetchone()
        # Not counted (not active, counted for this edition already, or unknown): as it is.
        return _subscriber(row) if row else self.subscriber(list_slug, address)

    def clear_bounces(self, list_slug: str, address: str) -> None:
        """An edition reached the subscriber: their consecutive bounces start from zero."""
        with self._conn.atomic():
            self._conn.execute(
                "UPDATE subscribers SET bounce_count = 0, last_bounce_on = NULL"
                f" WHERE {_SAME_ADDRESS} AND bounce_count > 0",
                (list_slug, address),
            )
