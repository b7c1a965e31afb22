"""The PostgreSQL store's delivery ledger: one row per edition and recipient, claimed
``sending`` in its own commit before the hand-over and marked ``sent`` once the server has
the message, and the send lock that keeps a second sender waiting.

The send lock is a session-level advisory lock held on a connection of its own, so the
server releases it when the holder's connection ends, however its process ended (killed
included). Its holder records its pid and command in ``send_lock_holder`` under the lock's
backend pid, so a waiter can say who it waits for; a row whose backend no longer holds the
lock (a killed holder's) is never taken for the holder.

``PostgresLedger`` is the ledger's part of ``PostgresStore``: every ledger query is here.
"""

from __future__ import annotations

import os
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, datetime
from typing import Any

import psycopg

from digest.errors import StoreError
from digest.models import Delivery, DeliveryState, SendLockHolder
from digest.pg_connection import Connection, connect_alone, storage_error
from digest.pg_migrations import MIGRATION_LOCK

SEND_LOCK = MIGRATION_LOCK + 1
_LOCK_KEY = "%s, hashtext(current_schema())"  # the store's send lock, one per schema
_POLL_SECONDS = 0.2

_DELIVERY_COLUMNS = "edition_on, recipient, message_id, state, sent_at, detail, attempts"


def _delivery(row: Any) -> Delivery:
    return Delivery(
        edition_on=row[0],
        recipient=row[1],
        message_id=row[2],
        state=DeliveryState(row[3]),
        sent_at=row[4],
        detail=row[5],
        attempts=row[6],
    )


class PostgresLedger:
    """The delivery ledger and the send lock, on the store's connection (a part of
    ``PostgresStore``)."""

    _conn: Connection
    session: str

    def add_deliveries(self, deliveries: Iterable[Delivery], now: datetime) -> None:
        """Record pending deliveries; a recipient already in the ledger keeps its row."""
        with self._conn.atomic():
            self._conn.executemany(
                "INSERT INTO deliveries (edition_on, address, recipient, message_id, state,"
                " updated_at) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (edition_on, address) DO NOTHING",
                [
                    (d.edition_on, d.address, d.recipient, d.message_id, d.state, now)
                    for d in deliveries
                ],
            )

    def claim_delivery(
        self, delivery: Delivery, now: datetime, *, is_uncertain_ok: bool = False
    ) -> Delivery | None:
        """Mark a pending or failed delivery ``sending`` in its own commit; None if another
        sender got to it first (two senders at once never hand over the same message).

        ``is_uncertain_ok`` also claims a row left ``sending`` (``--resend-uncertain``).
        """
        states = ["pending", "failed", "sending"] if is_uncertain_ok else ["pending", "failed"]
        with self._conn.atomic():
            row = self._conn.execute(
                "UPDATE deliveries SET state = 'sending', detail = NULL, updated_at = %s,"
                " attempts = attempts + 1"
                " WHERE edition_on = %s AND address = %s AND state = ANY(%s)"
                f" RETURNING {_DELIVERY_COLUMNS}",
                (now, delivery.edition_on, delivery.address, states),
            ).fetchone()
        return _delivery(row) if row else None

    def reopen_deliveries(self, edition_on: date, addresses: Iterable[str], now: datetime) -> int:
        """Put sent and uncertain rows back to ``pending`` (``send --force``); how many."""
        with self._conn.atomic():
            return int(
                self._conn.execute(
                    "UPDATE deliveries SET state = 'pending', detail = 'resend forced',"
                    " sent_at = NULL, updated_at = %s WHERE edition_on = %s"
                    " AND address = ANY(%s) AND state IN ('sent', 'sending')",
                    (now, edition_on, list(addresses)),
                ).rowcount
            )

    def latest_delivery_date(self) -> date | None:
        """The most recent edition with a delivery ledger."""
        row = self._conn.execute("SELECT max(edition_on) FROM deliveries").fetchone()
        day: date | None = row[0]
        return day

    def set_delivery_state(
        self,
        delivery: Delivery,
        state: DeliveryState,
        now: datetime,
        detail: str | None = None,
        *,
        is_synced: bool = True,
    ) -> Delivery:
        """Move one delivery to a new state in its own commit; return the updated record.

        ``is_synced=False`` commits without waiting for the server's disk (synchronous_commit
        off for this one transaction): a server crash may then lose this commit, never an
        earlier one.
        """
        sent_at = now if state is DeliveryState.SENT else None
        with self._conn.atomic():
            if not is_synced:
                self._conn.execute("SET LOCAL synchronous_commit = off")
            self._conn.execute(
                "UPDATE deliveries SET state = %s, detail = %s, sent_at = %s, updated_at = %s"
                " WHERE edition_on = %s AND address = %s",
                (state, detail, sent_at, now, delivery.edition_on, delivery.address),
            )
        return replace(delivery, state=state, sent_at=sent_at, detail=detail)

    def deliveries(self, edition_on: date) -> tuple[Delivery, ...]:
        rows = self._conn.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE edition_on = %s ORDER BY seq",
            (edition_on,),
        )
        return tuple(_delivery(row) for row in rows)

    def sent_since(self, at: datetime) -> tuple[datetime, ...]:
        rows = self._conn.execute(
            "SELECT sent_at FROM deliveries WHERE state = 'sent' AND sent_at > %s ORDER BY sent_at",
            (at,),
        )
        return tuple(row[0] for row in rows)

    def undelivered(self, since: date) -> tuple[Delivery, ...]:
        """Deliveries of editions since ``since`` that are not (known to be) sent."""
        rows = self._conn.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE edition_on >= %s"
            " AND state != 'sent' ORDER BY edition_on, seq",
            (since,),
        )
        return tuple(_delivery(row) for row in rows)

    @contextmanager
    def send_lock(
        self,
        *,
        wait_seconds: float,
        stop: threading.Event | None = None,
        on_wait: Callable[[SendLockHolder], None] | None = None,
    ) -> Iterator[bool]:
        """Hold the store's sender lock (an advisory lock on a connection of its own, so a
        killed sender never keeps it); wait for another sender up to ``wait_seconds``,
        calling ``on_wait`` with who it is once the wait begins. Yields False if ``stop``
        was set."""
        lock = connect_alone(self.session)
        try:
            is_locked = self._lock(lock, wait_seconds, stop, on_wait)
            if is_locked:
                self._record_holder(lock)
            yield is_locked
        finally:
            lock.close()  # ends the session: releases the lock

    def _lock(
        self,
        lock: psycopg.Connection[Any],
        wait_seconds: float,
        stop: threading.Event | None,
        on_wait: Callable[[SendLockHolder], None] | None,
    ) -> bool:
        started = time.monotonic()
        is_told = False
        while not self._try_lock(lock):
            holder = self._lock_holder(lock)
            # The holder records itself just after taking the lock: give it a moment.
            is_known = holder.pid is not None or time.monotonic() - started > 1
            if on_wait is not None and not is_told and is_known:
                on_wait(holder)
                is_told = True
            if time.monotonic() > started + wait_seconds:
                raise StoreError(
                    f"{self._conn.server}: another digest send (pid {holder.pid or '?'}) is"
                    f" still sending after {wait_seconds:.0f} s of waiting",
                    hint="let it finish; `digest deliveries` shows how far it got",
                )
            if stop is not None and stop.wait(_POLL_SECONDS):
                return False
            if stop is None:
                time.sleep(_POLL_SECONDS)
        return True

    def _try_lock(self, lock: psycopg.Connection[Any]) -> bool:
        try:
            row = lock.execute(f"SELECT pg_try_advisory_lock({_LOCK_KEY})", (SEND_LOCK,))
            return bool(row.fetchone()[0])  # type: ignore[index]
        except psycopg.Error as exc:
            raise storage_error(self._conn.server, exc) from exc

    def _record_holder(self, lock: psycopg.Connection[Any]) -> None:
        command = shlex.join(["digest", *sys.argv[1:]])
        try:
            lock.execute(
                "INSERT INTO send_lock_holder (backend_pid, pid, command, since_at)"
                " VALUES (pg_backend_pid(), %s, %s, now()) ON CONFLICT (backend_pid)"
                " DO UPDATE SET pid = excluded.pid, command = excluded.command,"
                " since_at = excluded.since_at",
                (os.getpid(), command),
            )
            # Rows of holders whose sessions have ended (killed ones) are of no use now.
            lock.execute(
                "DELETE FROM send_lock_holder WHERE backend_pid NOT IN"
                " (SELECT pid FROM pg_stat_activity)"
            )
        except psycopg.Error as exc:
            raise storage_error(self._conn.server, exc) from exc

    def _lock_holder(self, lock: psycopg.Connection[Any]) -> SendLockHolder:
        """Who holds the send lock, as its holder recorded (nothing yet: an empty record)."""
        try:
            row = lock.execute(
                "SELECT h.pid, h.command, h.since_at FROM send_lock_holder h"
                " JOIN pg_locks l ON l.pid = h.backend_pid"
                " WHERE l.locktype = 'advisory' AND l.granted AND l.database = ("
                "  SELECT oid FROM pg_database WHERE datname = current_database())"
                f" AND (l.classid, l.objid, l.objsubid) = ({SEND_LOCK}::oid,"
                " hashtext(current_schema())::oid, 2)",
            ).fetchone()
        except psycopg.Error as exc:
            raise storage_error(self._conn.server, exc) from exc
        if row is None:
            return SendLockHolder()
        return SendLockHolder(pid=row[0], command=row[1], since_at=row[2])
