"""Schedule: the ``digest run`` daemon. APScheduler wiring only; the jobs are pipeline calls.

A collect job runs every ``[schedule].collect_every_minutes``; the edition job fires at
``[schedule].send_at`` in the readers' timezone and does a final collect, then builds and
sends. The delivery ledger, not the trigger, guarantees one edition per local day.
"""

from __future__ import annotations

import logging
import signal
import time
from datetime import UTC, datetime, timedelta
from types import FrameType

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from digest import pipeline
from digest.config import Settings
from digest.models import DeliveryState

logger = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


def edition_trigger(settings: Settings) -> CronTrigger:
    """Fires daily at ``send_at`` local time, in the readers' timezone."""
    hour, minute = (int(part) for part in settings.schedule.send_at.split(":"))
    return CronTrigger(hour=hour, minute=minute, timezone=settings.tz)


def is_edition_due(settings: Settings, now: datetime) -> bool:
    """Has today's send time passed (in the readers' timezone)?"""
    local = now.astimezone(settings.tz)
    return f"{local:%H:%M}" >= settings.schedule.send_at


def collect_job(settings: Settings) -> None:
    started = time.monotonic()
    report = pipeline.collect_once(settings, utc_now)
    logger.info(
        "collect: %d new stories, %d/%d feeds failed, %.1f s",
        report.new_stories,
        len(report.failed),
        len(report.feeds),
        time.monotonic() - started,
    )


def edition_job(settings: Settings) -> None:
    started = time.monotonic()
    report = pipeline.send_edition(settings, utc_now, collect=True)
    sent = len(report.in_state(DeliveryState.SENT)) - len(report.already_sent)
    logger.info(
        "edition %s: %d sent, %d failed, %d already sent, %.1f s",
        report.edition_on,
        sent,
        len(report.in_state(DeliveryState.FAILED)),
        len(report.already_sent),
        time.monotonic() - started,
    )


def build_scheduler(settings: Settings) -> BlockingScheduler:
    """The daemon's scheduler with its two jobs; the collect job also runs at start-up."""
    scheduler = BlockingScheduler(timezone=settings.tz)
    # APScheduler's default grace is 1 s: a daemon restarted minutes late would skip the day.
    options = {
        "coalesce": True,
        "max_instances": 1,
        "misfire_grace_time": int(settings.schedule.misfire_grace_hours * 3600),
    }
    scheduler.add_job(
        collect_job,
        IntervalTrigger(minutes=settings.schedule.collect_every_minutes),
        args=[settings],
        id="collect",
        next_run_time=utc_now() + timedelta(seconds=1),
        **options,
    )
    catch_up = {"next_run_time": utc_now()} if is_catch_up_due(settings, utc_now()) else {}
    scheduler.add_job(
        edition_job,
        edition_trigger(settings),
        args=[settings],
        id="edition",
        **options,
        **catch_up,
    )
    return scheduler


def is_catch_up_due(settings: Settings, now: datetime) -> bool:
    """Started after today's send time but within the grace: send late rather than skip.

    APScheduler's misfire grace only covers a process that was running; a daemon started
    at 09:00 would otherwise wait for tomorrow. The ledger keeps an edition already sent
    from going out again.
    """
    local = now.astimezone(settings.tz)
    hour, minute = (int(part) for part in settings.schedule.send_at.split(":"))
    send_time = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    late = local - send_time
    return timedelta(0) <= late <= timedelta(hours=settings.schedule.misfire_grace_hours)


def run_daemon(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT; the job in progress finishes first."""
    scheduler = build_scheduler(settings)

    def stop(signum: int, frame: FrameType | None) -> None:
        logger.info("signal %d: finishing the running job, then stopping", signum)
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info("digest run: next edition at %s", edition_trigger(settings))
    scheduler.start()


def run_once(settings: Settings) -> pipeline.SendReport | pipeline.CollectReport:
    """Collect now, and send today's edition if its time has come (for cron)."""
    if is_edition_due(settings, utc_now()):
        return pipeline.send_edition(settings, utc_now, collect=True)
    return pipeline.collect_once(settings, utc_now)
