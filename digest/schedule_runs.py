"""The runs of the daemon's jobs, and of ``digest collect`` and ``digest send``: the job-run
record each leaves in the store (``digest status`` reads them) and the one ``key=value``
line a daemon job leaves in the log."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import date, datetime, timedelta

from digest import collecting, sending
from digest.errors import DigestError, StoreError
from digest.ledger import delivery_detail
from digest.models import DeliveryState, JobRun, SendLockHolder
from digest.runtime import Runtime, utc_now
from digest.status import record_job_run

# The daemon's log lines keep the logger name they have always had.
logger = logging.getLogger("digest.schedule")


def collect_run(report: collecting.CollectReport, started: datetime, finished: datetime) -> JobRun:
    """The job-run record of one collect (the daemon's or a manual one)."""
    failures = tuple(f"{f.url}: {f.error_kind or 'error'}: {f.error}" for f in report.failed)
    if report.store_error:
        failures = (*failures, f"store failed: {report.store_error}")
    is_failed = report.all_failed or report.store_error is not None
    return JobRun(
        job="collect",
        started_at=started,
        finished_at=finished,
        outcome="stopped" if report.stopped_while else "failed" if is_failed else "ok",
        summary=(
            f"{len(report.feeds)} feeds: {len(report.failed)} failed, "
            f"{len(report.skipped) - len(report.taken)} not due"
            + (f", {len(report.taken)} another collector's" if report.taken else "")
            + f"; {report.new_stories} new stories"
            + (f"; stopped while {report.stopped_while}" if report.stopped_while else "")
        ),
        failures=failures,
    )


# Manual runs: `digest collect` and `digest send` are runs too, recorded as the daemon's jobs
# are (not logged: the command prints its own report), so `digest status` shows them.


def collect_now(
    runtime: Runtime, *, summarize: bool = True, stop: threading.Event | None = None
) -> collecting.CollectReport:
    """``digest collect``: collect every feed once, and record the run (a stopped one too)."""
    started = runtime.clock()
    report = collecting.collect_once(runtime, summarize=summarize, stop=stop)
    run = collect_run(report, started, runtime.clock())
    record_run(runtime, run, has_error_to_report=report.store_error is not None)
    return report


def send_now(
    runtime: Runtime,
    *,
    collect: bool,
    resend_uncertain: bool = False,
    force: bool = False,
    stop: threading.Event | None = None,
    on_wait: Callable[[SendLockHolder], None] | None = None,
    workers: int = 1,
) -> sending.SendReport:
    """``digest send``: send today's edition now, and record the run (an error too)."""
    started = runtime.clock()
    try:
        report = sending.send_edition(
            runtime,
            collect=collect,
            resend_uncertain=resend_uncertain,
            force=force,
            stop=stop,
            on_wait=on_wait,
            workers=workers,
        )
    except DigestError as exc:
        failed = edition_job_run(started, None, "failed", f"error: {exc}", ())
        record_run(runtime, failed, has_error_to_report=True)
        raise
    is_stopping = stop is not None and stop.is_set()
    run = edition_run(report, started, is_stopping=is_stopping)
    record_run(runtime, run, has_error_to_report=report.store_error is not None)
    return report


def record_run(runtime: Runtime, run: JobRun, *, has_error_to_report: bool) -> None:
    """Record a run. One that has an error to report already (its own, or its store's) still
    reports that one if the store cannot record the run either."""
    try:
        record_job_run(runtime, run)
    except StoreError as exc:
        if not has_error_to_report:
            raise
        logger.debug("the run could not be recorded either: %s", exc)


def finish_edition(
    runtime: Runtime,
    report: sending.SendReport,
    started: datetime,
    scheduled_at: datetime | None,
    late: timedelta,
    stop: threading.Event,
) -> None:
    """Record and log a daemon's run of an edition, with its delivery counts."""
    run = edition_run(
        report, started, scheduled_at=scheduled_at, late=late, is_stopping=stop.is_set()
    )
    counts = _delivery_counts(report)
    record_and_log(
        runtime,
        run,
        has_error_to_report=report.store_error is not None,
        late_seconds=int(late.total_seconds()),
        sent=counts["sent"] - len(report.already_sent),
        already_sent=len(report.already_sent),
        failed=counts["failed"],
        uncertain=counts["sending"],
        pending=counts["pending"],
        new=report.collect.new_stories if report.collect else 0,
        failed_feeds=len(report.collect.failed) if report.collect else 0,
    )


def _delivery_counts(report: sending.SendReport) -> dict[str, int]:
    return {state.value: len(report.in_state(state)) for state in DeliveryState}


def edition_run(
    report: sending.SendReport,
    started: datetime,
    *,
    scheduled_at: datetime | None = None,
    late: timedelta = timedelta(0),
    is_stopping: bool = False,
) -> JobRun:
    """The job-run record of one send of an edition (the daemon's or a manual one)."""
    counts = _delivery_counts(report)
    already = len(report.already_sent)
    failures = tuple(
        f"{d.recipient}: {d.state.value}: {delivery_detail(d)}".rstrip(": ")
        for d in report.deliveries
        if d.state in (DeliveryState.FAILED, DeliveryState.SENDING)
    )
    if report.aborted:
        failures = (*failures, f"mail backend unusable: {report.aborted}")
    if report.store_error:
        failures = (*failures, f"store failed: {report.store_error}")
    outcome = "late" if late else "ok"
    if report.store_error:
        outcome = "failed"
    elif report.stopped and report.rendered is None:
        outcome = "stopped"  # asked to stop while another sender held the send lock
    elif report.rendered is None:
        outcome = "empty"
    elif failures:
        outcome = "failed"
    elif counts["pending"] and is_stopping:
        outcome = "stopped"
    summary = (
        f"edition {report.edition_on}: sent {counts['sent'] - already}, already sent {already}, "
        f"failed {counts['failed']}, uncertain {counts['sending']}, pending {counts['pending']}"
    )
    if report.rendered is None:
        why = "the store failed" if report.store_error else "no new stories"
        summary = f"edition {report.edition_on}: {why}; nothing sent"
    if late:
        summary += f"; late by {span(late)} (scheduled {iso(scheduled_at)})"
    if report.resumes_at is not None:
        summary += f"; hourly rate limit reached: the rest go at {iso(report.resumes_at)}"
    return edition_job_run(started, scheduled_at, outcome, summary, failures, report.edition_on)


def edition_job_run(
    started: datetime,
    scheduled_at: datetime | None,
    outcome: str,
    summary: str,
    failures: tuple[str, ...],
    edition_on: date | None = None,
) -> JobRun:
    return JobRun(
        job="edition",
        started_at=started,
        finished_at=utc_now(),
        outcome=outcome,
        summary=summary,
        failures=failures,
        edition_on=edition_on,
        scheduled_at=scheduled_at,
    )


def record_and_log(
    runtime: Runtime, run: JobRun, *, has_error_to_report: bool = False, **fields: object
) -> None:
    record_run(runtime, run, has_error_to_report=has_error_to_report)
    log_run(run, **fields)


def log_run(run: JobRun, **fields: object) -> None:
    """The one structured line a job run leaves in the log."""
    seconds = (run.finished_at - run.started_at).total_seconds()
    line = {"job": run.job, "outcome": run.outcome, "seconds": f"{seconds:.2f}", **fields}
    if run.failures:
        line["failures"] = " | ".join(run.failures)
    line["summary"] = run.summary
    level = logging.WARNING if run.outcome in ("failed", "missed", "stopped") else logging.INFO
    logger.log(level, " ".join(f"{key}={_logfmt(value)}" for key, value in line.items()))


def _logfmt(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\\'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def iso(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "-"


def span(length: timedelta) -> str:
    minutes = int(length.total_seconds() // 60)
    if minutes < 1:
        return f"{int(length.total_seconds())}s"
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"
