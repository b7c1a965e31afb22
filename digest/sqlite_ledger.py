"""The SQLite store's delivery ledger: one row per edition and recipient, leased to one
sender in batches (the work queue several senders share), claimed ``sending`` in its own
commit before the hand-over and marked ``sent`` once the server has the message; and the
send lock around building an edition (an OS file lock beside the store file, so a killed
sender never keeps it).

Leases are measured on SQLite's own clock (``julianday('now')``), and every claim runs under
the write lock (``BEGIN IMMEDIATE``), so two processes never lease or claim the same row.

``SQLiteLedger`` is the ledger's part of ``SQLiteStore``: every ledger query is here.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from digest.errors import StoreError
from digest.models import Delivery, DeliveryState, SendLockHolder
from digest.sqlite_connection import Connection, from_text, to_datetime, to_text


def _holder_line() -> str:
    command = shlex.join(["digest", *sys.argv[1:]])
    since = to_text(datetime.now(UTC))
    return json.dumps({"pid": os.getpid(), "command": command, "since_at": since}) + "\n"


def read_lock_holder(path: Path) -> SendLockHolder:
    """Who holds the send lock whose file is ``path`` (an older digest wrote its pid only)."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return SendLockHolder()
    if text.isdigit():
        return SendLockHolder(pid=int(text))
    try:
        fields = json.loads(text)
        pid, command, since = fields["pid"], fields["command"], fields["since_at"]
        return SendLockHolder(pid=int(pid), command=str(command), since_at=from_text(since))
    except (ValueError, KeyError, TypeError):
        return SendLockHolder()  # empty (being written, or released) or not ours


_DELIVERY_COLUMNS = "recipient, message_id, state, sent_at, detail, attempts"


def _delivery(edition_on: date, row: Sequence[Any]) -> Delivery:
    """A ledger row (``_DELIVERY_COLUMNS``) as its record."""
    recipient, message_id, state, sent_at, detail, attempts = row
    return Delivery(
        edition_on=edition_on,
        recipient=recipient,
        message_id=message_id,
        state=DeliveryState(state),
        sent_at=to_datetime(sent_at),
        detail=detail,
        attempts=attempts,
    )


class SQLiteLedger:
    """The delivery ledger and the send lock, on the store's connection (a part of
    ``SQLiteStore``)."""

    _conn: Connection
    path: Path

    def add_deliveries(self, deliveries: Iterable[Delivery], now: datetime) -> None:
        """Record pending deliveries; a recipient already in the ledger keeps its row."""
        with self._conn.atomic():
            self._conn.executemany(
                "INSERT OR IGNORE INTO deliveries (edition_on, address, recipient, message_id,"
                " state, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        d.edition_on.isoformat(),
                        d.address,
                        d.recipient,
                        d.message_id,
                        d.state,
                        to_text(now),
                    )
                    for d in deliveries
                ],
            )

    def claim_batch(
        self,
        edition_on: date,
        sender: str,
        *,
        size: int,
        lease_seconds: float,
        retry_before: datetime,
        is_uncertain_ok: bool = False,
        excluding: Collection[str] = (),
    ) -> tuple[Delivery, ...]:
        """Lease up to ``size`` due rows whose lease is free or expired to ``sender``, in the
        order they were added (see ``Ledger.claim_batch``)."""
        retried = "'failed', 'sending'" if is_uncertain_ok else "'failed'"
        skip = ", ".join("?" * len(excluding))
        with self._conn.atomic():
            rows = self._conn.execute(
                "UPDATE deliveries SET leased_by = ?, lease_until = julianday('now') + ? / 86400.0"
                " WHERE rowid IN (SELECT rowid FROM deliveries WHERE edition_on = ?"
                f" AND (state = 'pending' OR (state IN ({retried}) AND updated_at <= ?"
                " AND (leased_by IS NULL OR leased_by != ?)))"
                " AND (lease_until IS NULL OR lease_until <= julianday('now'))"
                f" AND address NOT IN ({skip}) ORDER BY rowid LIMIT ?)"
                f" RETURNING rowid, {_DELIVERY_COLUMNS}",
                (
                    sender,
                    lease_seconds,
                    edition_on.isoformat(),
                    to_text(retry_before),
                    sender,
                    *excluding,
                    size,
                ),
            ).fetchall()
        return tuple(_delivery(edition_on, row[1:]) for row in sorted(rows))

    def renew_leases(self, sender: str, lease_seconds: float) -> int:
        """Extend ``sender``'s leases by ``lease_seconds`` from now; how many it still holds."""
        with self._conn.atomic():
            return self._conn.execute(
                "UPDATE deliveries SET lease_until = julianday('now') + ? / 86400.0"
                " WHERE leased_by = ? AND lease_until IS NOT NULL",
                (lease_seconds, sender),
            ).rowcount

    def release_leases(self, sender: str) -> int:
        """Give ``sender``'s leased rows back to the queue at once; how many."""
        with self._conn.atomic():
            return self._conn.execute(
                "UPDATE deliveries SET lease_until = NULL"
                " WHERE leased_by = ? AND lease_until IS NOT NULL",
                (sender,),
            ).rowcount

    def leased_elsewhere(self, edition_on: date, sender: str) -> int:
        """How many of the edition's rows other senders hold under a lease not yet expired."""
        row = self._conn.execute(
            "SELECT count(*) FROM deliveries WHERE edition_on = ? AND leased_by != ?"
            " AND lease_until > julianday('now')",
            (edition_on.isoformat(), sender),
        ).fetchone()
        return int(row[0])

    def claim_delivery(
        self,
        delivery: Delivery,
        now: datetime,
        *,
        sender: str | None = None,
        is_uncertain_ok: bool = False,
    ) -> Delivery | None:
        """Mark a pending or failed delivery ``sending`` in its own commit; None if another
        sender got to it first (two senders at once never hand over the same message).

        With ``sender``, only a row leased to that sender is claimed. ``is_uncertain_ok``
        also claims a row left ``sending`` (``--resend-uncertain``).
        """
        states = "'pending', 'failed', 'sending'" if is_uncertain_ok else "'pending', 'failed'"
        leased = "" if sender is None else " AND leased_by = ?"
        with self._conn.atomic():
            claimed = self._conn.execute(
                "UPDATE deliveries SET state = 'sending', detail = NULL, updated_at = ?,"
                " attempts = attempts + 1"
                f" WHERE edition_on = ? AND address = ? AND state IN ({states}){leased}",
                (
                    to_text(now),
                    delivery.edition_on.isoformat(),
                    delivery.address,
                    *([] if sender is None else [sender]),
                ),
            ).rowcount
        if not claimed:
            return None
        attempts = delivery.attempts + 1
        return replace(delivery, state=DeliveryState.SENDING, detail=None, attempts=attempts)

    def reopen_deliveries(self, edition_on: date, addresses: Iterable[str], now: datetime) -> int:
        """Put sent and uncertain rows back to ``pending`` (``send --force``); how many."""
        with self._conn.atomic():
            return self._conn.executemany(
                "UPDATE deliveries SET state = 'pending', detail = 'resend forced',"
                " sent_at = NULL, updated_at = ? WHERE edition_on = ? AND address = ?"
                " AND state IN ('sent', 'sending')",
                [(to_text(now), edition_on.isoformat(), address) for address in addresses],
            ).rowcount

    def latest_delivery_date(self) -> date | None:
        """The most recent edition with a delivery ledger."""
        row = self._conn.execute("SELECT max(edition_on) FROM deliveries").fetchone()
        return date.fromisoformat(row[0]) if row and row[0] else None

    @contextmanager
    def send_lock(
        self,
        *,
        wait_seconds: float,
        stop: threading.Event | None = None,
        on_wait: Callable[[SendLockHolder], None] | None = None,
    ) -> Iterator[bool]:
        """Hold the store's sender lock (an OS file lock, so a killed sender never keeps it);
        wait for another sender up to ``wait_seconds``, calling ``on_wait`` with who it is
        once the wait begins. Yields False if ``stop`` was set."""
        path = self.path.with_name(self.path.name + ".send-lock")
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        is_locked = False
        try:
            is_locked = self._lock(handle, path, wait_seconds, stop, on_wait)
            if not is_locked:
                yield False
                return
            os.ftruncate(handle, 0)
            os.write(handle, _holder_line().encode())
            yield True
        finally:
            if is_locked:  # a waiter must never read a finished sender's line as its holder
                os.ftruncate(handle, 0)
            os.close(handle)  # releases the lock

    def _lock(
        self,
        handle: int,
        path: Path,
        wait_seconds: float,
        stop: threading.Event | None,
        on_wait: Callable[[SendLockHolder], None] | None,
    ) -> bool:
        started = time.monotonic()
        is_told = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                holder = read_lock_holder(path)
                # The holder writes its line just after taking the lock: give it a moment.
                is_known = holder.pid is not None or time.monotonic() - started > 1
                if on_wait is not None and not is_told and is_known:
                    on_wait(holder)
                    is_told = True
                if time.monotonic() > started + wait_seconds:
                    raise StoreError(
                        f"{self.path}: another digest send (pid {holder.pid or '?'}) is still"
                        f" building the edition after {wait_seconds:.0f} s of waiting",
                        hint="let it finish, then run this one again: it joins the sending",
                    ) from None
            if stop is not None and stop.wait(0.2):
                return False
            if stop is None:
                time.sleep(0.2)

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

        ``is_synced=False`` commits without waiting for the disk (the next synced commit
        carries it): a power cut may then lose this commit, never one before it.
        """
        sent_at = now if state is DeliveryState.SENT else None
        if not is_synced:
            self._conn.execute("PRAGMA synchronous = NORMAL")
        try:
            self._set_state(delivery, state, now, sent_at, detail)
        finally:
            if not is_synced:
                self._conn.execute("PRAGMA synchronous = FULL")
        return replace(delivery, state=state, sent_at=sent_at, detail=detail)

    def _set_state(
        self,
        delivery: Delivery,
        state: DeliveryState,
        now: datetime,
        sent_at: datetime | None,
        detail: str | None,
    ) -> None:
        # A row that reached an outcome leaves its sender's hands; an uncertain one ("sending")
        # stays leased until the sender lets its batch go, so the others wait for it.
        with self._conn.atomic():
            self._conn.execute(
                "UPDATE deliveries SET state = ?, detail = ?, sent_at = ?, updated_at = ?,"
                " lease_until = CASE WHEN ? = 'sending' THEN lease_until END"
                " WHERE edition_on = ? AND address = ?",
                (
                    state,
                    detail,
                    to_text(sent_at),
                    to_text(now),
                    state,
                    delivery.edition_on.isoformat(),
                    delivery.address,
                ),
            )

    def deliveries(self, edition_on: date) -> tuple[Delivery, ...]:
        rows = self._conn.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE edition_on = ? ORDER BY rowid",
            (edition_on.isoformat(),),
        )
        return tuple(_delivery(edition_on, r) for r in rows)

    def sent_since(self, at: datetime) -> tuple[datetime, ...]:
        """When each message sent, or claimed ``sending``, after ``at`` was (oldest first)."""
        rows = self._conn.execute(
            "SELECT coalesce(sent_at, updated_at) AS at FROM deliveries"
            " WHERE (state = 'sent' AND sent_at > ?) OR (state = 'sending' AND updated_at > ?)"
            " ORDER BY at",
            (to_text(at), to_text(at)),
        )
        return tuple(datetime.fromisoformat(r[0]) for r in rows)

    def undelivered(self, since: date) -> tuple[Delivery, ...]:
        """Deliveries of editions since ``since`` that are not (known to be) sent."""
        rows = self._conn.execute(
            "SELECT edition_on FROM deliveries WHERE edition_on >= ? AND state != 'sent'"
            " GROUP BY edition_on ORDER BY edition_on",
            (since.isoformat(),),
        ).fetchall()
        return tuple(
            d
            for (day,) in rows
            for d in self.deliveries(date.fromisoformat(day))
            if d.state is not DeliveryState.SENT
        )
