"""Sending: ``digest send`` and the daemon's edition job.

The day's edition is built once, by whichever sender holds the store's send lock, and
archived with the ledger's pending rows; then every sender (this command's workers, other
commands, other machines) works through the ledger as a queue (``digest.send_queue``), each
outcome committed: a row is ``sending`` (its own synced commit) before the message goes out,
and ``sent``, ``failed`` or still ``sending`` (uncertain) right after; every retry reuses its
Message-ID. ``plan_edition`` is the read-only dry run.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime

from digest.collecting import CollectReport, collect_all
from digest.editions import build_edition, edition_failures, render_edition
from digest.errors import DigestError, StoreError
from digest.interrupt import Interrupted, abandonable, noting
from digest.ledger import edition_date, planned_deliveries
from digest.models import Delivery, DeliveryState, RenderedDigest, SendLockHolder
from digest.runtime import MailerFactory, Runtime
from digest.send_queue import Halt, QueueTurn
from digest.send_workers import send_with_workers
from digest.store import Store
from digest.subscribers import (
    active_subscribers,
    edition_recipients,
    import_settings_recipients,
    require_recipients,
)

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


SEND_LOCK_WAIT_SECONDS = 900.0  # a second sender waits this long for the edition to be built


def send_edition(
    runtime: Runtime,
    *,
    collect: bool,
    resend_uncertain: bool = False,
    force: bool = False,
    stop: threading.Event | None = None,
    edition_on: date | None = None,
    on_wait: Callable[[SendLockHolder], None] | None = None,
    workers: int = 1,
) -> SendReport:
    """Collect (optionally), build today's edition once, and deliver it to each recipient once.

    The mail settings are checked first. The edition is built by one sender at a time (the
    store's send lock, taken before collecting): another one waits for it, telling
    ``on_wait`` (by default, the log) who it waits for, then finds the edition archived,
    collects nothing, and joins in sending: any number of senders (``workers`` here, and
    other processes) share the ledger as a work queue (``digest.send_queue``).
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
    started = runtime.clock()
    prepared = _prepare(runtime, collect, force, stop, edition_on, on_wait or _log_waiting)
    if isinstance(prepared, SendReport):
        return prepared
    turn = QueueTurn(
        edition_on=prepared.day, retry_before=started, resend_uncertain=resend_uncertain
    )
    with noting(stop, "finishing the message in flight, then stopping"):
        halt = send_with_workers(runtime, mailers, turn, workers=workers, stop=stop)
    return _report(runtime, prepared, halt, stop)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Prepared:
    """The edition archived and its rows in the ledger: what the senders work through."""

    day: date
    rendered: RenderedDigest
    wanted: frozenset[str]  # the active subscribers' addresses
    already: tuple[Delivery, ...]  # sent before this send began
    collect: CollectReport | None


def _prepare(
    runtime: Runtime,
    collect: bool,
    force: bool,
    stop: threading.Event | None,
    edition_on: date | None,
    on_wait: Callable[[SendLockHolder], None],
) -> _Prepared | SendReport:
    """Under the send lock: collect unless the edition is archived already, build and
    archive it once, and add its ledger rows; a report instead if there is nothing to send."""
    lock = runtime.store.send_lock(wait_seconds=SEND_LOCK_WAIT_SECONDS, stop=stop, on_wait=on_wait)
    with contextlib.ExitStack() as held:
        with noting(stop, "no longer waiting for the other sender; nothing is sent"):
            is_locked = held.enter_context(lock)
        if not is_locked:
            return _stopped_before_sending(runtime, edition_on, "waiting")
        day = edition_on or edition_date(runtime.settings, runtime.clock())
        is_built = runtime.store.edition(day) is not None  # by another sender: join it
        collect_report = collect_all(runtime, stop=stop) if collect and not is_built else None
        if collect_report is not None and collect_report.stopped_while:
            stopped = _stopped_before_sending(runtime, edition_on, "collecting")
            return replace(stopped, collect=collect_report)
        if collect_report is not None and collect_report.store_error:
            error = collect_report.store_error  # nothing is built on a failing store
            return SendReport(
                edition_on=day, rendered=None, store_error=error, collect=collect_report
            )
        prepared = _prepare_locked(runtime, day, force=force, stop=stop)
    return replace(prepared, collect=collect_report)


def _mailers(runtime: Runtime) -> MailerFactory:
    if runtime.mailers is None:
        raise DigestError("cannot send from a read-only runtime (a preview, a dry run)")
    return runtime.mailers


def _stopped_before_sending(runtime: Runtime, edition_on: date | None, stage: str) -> SendReport:
    day = edition_on or edition_date(runtime.settings, runtime.clock())
    return SendReport(edition_on=day, rendered=None, stopped=True, stopped_while=stage)


def _log_waiting(holder: SendLockHolder) -> None:
    logger.warning(
        "waiting for another digest send (pid %s) to build the edition; then sending with it",
        holder.pid or "?",
    )


def _prepare_locked(
    runtime: Runtime, day: date, *, force: bool, stop: threading.Event | None
) -> _Prepared | SendReport:
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
        wanted = frozenset(d.address for d in planned)
        store.add_deliveries(planned, now)
        if force:
            store.reopen_deliveries(day, wanted, now)
    already = tuple(
        d for d in store.deliveries(day) if d.address in wanted and d.state is DeliveryState.SENT
    )
    return _Prepared(day=day, rendered=rendered, wanted=wanted, already=already, collect=None)


def _report(
    runtime: Runtime, prepared: _Prepared, halt: Halt | None, stop: threading.Event | None
) -> SendReport:
    """The edition's rows as the ledger has them after every sender, and why it stopped."""
    is_store = halt is not None and isinstance(halt.error, StoreError)
    return SendReport(
        edition_on=prepared.day,
        rendered=prepared.rendered,
        deliveries=_ledger_after(runtime.store, prepared.day, prepared.wanted, halt),
        already_sent=prepared.already,
        collect=prepared.collect,
        stopped=stop is not None and stop.is_set(),
        aborted=str(halt.error) if halt and halt.error and not is_store else None,
        store_error=str(halt.error) if halt and is_store else None,
        resumes_at=halt.resumes_at if halt else None,
    )


def _ledger_after(
    store: Store, day: date, wanted: frozenset[str], halt: Halt | None
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
