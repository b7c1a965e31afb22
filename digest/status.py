"""Status: what ``digest status`` shows and the job-run record it is read from.

The record (``job_runs`` in the store) is written by the daemon's jobs and by manual
``digest collect`` and ``digest send``; the status reads it, from a read-only runtime, with
the schedule's next times.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from digest.ledger import edition_date, is_edition_outstanding
from digest.models import Delivery, FeedHealth, FeedState, JobRun
from digest.runtime import Runtime
from digest.triggers import OncePerDay, edition_triggers


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonStatus:
    """What ``digest status`` shows: read from the store, plus the schedule's next times."""

    now: datetime
    last_collect: JobRun | None = None
    last_edition_run: JobRun | None = None
    last_edition_on: date | None = None
    last_edition_subject: str | None = None
    last_edition_deliveries: tuple[Delivery, ...] = ()
    missed: tuple[JobRun, ...] = ()  # recent editions skipped after the grace, newest first
    failing_feeds: tuple[FeedHealth, ...] = ()
    held_feeds: tuple[FeedState, ...] = ()  # not fetched before their not_before (politeness)
    undelivered: tuple[Delivery, ...] = ()  # of the last week's editions: not (known) sent
    next_collect_at: datetime | None = None
    next_editions_at: tuple[datetime, ...] = ()

    @property
    def needs_attention(self) -> bool:
        """A recipient went without, or the last edition was missed or failed."""
        last = self.last_edition_run
        return bool(self.undelivered) or (last is not None and last.outcome in ("missed", "failed"))


STATUS_WINDOW = timedelta(days=7)


def record_job_run(runtime: Runtime, run: JobRun) -> None:
    """Keep one job run in the store (what ``digest status`` reports)."""
    runtime.store.add_job_run(run)


def record_missed_edition(runtime: Runtime, run: JobRun) -> bool:
    """Record an edition skipped after the grace; False if that day's miss was recorded."""
    return runtime.store.add_missed_edition(run)


def last_activity(runtime: Runtime) -> datetime | None:
    """When a daemon job last ran, or an edition was last archived (None: never)."""
    return runtime.store.last_activity()


def daemon_status(runtime: Runtime, now: datetime) -> DaemonStatus:
    """The daemon's state from the store: last runs, misses, feeds, deliveries."""
    settings, store = runtime.settings, runtime.store
    last_on = store.latest_edition_on()
    rendered = store.edition(last_on) if last_on else None
    health = store.feed_health(settings.feed_sources)
    return DaemonStatus(
        now=now,
        last_collect=next(iter(store.job_runs("collect")), None),
        last_edition_run=next(iter(store.job_runs("edition")), None),
        last_edition_on=last_on,
        last_edition_subject=rendered.subject if rendered else None,
        last_edition_deliveries=store.deliveries(last_on) if last_on else (),
        missed=store.job_runs("edition", limit=7, outcome="missed"),
        failing_feeds=tuple(h for h in health if h.status in ("failing", "gone")),
        held_feeds=store.held_feeds(now),
        undelivered=store.undelivered(edition_date(settings, now - STATUS_WINDOW)),
    )


def current_status(runtime: Runtime) -> DaemonStatus:
    """What ``digest status`` shows: the store's record plus the next run times."""
    settings, now = runtime.settings, runtime.clock()
    found = daemon_status(runtime, now)
    last = found.last_collect
    every = timedelta(minutes=settings.schedule.collect_every_minutes)
    triggers = edition_triggers(settings)
    nexts = (_next_undelivered(runtime, trigger, now) for trigger in triggers)
    return replace(
        found,
        next_collect_at=last.started_at + every if last else None,
        next_editions_at=tuple(sorted(t for t in nexts if t is not None)),
    )


# How many of a schedule's next times are looked at for one still owed; past them (every
# recipient already served, e.g. none is configured) the next time is shown as it is.
_LOOKAHEAD = 14


def _next_undelivered(runtime: Runtime, trigger: OncePerDay, now: datetime) -> datetime | None:
    """The trigger's next time whose edition someone is still owed (today's may have gone out
    already, by a manual ``digest send``)."""
    first = fire = trigger.get_next_fire_time(None, now)
    for _ in range(_LOOKAHEAD):
        if fire is None or is_edition_outstanding(runtime, edition_date(runtime.settings, fire)):
            return fire
        fire = trigger.get_next_fire_time(fire, fire)
    return first
