"""Sending: one sender's turn through an edition's delivery ledger, the work queue that any
number of senders (threads, processes, machines) share.

A sender leases a batch of due rows (``Ledger.claim_batch``, on the database's clock),
renews the lease while it works through them, and lets the rest go when it stops or the
batch is done. Each row is claimed ``sending`` in its own commit just before the message
goes out, together with its rate-limit slot, and refused if another sender took the lease
meanwhile; then it is ``sent``, ``failed`` or stays ``sending`` (uncertain: reported, never
resent without ``--resend-uncertain``). A sender that dies keeps its rows only until its
lease runs out; the others wait for them and send them then. Reads the archived edition
and the subscribers; writes the ledger and the bounce counts.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime

from digest.config import Settings
from digest.errors import (
    DeliveryError,
    DigestError,
    MailerUnavailableError,
    RecipientRefusedError,
    StoreError,
    UncertainDeliveryError,
)
from digest.ledger import planned_deliveries
from digest.mailers import Mailer
from digest.messages import EditionMessages
from digest.models import Delivery, DeliveryState, RenderedDigest
from digest.rate_limits import Pacer, RateLimited
from digest.runtime import Clock, MailerFactory, Runtime
from digest.store import Store
from digest.subscribers import Bounces, active_subscribers
from digest.subscribing import unsubscribe_links

logger = logging.getLogger(__name__)

BATCH_SIZE = 50  # rows a sender leases at a time: few round trips, little left to others


def new_sender_id(worker: int = 0) -> str:
    """A name for one sender, unique across machines, processes and their workers."""
    return f"{socket.gethostname()}:{os.getpid()}:{worker}:{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueTurn:
    """What a sender needs to work through an edition's queue (the same for every worker)."""

    edition_on: date
    retry_before: datetime  # failed (and uncertain) rows last updated before this are due
    resend_uncertain: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Halt:
    """Why a sender stopped before the queue was empty: the backend or the store failed, or
    the hourly rate limit was reached (until ``resumes_at``)."""

    error: MailerUnavailableError | StoreError | None = None
    resumes_at: datetime | None = None
    unrecorded: Delivery | None = None  # the row the store could not update, as it stands


def work_queue(
    runtime: Runtime,
    mailers: MailerFactory,
    turn: QueueTurn,
    *,
    sender: str,
    stop: threading.Event | None = None,
) -> Halt | None:
    """Lease and deliver batches of the edition's due rows until none is left (waiting for
    rows other live senders hold); why it stopped early, if it did."""
    rendered = runtime.store.edition(turn.edition_on)
    if rendered is None:
        raise DigestError(f"edition {turn.edition_on} is not archived: nothing to send")
    subscribers = active_subscribers(runtime.store)
    recipients = [s.recipient for s in subscribers]
    planned = planned_deliveries(runtime.settings, recipients, turn.edition_on)
    sending = _Sending(
        runtime,
        turn,
        sender,
        wanted=frozenset(d.address for d in planned),
        messages=edition_messages(
            runtime.settings, rendered, unsubscribe_links(runtime.settings, subscribers)
        ),
        bounces=Bounces(runtime.store, runtime.settings.delivery.bounce_limit, subscribers),
        pacer=Pacer(runtime.store, runtime.settings.delivery, runtime.clock, runtime.sleep, stop),
    )
    with contextlib.closing(mailers()) as mailer:
        return sending.run(mailer, stop)


class _Sending:
    """One sender's work through the queue: its leases, its pace and its recipients."""

    def __init__(
        self,
        runtime: Runtime,
        turn: QueueTurn,
        sender: str,
        *,
        wanted: frozenset[str],
        messages: EditionMessages,
        bounces: Bounces,
        pacer: Pacer,
    ) -> None:
        self.store, self.clock, self.turn, self.sender = runtime.store, runtime.clock, turn, sender
        self.lease_seconds = float(runtime.settings.delivery.lease_seconds)
        self.wanted, self.messages, self.bounces, self.pacer = wanted, messages, bounces, pacer
        self.skipped: set[str] = set()  # rows of readers no longer active: left as they are
        self.renewed = time.monotonic()

    def run(self, mailer: Mailer, stop: threading.Event | None) -> Halt | None:
        try:
            halt = self._run(mailer, stop)
            if halt is not None and halt.resumes_at is not None:
                self._wait_for_others(stop)
            return halt
        except StoreError as exc:  # leasing, renewing or counting: nothing was in flight
            return Halt(error=with_context(exc, "sending stopped; nothing more was sent"))

    def _wait_for_others(self, stop: threading.Event | None) -> None:
        """At the hourly limit the other senders stop too: wait for the messages they have in
        flight, so the report shows them sent, not as this sender's uncertain rows."""
        while not _is_set(stop) and self.store.leased_elsewhere(self.turn.edition_on, self.sender):
            _wait(stop, min(1.0, self.lease_seconds / 4))

    def _run(self, mailer: Mailer, stop: threading.Event | None) -> Halt | None:
        is_told = False
        while not _is_set(stop):
            limited = self.pacer.limited_at(self.clock())
            if limited is not None and limited.is_hourly:  # lease nothing for nothing
                return Halt(resumes_at=limited.until)
            batch = self._claim()
            if not batch:
                held = self.store.leased_elsewhere(self.turn.edition_on, self.sender)
                if not held:
                    return None
                if not is_told:
                    logger.info("%d recipients are with other senders: waiting for them", held)
                    is_told = True
                _wait(stop, min(1.0, self.lease_seconds / 4))  # for others' rows, or their lease
                continue
            try:
                halt = self._deliver_batch(mailer, batch, stop)
            finally:
                # Nobody else can take the rest until the lease ends; a store too broken to
                # say so lets it run out by itself.
                with contextlib.suppress(StoreError):
                    self.store.release_leases(self.sender)
            if halt is not None:
                return halt
        return None

    def _claim(self) -> tuple[Delivery, ...]:
        self.renewed = time.monotonic()
        return self.store.claim_batch(
            self.turn.edition_on,
            self.sender,
            size=BATCH_SIZE,
            lease_seconds=self.lease_seconds,
            retry_before=self.turn.retry_before,
            is_uncertain_ok=self.turn.resend_uncertain,
            excluding=self.skipped,
        )

    def _deliver_batch(
        self, mailer: Mailer, batch: Sequence[Delivery], stop: threading.Event | None
    ) -> Halt | None:
        """Hand each row of the batch to the mail backend, one commit each."""
        for done, delivery in enumerate(batch):
            if delivery.address not in self.wanted:
                self.skipped.add(delivery.address)
                continue
            if _is_set(stop):
                logger.warning("stopped: %d leased recipients given back", len(batch) - done)
                return None
            if time.monotonic() - self.renewed > self.lease_seconds / 3:
                self.store.renew_leases(self.sender, self.lease_seconds)
                self.renewed = time.monotonic()
            if (halt := self._deliver_paced(mailer, delivery, stop)) is not None:
                return halt
        return None

    def _deliver_paced(
        self, mailer: Mailer, delivery: Delivery, stop: threading.Event | None
    ) -> Halt | None:
        """Deliver one row within the rate limits: wait for the minute's window, stop at
        the hour's; a stop while waiting leaves it pending."""
        while True:
            if (resumes_at := self.pacer.next_turn()) is not None:
                logger.warning("hourly limit reached: the rest are left pending")
                return Halt(resumes_at=resumes_at)
            if _is_set(stop):
                return None
            try:
                return self._deliver(mailer, delivery)
            except RateLimited as limited:  # another sender took the last slot first
                if limited.is_hourly:
                    return Halt(resumes_at=limited.until)

    def _deliver(self, mailer: Mailer, delivery: Delivery) -> Halt | None:
        try:
            deliver_one(
                self.store,
                mailer,
                self.messages,
                delivery,
                self.clock,
                self.bounces,
                claim=functools.partial(self._claim_sending, delivery),
            )
        except MailerUnavailableError as exc:
            # Not an error line too: the caller reports it (the CLI's "Error:", the
            # daemon's run line), and a log line besides printed every fatal error twice.
            logger.debug("delivery stopped: %s", exc)
            return Halt(error=exc)
        except StoreError as exc:  # its row could not be marked "sending": not sent
            stopped = f"sending stopped before {delivery.recipient}: nothing more was sent"
            return Halt(error=with_context(exc, stopped))
        except _NotRecorded as exc:
            return Halt(error=exc.error, unrecorded=exc.delivery)
        return None

    def _claim_sending(self, delivery: Delivery) -> Delivery | None:
        """The row, now ``sending``, with its rate-limit slot taken in the same commit (no
        other sender claims one meanwhile); None if the lease went to another sender."""
        with self.store.atomic():
            if (limited := self.pacer.limited_at(self.clock())) is not None:
                raise limited
            return self.store.claim_delivery(
                delivery,
                self.clock(),
                sender=self.sender,
                is_uncertain_ok=self.turn.resend_uncertain,
            )


def _is_set(stop: threading.Event | None) -> bool:
    return stop is not None and stop.is_set()


def _wait(stop: threading.Event | None, seconds: float) -> None:
    # Real time, not the runtime's sleep: leases run on the database's clock.
    if stop is not None:
        stop.wait(seconds)
    else:
        time.sleep(seconds)


def with_context(error: StoreError, context: str) -> StoreError:
    """The store's error, with what sending did about it."""
    return StoreError(
        f"{error.message}; {context}", path=error.path, cause=error.cause, hint=error.hint
    )


class _ClaimedElsewhere(Exception):
    """Another sender moved the row first, or took its lease."""


def deliver_one(
    store: Store,
    mailer: Mailer,
    messages: EditionMessages,
    delivery: Delivery,
    clock: Clock,
    bounces: Bounces,
    *,
    claim: Callable[[], Delivery | None],
) -> None:
    """Send one message; the row becomes ``sending`` (``claim``, own commit) just before the
    message goes out and ``sent``, ``failed`` or stays ``sending`` (uncertain) right after,
    with the subscriber's bounce count in the same commit. If the store cannot record that
    outcome, ``_NotRecorded`` stops the run."""
    message = messages.for_recipient(delivery.recipient, delivery.message_id, clock())
    claimed: list[Delivery] = []

    def before_data() -> None:
        if not claimed:
            row = claim()
            if row is None:
                raise _ClaimedElsewhere(delivery.recipient)
            claimed.append(row)

    try:
        answer = mailer.send(message, before_data=before_data)
    except _ClaimedElsewhere:
        return
    except (StoreError, RateLimited):
        raise  # not claimed: nothing went out; the caller decides
    except MailerUnavailableError as exc:
        if claimed:  # claimed, then the retries could not reach the server: never delivered
            _record(store, claimed[0], DeliveryState.PENDING, clock(), f"not sent: {exc}")
        raise  # the run stops
    except UncertainDeliveryError as exc:
        logger.error("delivery to %s is uncertain: %s", delivery.recipient, exc)
        _record(store, claimed[0], DeliveryState.SENDING, clock(), f"uncertain: {exc}")
    except DeliveryError as exc:
        logger.error("delivery to %s failed: %s", delivery.recipient, exc)
        row, now = claimed[0] if claimed else delivery, clock()
        bounce = _bounce(bounces, row, exc, now)
        _record(store, row, DeliveryState.FAILED, now, str(exc), also=bounce)
    except Exception as exc:  # the per-recipient boundary: the others still get theirs
        logger.exception("unexpected error delivering to %s", delivery.recipient)
        if claimed:  # whether the backend took the message is unknown: uncertain
            detail = f"uncertain: {type(exc).__name__}: {exc}"
            _record(store, claimed[0], DeliveryState.SENDING, clock(), detail)
    else:
        # Not synced to disk: if a power cut lost it, the row would be "sending" (reported
        # as uncertain), never "pending"; the next claim's synced commit carries it anyway.
        address = delivery.address
        clear = (
            functools.partial(bounces.delivered, address) if bounces.has_count(address) else None
        )
        _record(store, claimed[0], DeliveryState.SENT, clock(), answer, is_synced=False, also=clear)


def _bounce(
    bounces: Bounces, row: Delivery, error: DeliveryError, now: datetime
) -> Callable[[], None] | None:
    """Counting a refusal towards the subscriber's bounce; None for any other failure."""
    if not isinstance(error, RecipientRefusedError):
        return None
    return functools.partial(bounces.refused, row.address, row.edition_on, error, now)


def _record(
    store: Store,
    row: Delivery,
    state: DeliveryState,
    now: datetime,
    detail: str,
    *,
    is_synced: bool = True,
    also: Callable[[], None] | None = None,
) -> None:
    """Move the row to ``state`` in its own commit, with ``also`` (the subscriber's bounce
    count) in the same one."""
    try:
        if also is None:
            store.set_delivery_state(row, state, now, detail, is_synced=is_synced)
            return
        with store.atomic():
            store.set_delivery_state(row, state, now, detail)
            also()
    except StoreError as exc:
        raise _NotRecorded(row, state, detail, exc) from exc


# What happened to a message, for a row whose outcome the store could not record.
_OUTCOMES = {
    DeliveryState.SENT: "the server accepted it ({})",
    DeliveryState.FAILED: "it failed ({})",
    DeliveryState.PENDING: "it was not sent ({})",
    DeliveryState.SENDING: "{}",  # "uncertain: ..." already
}


class _NotRecorded(Exception):
    """The store failed while recording a message's outcome: the run stops. ``delivery`` is
    the row as the ledger still has it (``sending`` once claimed: uncertain), saying what
    happened; ``error`` is the message for the user."""

    def __init__(self, row: Delivery, state: DeliveryState, detail: str, error: StoreError) -> None:
        outcome = _OUTCOMES[state].format(detail)
        super().__init__(outcome)
        self.delivery = replace(
            row, detail=f"{outcome}, but the store could not record that: {error.cause}"
        )
        is_uncertain = row.state is DeliveryState.SENDING
        after = ", so it is uncertain" if is_uncertain else "; the next send tries it again"
        self.error = with_context(
            error,
            f"sending stopped at {row.recipient}: {outcome}, but the store could not record"
            f" that{after}",
        )


def edition_messages(
    settings: Settings, rendered: RenderedDigest, links: Mapping[str, str] | None
) -> EditionMessages:
    """The edition's messages: with ``links`` (``[web].base_url``) each reader's own one-click
    URL in List-Unsubscribe and the footer, else the one static ``unsubscribe_url``."""
    options = settings.delivery
    return EditionMessages(
        rendered,
        sender=options.from_,
        unsubscribe_url=options.unsubscribe_url,
        unsubscribe_mailto=options.unsubscribe_mailto,
        list_id=options.list_id,
        reader_links=links,
    )
