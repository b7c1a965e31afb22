"""Edition triggers: when each edition schedule fires, in the readers' zone (APScheduler's
cron trigger, nothing else of APScheduler: ``digest status`` asks them without a scheduler).

APScheduler 3.11 fires a 01:30 America/New_York job twice on the fall-back night (asked
again, it keeps answering the same instant), and after a spring-forward night skips the next
day of a 00:30 job: ``OncePerDay`` asks for each local day afresh.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, time, timedelta, tzinfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from digest.config import Settings


class OncePerDay(BaseTrigger):  # type: ignore[misc]
    """A cron schedule in one zone that fires at most once per local calendar date."""

    def __init__(self, fields: Mapping[str, str], tz: tzinfo) -> None:
        self.tz = tz
        self._cron = CronTrigger(timezone=tz, **fields)

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        if previous_fire_time is None:
            start = now
        else:
            # Asked afresh from the next local midnight: never the same date twice.
            day = previous_fire_time.astimezone(self.tz).date() + timedelta(days=1)
            start = datetime.combine(day, time(0), tzinfo=self.tz)
        fire: datetime | None = self._cron.get_next_fire_time(None, start)
        # Through UTC: a wall time that does not exist (spring forward) becomes a real one.
        return fire.astimezone(UTC).astimezone(self.tz) if fire else None

    def __str__(self) -> str:
        return f"{self._cron} once a day"


def edition_triggers(settings: Settings) -> list[OncePerDay]:
    """One trigger per edition schedule in the settings, in the readers' timezone."""
    return [OncePerDay(fields, settings.tz) for fields in settings.schedule.editions]


def fire_times(trigger: OncePerDay, after: datetime, until: datetime) -> Iterator[datetime]:
    """The trigger's fire times in (after, until], oldest first."""
    fire = trigger.get_next_fire_time(None, after + timedelta(seconds=1))
    while fire is not None and fire <= until:
        yield fire
        fire = trigger.get_next_fire_time(fire, fire)


def next_edition_times(settings: Settings, now: datetime) -> tuple[datetime, ...]:
    """Each edition schedule's next time after ``now``, soonest first."""
    times = (trigger.get_next_fire_time(None, now) for trigger in edition_triggers(settings))
    return tuple(sorted(t for t in times if t is not None))
