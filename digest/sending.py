"""Sending: ``digest send`` and the daemon's edition job.

The day's edition is built once and archived with the ledger's pending rows in one commit,
then handed to the mail backend one recipient at a time, each outcome committed: a row is
``sending`` (its own synced commit) before the message goes out, and ``sent``, ``failed`` or
still ``sending`` (uncertain) right after; every retry reuses its Message-ID. One sender at a
time per store (the store's send lock). ``plan_edition`` is the read-only dry run.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime

from digest.collecting import CollectReport, collect_all
from digest.config import Settings
from digest.editions import build_edition, edition_failures, render_edition
from digest.errors import (
    DeliveryError,
    DigestError,
    MailerUnavailableError,
    RecipientRefusedError,
    StoreError,
    UncertainDeliveryError,
)
from digest.interrupt import Interrupted, abandonable, noting
from digest.ledger import edition_date, planned_deliveries
from digest.mailers import Mailer
from digest.messages import EditionMessages
from digest.models import Delivery, DeliveryState, RenderedDigest, SendLockHolder
from digest.rate_limits import Pacer
from digest.runtime import Clock, MailerFactory, Runtime
from digest.store import Store
from digest.subscribers import (
    Bounces,
    active_subscribers,
    edition_recipients,
    import_settings_recipients,
    require_recipients,
)
from digest.subscribing import unsubscribe_links

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class SendReport:
    edition_on: date
    rendered: RenderedDigest | None
    deliveries: tuple[Delivery, ...] = ()
    already_sent: tuple[Delivery, ...] = ()
    collect: CollectReport | None = None
    stopped: bool = False  # a stop request (SIGTERM, SIGINT) ended the run early ...
    # ... before any message: while "waiting" for the send lock, "collecting" or "building"
    # (nothing archived, nothing sent); None: while delivering, or not at all
    stopped_while: str | None = None
    aborted: str | None = None  # why the backend could not be used at all (TLS, login, ...)
    # The store failed (a full disk, a lock held too long, ...): sending stopped there, and
    # the row it could not update is reported as this run knows it
    store_error: str | None = None
    # ``[delivery].max_per_hour`` was reached: the rest stay pending until this time
    resumes_at: datetime | None = None

    def in_state(self, state: DeliveryState) -> tuple[Delivery, ...]:
        return tuple(d for d in self.deliveries if d.state is state)

    @property
    def is_stopped_waiting(self) -> bool:
        """Stopped while another sender held the send lock: this run did nothing."""
        return self.stopped_while == "waiting"

    @property
    def ok(self) -> bool:
        bad = (DeliveryState.FAILED, DeliveryState.SENDING, DeliveryState.PENDING)
        if self.aborted or self.store_error or self.stopped_while is not None:
            return False
        return not any(d.state in bad for d in self.deliveries)


def plan_edition(runtime: Runtime) -> SendReport:
    """What ``send --no-collect`` would do now, read-only: the edition and each recipient."""
    settings, store = runtime.settings, runtime.store
    now = runtime.clock()
    day = edition_date(settings, now)
    rendered = store.edition(day)
    stories = store.stories_for_edition(day) if rendered is None else ()
    if rendered is None and (stories or settings.render.empty_edition == "send"):
        digest = build_edition(runtime, stories, edition_failures(runtime, day), now)
        rendered = render_edition(settings, digest)
    ledger = {d.address: d for d in store.deliveries(day)}
    planned = planned_deliveries(settings, edition_recipients(runtime), day)
    deliveries = tuple(ledger.get(d.address, d) for d in planned)
    return SendReport(edition_on=day, rendered=rendered, deliveries=deliveries)


SEND_LOCK_WAIT_SECONDS = 900.0  # a second sender waits this long for the first to finish


def send_edition(
    runtime: Runtime,
    *,
    collect: bool,
    resend_uncertain: bool = False,
    force: bool = False,
    stop: threading.Event | None = None,
    edition_on: date | None = None,
    on_wait: Callable[[SendLockHolder], None] | None = None,
) -> SendReport:
    """Collect (optionally), build today's edition once, and deliver it to each recipient once.

    The mail settings are checked first. One sender at a time per store: a second one waits
    for the first (the store's send lock, taken before collecting), telling ``on_wait`` (by
    default, the log) who it waits for.
    ``stop`` is checked before each hand-over: once set, the message in flight is finished
    and committed, and the rest stay pending; a ``StopRequest`` (the CLI's) also ends
    collecting and building at once, before anything is archived. ``resend_uncertain``
    resends rows left ``sending`` by a crash; ``force`` sends the edition again to those
    already served; both keep each recipient's Message-ID. ``edition_on`` (default: today,
    in the readers' zone) is the daemon's scheduled date: an edition sent late, past
    midnight, is still its day's.
    """
    mailers = _mailers(runtime)
    mailers.require_usable()  # before any work: a missing password fails in a moment
    _ = runtime.summarizer  # and so does a summarizer's bad name
    require_recipients(runtime)  # and an edition for nobody
    # Locked before the final collect: a second sender waits, then finds the edition sent,
    # instead of collecting (and building) for nothing.
    lock = runtime.store.send_lock(
        wait_seconds=SEND_LOCK_WAIT_SECONDS, stop=stop, on_wait=on_wait or _log_waiting
    )
    with contextlib.ExitStack() as held:
        with noting(stop, "no longer waiting for the other sender; nothing is sent"):
            is_locked = held.enter_context(lock)
        if not is_locked:
            return _stopped_before_sending(runtime, edition_on, "waiting")
        collect_report = collect_all(runtime, stop=stop) if collect else None
        if collect_report is not None and collect_report.stopped_while:
            stopped = _stopped_before_sending(runtime, edition_on, "collecting")
            return replace(stopped, collect=collect_report)
        day = edition_on or edition_date(runtime.settings, runtime.clock())
        if collect_report is not None and collect_report.store_error:
            error = collect_report.store_error  # nothing is built on a failing store
            report = SendReport(edition_on=day, rendered=None, store_error=error)
        else:
            report = _send_locked(
                runtime, mailers, day, force=force, stop=stop, resend_uncertain=resend_uncertain
            )
    return replace(report, collect=collect_report)


def _mailers(runtime: Runtime) -> MailerFactory:
    if runtime.mailers is None:
        raise DigestError("cannot send from a read-only runtime (a preview, a dry run)")
    return runtime.mailers


def _stopped_before_sending(runtime: Runtime, edition_on: date | None, stage: str) -> SendReport:
    day = edition_on or edition_date(runtime.settings, runtime.clock())
    return SendReport(edition_on=day, rendered=None, stopped=True, stopped_while=stage)


def _log_waiting(holder: SendLockHolder) -> None:
    logger.warning("waiting for another digest send to finish (pid %s)", holder.pid or "?")


def _send_locked(
    runtime: Runtime,
    mailers: MailerFactory,
    day: date,
    *,
    resend_uncertain: bool,
    force: bool,
    stop: threading.Event | None,
) -> SendReport:
    store, now = runtime.store, runtime.clock()
    try:
        with abandonable(stop):  # until it is archived, an interrupt leaves no trace
            rendered = _archived_edition(runtime, now, day)
    except Interrupted:
        return SendReport(edition_on=day, rendered=None, stopped=True, stopped_while="building")
    if rendered is None:
        return SendReport(edition_on=day, rendered=None)
    with store.atomic():
        import_settings_recipients(runtime, now)  # new ones only: a reader who left stays out
        subscribers = active_subscribers(store)
        planned = planned_deliveries(runtime.settings, [s.recipient for s in subscribers], day)
        wanted = {d.address for d in planned}
        store.add_deliveries(planned, now)
        if force:
            store.reopen_deliveries(day, wanted, now)
    ledger = [d for d in store.deliveries(day) if d.address in wanted]
    already = tuple(d for d in ledger if d.state is DeliveryState.SENT)
    bounces = Bounces(store, runtime.settings.delivery.bounce_limit, subscribers)
    links = unsubscribe_links(runtime.settings, subscribers)
    messages = _edition_messages(runtime.settings, rendered, links)
    with noting(stop, "finishing the message in flight, then stopping"):
        halt = _deliver(runtime, mailers, messages, ledger, bounces, resend_uncertain, stop)
    is_store = halt is not None and isinstance(halt.error, StoreError)
    return SendReport(
        edition_on=day,
        rendered=rendered,
        deliveries=_ledger_after(store, day, wanted, halt),
        already_sent=already,
        stopped=stop is not None and stop.is_set(),
        aborted=str(halt.error) if halt and halt.error and not is_store else None,
        store_error=str(halt.error) if halt and is_store else None,
        resumes_at=halt.resumes_at if halt else None,
    )


def _ledger_after(
    store: Store, day: date, wanted: set[str], halt: _Halt | None
) -> tuple[Delivery, ...]:
    """This send's rows as the ledger has them now, but the one the store could not update
    as this run knows it (why it is uncertain)."""
    try:
        rows = store.deliveries(day)
    except StoreError:
        if halt is not None and isinstance(halt.error, StoreError):
            raise halt.error from None  # the failure that stopped the run is the one to tell
        raise
    known = {halt.unrecorded.address: halt.unrecorded} if halt and halt.unrecorded else {}
    return tuple(known.get(d.address, d) for d in rows if d.address in wanted)


def _archived_edition(runtime: Runtime, now: datetime, day: date) -> RenderedDigest | None:
    """``day``'s edition as archived, built and archived now if it is not yet; None if there
    is nothing to send."""
    settings, store = runtime.settings, runtime.store
    if (archived := store.edition(day)) is not None:
        return archived
    stories = store.stories_for_edition(day)
    if not stories and settings.render.empty_edition == "skip":
        return None
    digest = build_edition(runtime, stories, edition_failures(runtime, day), now, day)
    rendered = render_edition(settings, digest)
    with store.atomic():
        # Re-checked under the write lock: an older digest may have archived it meanwhile.
        if store.edition(day) is None:
            store.create_edition(rendered, [s.story_id for s in stories], now)
    return store.edition(day) or rendered


@dataclass(frozen=True, slots=True, kw_only=True)
class _Halt:
    """Why delivering stopped before the last recipient: the backend or the store failed,
    or the hourly rate limit was reached (until ``resumes_at``)."""

    error: MailerUnavailableError | StoreError | None = None
    resumes_at: datetime | None = None
    unrecorded: Delivery | None = None  # the row the store could not update, as it stands


def _deliver(
    runtime: Runtime,
    mailers: MailerFactory,
    messages: EditionMessages,
    ledger: Sequence[Delivery],
    bounces: Bounces,
    resend_uncertain: bool,
    stop: threading.Event | None,
) -> _Halt | None:
    """Hand each due delivery to the mail backend, one commit each; why the run stopped
    early if the backend could not be used at all, the store failed or the hourly rate
    limit was reached (no message is sent after that: the SMTP session is closed)."""
    due_states = {DeliveryState.PENDING, DeliveryState.FAILED}
    if resend_uncertain:
        due_states.add(DeliveryState.SENDING)
    due = [d for d in ledger if d.state in due_states]
    if not due:
        return None
    store, clock = runtime.store, runtime.clock
    pacer = Pacer(store, runtime.settings.delivery, clock, runtime.sleep, stop)
    if (resumes_at := pacer.next_turn()) is not None:  # no SMTP session for nothing
        return _Halt(resumes_at=resumes_at)
    with contextlib.closing(mailers()) as mailer:
        for done, delivery in enumerate(due):
            if done and (resumes_at := pacer.next_turn()) is not None:
                logger.warning("hourly limit reached: %d recipients left pending", len(due) - done)
                return _Halt(resumes_at=resumes_at)
            if stop is not None and stop.is_set():
                logger.warning("stopped: %d recipients left pending", len(due) - done)
                return None
            try:
                _deliver_one(store, mailer, messages, delivery, clock, bounces, resend_uncertain)
            except MailerUnavailableError as exc:
                # Not an error line too: the caller reports it (the CLI's "Error:", the
                # daemon's run line), and a log line besides printed every fatal error twice.
                logger.debug("delivery stopped: %s", exc)
                return _Halt(error=exc)
            except StoreError as exc:  # its row could not be marked "sending": not sent
                stopped = f"sending stopped before {delivery.recipient}: nothing more was sent"
                return _Halt(error=_with_context(exc, stopped))
            except _NotRecorded as exc:
                return _Halt(error=exc.error, unrecorded=exc.delivery)
    return None


def _with_context(error: StoreError, context: str) -> StoreError:
    return StoreError(
        f"{error.message}; {context}", path=error.path, cause=error.cause, hint=error.hint
    )


class _ClaimedElsewhere(Exception):
    """Another sender moved the row first (only an older digest without the send lock)."""


def _deliver_one(
    store: Store,
    mailer: Mailer,
    messages: EditionMessages,
    delivery: Delivery,
    clock: Clock,
    bounces: Bounces,
    resend_uncertain: bool = False,
) -> None:
    """Send one message; the row becomes ``sending`` (own commit) just before the message
    goes out and ``sent``, ``failed`` or stays ``sending`` (uncertain) right after, with the
    subscriber's bounce count in the same commit. If the store cannot record that outcome,
    ``_NotRecorded`` stops the run."""
    message = messages.for_recipient(delivery.recipient, delivery.message_id, clock())
    claimed: list[Delivery] = []

    def before_data() -> None:
        if not claimed:
            row = store.claim_delivery(delivery, clock(), is_uncertain_ok=resend_uncertain)
            if row is None:
                raise _ClaimedElsewhere(delivery.recipient)
            claimed.append(row)

    try:
        answer = mailer.send(message, before_data=before_data)
    except _ClaimedElsewhere:
        return
    except StoreError:
        raise  # the claim could not be committed: nothing went out, and the run stops
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
        self.error = _with_context(
            error,
            f"sending stopped at {row.recipient}: {outcome}, but the store could not record"
            f" that{after}",
        )


def _edition_messages(
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
