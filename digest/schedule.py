"""Schedule: the ``digest run`` daemon. APScheduler wiring only; the jobs are use-case calls,
each with a runtime of its own (they run on the scheduler's thread; a store connection must
not cross threads).

Jobs: ``collect`` every ``[schedule].collect_every_minutes`` (each feed's politeness is the
collect's: a feed not due is skipped and reported), and one ``edition-N`` job per edition
schedule (``send_at`` with ``days``, or each ``cron`` line), doing a final collect, then
build, summarize, render and send. One worker thread: jobs never overlap.

No persistent APScheduler job store. The jobs are rebuilt from the settings at every start,
and what must outlive the process lives in the digest store itself: the delivery ledger
(which edition went to whom), ``job_runs`` (every run, every missed edition) and each feed's
not-before time. APScheduler's SQLAlchemyJobStore was the alternative; it pickles each job
with its arguments (the Settings), so an edited settings file would be fought by the stored
jobs; it brings SQLAlchemy in for one table; two schedulers cannot share it safely; and its
catch-up replays what the trigger missed, where ours must follow the ledger. One edition per
local date is the ledger's guarantee, whichever process or trigger fires.

Time rules:

- Each edition trigger is a CronTrigger in the readers' zone that fires at most once per
  local date (``OncePerDay``): APScheduler 3.11 fires a 01:30 America/New_York job twice on
  the fall-back night (asked again, it keeps answering the same instant), and after a
  spring-forward night skips the next day of a 00:30 job; the wrapper asks for each local
  day afresh.
- Catch-up, at start-up and in ``run --once``: of the edition times since the daemon last
  ran whose edition someone is still owed, the latest goes out at once, late and logged so,
  if it is within ``misfire_grace_hours``; every other one is recorded as missed (never sent:
  no burst). A running daemon that misses a time by more than the grace (the machine slept)
  records it as missed too.
- SIGTERM or SIGINT sets a stop event: the running job finishes the message in hand
  (``send_edition`` checks before each hand-over), its state is committed, and the process
  exits 0. A second signal exits at once (``os._exit``): SQLite's journal keeps the store
  whole, and a message caught mid-hand-over stays ``sending`` (reported, never resent).
- Logs: one ``key=value`` line per job run (job, outcome, seconds, counts, what failed) to
  stderr and, with ``[schedule].log_file``, to that file (reopened when logrotate moves it).
  The run records and those lines are made in schedule_runs.py.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from types import FrameType

from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from digest import collecting, sending
from digest.config import Settings
from digest.interrupt import exit_on_further_signals
from digest.ledger import edition_date, is_edition_outstanding
from digest.logs import ZonedFormatter
from digest.runtime import Runtime, utc_now
from digest.schedule_runs import (
    collect_run,
    edition_job_run,
    finish_edition,
    iso,
    log_run,
    record_and_log,
    span,
)
from digest.status import last_activity, record_missed_edition
from digest.triggers import edition_triggers, fire_times, next_edition_times

logger = logging.getLogger(__name__)

# How far back start-up looks for edition times the daemon was down for.
LOOKBACK = timedelta(days=7)
# A scheduled run this much after its time (queued behind a collect, say) counts as late;
# a catch-up after downtime always does.
LATE_AFTER = timedelta(minutes=1)


def grace(settings: Settings) -> timedelta:
    return timedelta(hours=settings.schedule.misfire_grace_hours)


@dataclass(frozen=True, slots=True, kw_only=True)
class CatchUp:
    """What a (re)start owes: the edition to send late, and the ones to record as missed."""

    late: datetime | None = None
    missed: tuple[datetime, ...] = ()


def plan_catch_up(
    settings: Settings,
    now: datetime,
    since: datetime | None,
    is_outstanding: Callable[[date], bool],
) -> CatchUp:
    """Of the edition times still owed, the latest within the grace goes out late; every
    other one since the daemon last ran (``since``; None: a new store) is missed."""
    since = since or now - grace(settings)
    # The grace window is looked at even if the daemon ran in it: a delivery that failed
    # then is retried now.
    start = max(min(since, now - grace(settings)), now - LOOKBACK)
    latest_per_day: dict[date, datetime] = {}
    for trigger in edition_triggers(settings):
        for fire in fire_times(trigger, start, now):
            day = edition_date(settings, fire)
            latest_per_day[day] = max(fire, latest_per_day.get(day, fire))
    owed = sorted(t for day, t in latest_per_day.items() if is_outstanding(day))
    late = owed[-1] if owed and now - owed[-1] <= grace(settings) else None
    return CatchUp(late=late, missed=tuple(t for t in owed if t != late and t > since))


# Jobs


def collect_job(settings: Settings, stop: threading.Event) -> collecting.CollectReport | None:
    """Collect every feed that is due; record and log the run."""
    if stop.is_set():
        return None
    with Runtime.open(settings) as runtime:
        return _collect(runtime)


def _collect(runtime: Runtime) -> collecting.CollectReport:
    started = utc_now()
    report = collecting.collect_once(runtime)
    skipped = [f"{f.url} until {iso(f.not_before)}" for f in report.skipped]
    run = collect_run(report, started, utc_now())
    record_and_log(
        runtime,
        run,
        has_error_to_report=report.store_error is not None,
        feeds=len(report.feeds),
        new=report.new_stories,
        failed=len(run.failures),
        not_due=len(skipped),
        not_due_feeds="; ".join(skipped),
        pages_failed=len(report.pages_failed),
        pages_skipped=len(report.pages_skipped),
    )
    return report


# Told of an edition run the hourly rate limit stopped (``SendReport.resumes_at``).
HeldBack = Callable[[sending.SendReport], None]


def edition_job(
    settings: Settings,
    stop: threading.Event,
    scheduled_at: datetime | None = None,
    *,
    is_reraised: bool = False,
    on_held_back: HeldBack | None = None,
) -> sending.SendReport | None:
    """Send the edition due at ``scheduled_at`` (default: the latest time due); record and
    log the run; an edition past its grace is recorded as missed, never sent. An error is
    recorded, then raised again only if ``is_reraised`` (``run --once``: its exit code).
    ``on_held_back`` is told of a run the hourly rate limit stopped."""
    if stop.is_set():
        return None
    with Runtime.open(settings) as runtime:
        report = _edition(runtime, stop, scheduled_at, is_reraised=is_reraised)
    if report is not None and report.resumes_at is not None and on_held_back is not None:
        on_held_back(report)
    return report


def resume_edition_job(
    settings: Settings, stop: threading.Event, day: date, on_held_back: HeldBack
) -> sending.SendReport | None:
    """Send the rest of ``day``'s edition, held back by the hourly rate limit: no collect
    and no grace (the edition is archived and partly sent, its readers are owed it)."""
    if stop.is_set():
        return None
    with Runtime.open(settings) as runtime:
        report = _send_and_record(
            runtime, stop, utc_now(), None, timedelta(0), day, collect=False, is_reraised=False
        )
    if report is not None and report.resumes_at is not None:
        on_held_back(report)
    return report


def _resume_later(
    scheduler: BackgroundScheduler, settings: Settings, stop: threading.Event
) -> HeldBack:
    """Schedule the rest of a held-back edition for when the hour's window frees up."""

    def resume(report: sending.SendReport) -> None:
        logger.warning(
            "edition %s: hourly rate limit reached; the rest go at %s",
            report.edition_on,
            iso(report.resumes_at),
        )
        scheduler.add_job(
            resume_edition_job,
            DateTrigger(run_date=report.resumes_at),
            args=[settings, stop, report.edition_on, resume],
            id="edition-resume",
            replace_existing=True,
            **_job_options(settings),
        )

    return resume


def _edition(
    runtime: Runtime,
    stop: threading.Event,
    scheduled_at: datetime | None,
    *,
    is_reraised: bool,
) -> sending.SendReport | None:
    settings = runtime.settings
    started = utc_now()
    is_catch_up = scheduled_at is not None  # the trigger's own runs are not told their time
    scheduled_at = scheduled_at or _latest_time(settings, started)
    late = started - scheduled_at if scheduled_at else timedelta(0)
    if not is_catch_up and late <= LATE_AFTER:
        late = timedelta(0)
    if scheduled_at is not None and late > grace(settings):
        _record_missed(runtime, scheduled_at, started)
        return None
    # The scheduled time's date, not the clock's: a 23:30 edition sent at 00:30 is still
    # its own day's, and leaves the new day's edition to its own time.
    day = edition_date(settings, scheduled_at) if scheduled_at else None
    return _send_and_record(
        runtime, stop, started, scheduled_at, late, day, collect=True, is_reraised=is_reraised
    )


def _send_and_record(
    runtime: Runtime,
    stop: threading.Event,
    started: datetime,
    scheduled_at: datetime | None,
    late: timedelta,
    day: date | None,
    *,
    collect: bool,
    is_reraised: bool,
) -> sending.SendReport | None:
    try:
        report = sending.send_edition(runtime, collect=collect, stop=stop, edition_on=day)
    except Exception as exc:  # the job boundary: logged and recorded, the daemon goes on
        if not is_reraised:  # else the caller reports it (`run --once`: "Error:"), once
            logger.exception("edition job failed")
        failed = edition_job_run(started, scheduled_at, "failed", f"error: {exc}", ())
        record_and_log(runtime, failed, has_error_to_report=True, error=type(exc).__name__)
        if is_reraised:
            raise
        return None
    finish_edition(runtime, report, started, scheduled_at, late, stop)
    return report


def _latest_time(settings: Settings, now: datetime) -> datetime | None:
    """The latest edition time at or before ``now`` (within a day and the grace)."""
    window = now - timedelta(days=1) - grace(settings)
    times = [t for trigger in edition_triggers(settings) for t in fire_times(trigger, window, now)]
    return max(times, default=None)


def _record_missed(runtime: Runtime, scheduled_at: datetime, now: datetime) -> None:
    """Record (once per day) an edition whose time passed more than the grace ago."""
    settings = runtime.settings
    day = edition_date(settings, scheduled_at)
    summary = (
        f"edition {day} missed: scheduled {iso(scheduled_at)}, {span(now - scheduled_at)} ago, "
        f"beyond the {span(grace(settings))} grace; not sent"
    )
    run = edition_job_run(now, scheduled_at, "missed", summary, (), day)
    if record_missed_edition(runtime, run):
        log_run(run, edition_on=day, scheduled_at=iso(scheduled_at))


# The daemon


def build_scheduler(
    settings: Settings, stop: threading.Event | None = None, now: datetime | None = None
) -> BackgroundScheduler:
    """The daemon's scheduler: the collect job (first run at once), one job per edition
    schedule, and the catch-up owed since the daemon last ran (missed ones recorded)."""
    stop = stop or threading.Event()
    now = now or utc_now()
    # One worker: a collect and an edition never write the store at the same time.
    scheduler = BackgroundScheduler(
        timezone=settings.tz, executors={"default": ThreadPoolExecutor(max_workers=1)}
    )
    options = _job_options(settings)
    scheduler.add_job(
        collect_job,
        IntervalTrigger(minutes=settings.schedule.collect_every_minutes, timezone=settings.tz),
        args=[settings, stop],
        id="collect",
        next_run_time=now,
        **options,
    )
    resume = _resume_later(scheduler, settings, stop)
    _add_edition_jobs(scheduler, settings, stop, now, resume)
    with Runtime.open(settings) as runtime:
        catch_up = _catch_up(runtime, now)
    if catch_up.late is not None:
        scheduler.add_job(
            edition_job,
            DateTrigger(run_date=now),
            args=[settings, stop, catch_up.late],
            kwargs={"on_held_back": resume},
            id="edition-catch-up",
            **options,
        )
    scheduler.add_listener(_on_missed(settings), EVENT_JOB_MISSED)
    return scheduler


def _job_options(settings: Settings) -> dict[str, object]:
    # APScheduler's default grace is 1 s: a daemon busy for a minute would skip the day.
    return {
        "coalesce": True,
        "max_instances": 1,
        "misfire_grace_time": max(1, int(grace(settings).total_seconds())),
    }


def _add_edition_jobs(
    scheduler: BackgroundScheduler,
    settings: Settings,
    stop: threading.Event,
    now: datetime,
    on_held_back: HeldBack,
) -> None:
    """One job per edition schedule."""
    for number, trigger in enumerate(edition_triggers(settings)):
        scheduler.add_job(
            edition_job,
            trigger,
            args=[settings, stop],
            kwargs={"on_held_back": on_held_back},
            id=f"edition-{number}",
            # From the catch-up's own ``now``, not the later start(): a time that passes in
            # between is neither caught up nor next, and the day would be lost unnoticed.
            next_run_time=trigger.get_next_fire_time(None, now),
            **_job_options(settings),
        )


def _catch_up(runtime: Runtime, now: datetime) -> CatchUp:
    """Plan the catch-up since the daemon last ran, recording the editions missed."""
    settings = runtime.settings
    plan = plan_catch_up(
        settings,
        now,
        last_activity(runtime),
        lambda day: is_edition_outstanding(runtime, day),
    )
    for scheduled_at in plan.missed:
        _record_missed(runtime, scheduled_at, now)
    if plan.late is not None:
        logger.warning(
            "edition of %s was due at %s while digest was not running: sending it now, late",
            edition_date(settings, plan.late),
            iso(plan.late),
        )
    return plan


def _on_missed(settings: Settings) -> Callable[[JobExecutionEvent], None]:
    def record(event: JobExecutionEvent) -> None:
        if not event.job_id.startswith("edition"):
            return
        scheduled_at = event.scheduled_run_time.astimezone(UTC)
        with Runtime.open(settings) as runtime:
            if is_edition_outstanding(runtime, edition_date(settings, scheduled_at)):
                _record_missed(runtime, scheduled_at, utc_now())

    return record


def run_daemon(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT: the job in progress finishes its current message first;
    a second signal exits at once."""
    _log_to_file(settings)
    # APScheduler's own per-run INFO lines would double ours.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    stop = threading.Event()
    _on_signals(stop)
    scheduler = build_scheduler(settings, stop)
    scheduler.start()
    now = utc_now()
    nexts = ", ".join(iso(t) for t in next_edition_times(settings, now)) or "none"
    logger.info("digest run: started (pid %d); next edition at %s", os.getpid(), nexts)
    while not stop.wait(1.0):
        pass
    logger.info("digest run: stopping once the running job has finished its current message")
    scheduler.shutdown(wait=True)
    logger.info("digest run: stopped")


def _on_signals(stop: threading.Event) -> None:
    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()
        exit_on_further_signals()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _log_to_file(settings: Settings) -> None:
    path = settings.schedule.log_file
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
    handler.setFormatter(ZonedFormatter(settings.tz))
    logging.getLogger().addHandler(handler)


def run_once(settings: Settings) -> sending.SendReport | collecting.CollectReport:
    """The due jobs, now: the edition if one is owed within its grace (missed ones are
    recorded), else a collect. For cron and CI: an edition that fails raises."""
    stop = threading.Event()
    with Runtime.open(settings) as runtime:
        plan = _catch_up(runtime, utc_now())
        if plan.late is not None:
            # A cron line at the edition's own minute is on time, not a catch-up.
            on_time = utc_now() - plan.late <= LATE_AFTER
            late = None if on_time else plan.late
            report = _edition(runtime, stop, late, is_reraised=True)
            if report is not None:
                return report
        return _collect(runtime)
