"""The daemon's calendar: triggers across DST, edition schedules from settings, catch-up
planning, and the jobs' options. No sleeping: triggers are asked for their fire times."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from click.testing import CliRunner

from digest.cli import cli
from digest.config import Settings, load_settings
from digest.errors import ConfigError
from digest.ledger import edition_date
from digest.schedule import build_scheduler, plan_catch_up
from digest.triggers import OncePerDay, edition_triggers, fire_times
from tests.conftest import FeedServer, write_settings


def _settings(tmp_path: Path, timezone: str = "Europe/Istanbul", **schedule: Any) -> Settings:
    values = {"send_at": "07:00", "misfire_grace_hours": 3, **schedule}
    values = {key: value for key, value in values.items() if value is not None}
    path = write_settings(
        tmp_path,
        [{"url": "https://example.org/rss"}],
        timezone=timezone,
        sections={"schedule": values},
    )
    return load_settings(path)


def _fires(trigger: OncePerDay, start: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times, asked the way APScheduler asks (previous, now)."""
    times, previous, now = [], None, start
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None
        times.append(fire)
        previous, now = fire, fire + timedelta(seconds=1)
    return times


@pytest.mark.parametrize(
    ("timezone", "start", "expected_utc_hours"),
    [
        # New York springs forward on 2024-03-10 and falls back on 2024-11-03.
        ("America/New_York", date(2024, 3, 9), [12, 11, 11]),
        ("America/New_York", date(2024, 11, 2), [11, 12, 12]),
        # London springs forward on 2024-03-31 and falls back on 2024-10-27.
        ("Europe/London", date(2024, 3, 30), [7, 6, 6]),
        ("Europe/London", date(2024, 10, 26), [6, 7, 7]),
        # Istanbul has had no DST since 2016: always UTC+3, on the old change days too.
        ("Europe/Istanbul", date(2024, 3, 30), [4, 4, 4]),
        ("Europe/Istanbul", date(2024, 10, 26), [4, 4, 4]),
    ],
)
def test_edition_fires_once_a_day_at_local_send_time_across_dst(
    tmp_path: Path, timezone: str, start: date, expected_utc_hours: list[int]
) -> None:
    settings = _settings(tmp_path, timezone)
    [trigger] = edition_triggers(settings)
    zone = ZoneInfo(timezone)
    times = _fires(trigger, datetime.combine(start, time(0), tzinfo=zone), 3)
    local = [t.astimezone(zone) for t in times]
    assert [f"{t:%H:%M}" for t in local] == ["07:00"] * 3
    assert [t.date() - start for t in local] == [timedelta(days=n) for n in range(3)]
    assert [t.astimezone(UTC).hour for t in times] == expected_utc_hours


def test_a_0130_new_york_edition_fires_once_on_the_fall_back_date(tmp_path: Path) -> None:
    # 01:30 happens twice on 2024-11-03 in New York; APScheduler's own CronTrigger fires at
    # both (and, asked again, keeps answering the second one).
    settings = _settings(tmp_path, "America/New_York", send_at="01:30")
    [trigger] = edition_triggers(settings)
    times = _fires(trigger, datetime(2024, 11, 2, 12, tzinfo=UTC), 3)
    assert [t.astimezone(UTC) for t in times] == [
        datetime(2024, 11, 3, 5, 30, tzinfo=UTC),  # 01:30 EDT, the first of the two
        datetime(2024, 11, 4, 6, 30, tzinfo=UTC),  # 01:30 EST
        datetime(2024, 11, 5, 6, 30, tzinfo=UTC),
    ]
    assert [edition_date(settings, t) for t in times] == [
        date(2024, 11, 3),
        date(2024, 11, 4),
        date(2024, 11, 5),
    ]


@pytest.mark.parametrize(
    ("timezone", "send_at", "start", "first_utc"),
    [
        # 02:30 does not exist on 2024-03-10 in New York: it goes out at 03:30 EDT that day.
        (
            "America/New_York",
            "02:30",
            datetime(2024, 3, 9, 12, tzinfo=UTC),
            datetime(2024, 3, 10, 7, 30, tzinfo=UTC),
        ),
        # Nor 01:30 on 2024-03-31 in London: 02:30 BST.
        (
            "Europe/London",
            "01:30",
            datetime(2024, 3, 30, 12, tzinfo=UTC),
            datetime(2024, 3, 31, 1, 30, tzinfo=UTC),
        ),
        # APScheduler's CronTrigger skips 2024-03-11 for a 00:30 job after the change.
        (
            "America/New_York",
            "00:30",
            datetime(2024, 3, 9, 12, tzinfo=UTC),
            datetime(2024, 3, 10, 5, 30, tzinfo=UTC),
        ),
    ],
)
def test_spring_forward_loses_no_date(
    tmp_path: Path, timezone: str, send_at: str, start: datetime, first_utc: datetime
) -> None:
    settings = _settings(tmp_path, timezone, send_at=send_at)
    [trigger] = edition_triggers(settings)
    times = _fires(trigger, start, 3)
    assert times[0] == first_utc
    days = [edition_date(settings, t) for t in times]
    assert days == [days[0] + timedelta(days=n) for n in range(3)]


def test_a_clock_stepped_back_does_not_fire_the_same_date_again(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    [trigger] = edition_triggers(settings)
    fired = datetime(2024, 3, 1, 4, tzinfo=UTC)  # 07:00 Istanbul
    again = trigger.get_next_fire_time(fired, fired - timedelta(hours=2))  # clock back 2 h
    assert again == datetime(2024, 3, 2, 4, tzinfo=UTC)


def test_days_limit_the_editions_to_weekdays(tmp_path: Path) -> None:
    settings = _settings(tmp_path, days="mon-fri")
    [trigger] = edition_triggers(settings)
    friday = datetime(2024, 3, 1, 12, tzinfo=UTC)
    times = _fires(trigger, friday, 3)
    assert [f"{t.astimezone(settings.tz):%a %H:%M}" for t in times] == [
        "Mon 07:00",
        "Tue 07:00",
        "Wed 07:00",
    ]


def test_several_cron_editions_each_get_a_job(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        "Europe/London",
        send_at=None,
        cron=["0 7 * * mon-fri", "30 9 * * sat,sun"],
    )
    triggers = edition_triggers(settings)
    assert len(triggers) == 2
    week = [
        t.astimezone(settings.tz)
        for trigger in triggers
        for t in fire_times(
            trigger, datetime(2024, 3, 1, 12, tzinfo=UTC), datetime(2024, 3, 8, 12, tzinfo=UTC)
        )
    ]
    assert sorted(f"{t:%a %H:%M}" for t in week) == sorted(
        [*(f"{day} 07:00" for day in ("Mon", "Tue", "Wed", "Thu", "Fri")), "Sat 09:30", "Sun 09:30"]
    )
    jobs = {
        job.id for job in build_scheduler(settings, now=datetime(2024, 3, 1, tzinfo=UTC)).get_jobs()
    }
    assert jobs == {"collect", "edition-0", "edition-1"}


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"days": "1-5"}, "name the weekdays (mon-fri, sat,sun), not numbers"),
        ({"days": "weekdays"}, "is not a list of weekdays like 'mon-fri'"),
        ({"send_at": None, "cron": ["0 7 * *"]}, "needs 5 fields"),
        ({"send_at": None, "cron": ["0 7 * * 1-5"]}, "not numbers"),
        ({"send_at": None, "cron": ["0 25 * * *"]}, "'0 25 * * *'"),
        ({"cron": "0 7 * * *"}, "set either cron, or send_at (and days), not both"),
    ],
)
def test_bad_edition_schedules_are_config_errors(
    tmp_path: Path, schedule: dict[str, Any], message: str
) -> None:
    values = {"send_at": "07:00", **schedule}
    values = {k: v for k, v in values.items() if v is not None}
    path = write_settings(
        tmp_path, [{"url": "https://example.org/rss"}], sections={"schedule": values}
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert message in str(caught.value)


def test_scheduler_jobs_coalesce_and_tolerate_hours_of_downtime(tmp_path: Path) -> None:
    settings = _settings(tmp_path, misfire_grace_hours=2.5)
    scheduler = build_scheduler(settings, now=datetime(2024, 3, 1, tzinfo=UTC))
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {"collect", "edition-0"}
    for job in jobs.values():
        assert job.coalesce is True and job.max_instances == 1
        assert job.misfire_grace_time == int(2.5 * 3600)


# Catch-up planning (pure: the ledger is a predicate here)

NOW = datetime(2024, 3, 1, 6, 0, tzinfo=UTC)  # 09:00 Istanbul; the edition was due at 07:00


def _owed(*days: date) -> Any:
    return lambda day: day in days


def test_restart_within_the_grace_sends_the_edition_late(tmp_path: Path) -> None:
    settings = _settings(tmp_path)  # 07:00, 3 h grace
    since = NOW - timedelta(hours=3)  # last ran at 06:00, before the edition time
    plan = plan_catch_up(settings, NOW, since, _owed(date(2024, 3, 1)))
    assert plan.late == datetime(2024, 3, 1, 4, 0, tzinfo=UTC)
    assert plan.missed == ()


def test_restart_after_the_grace_records_a_miss_and_sends_nothing(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    now = NOW + timedelta(hours=1, minutes=1)  # 10:01, 3 h 1 min after 07:00
    plan = plan_catch_up(settings, now, NOW - timedelta(hours=3), _owed(date(2024, 3, 1)))
    assert plan.late is None
    assert plan.missed == (datetime(2024, 3, 1, 4, 0, tzinfo=UTC),)


def test_days_of_downtime_send_only_the_latest_and_record_the_others(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    since = NOW - timedelta(days=3, hours=3)  # 06:00 on 27 February
    owed = _owed(*(date(2024, 2, d) for d in (27, 28, 29)), date(2024, 3, 1))
    plan = plan_catch_up(settings, NOW, since, owed)
    assert plan.late == datetime(2024, 3, 1, 4, 0, tzinfo=UTC)
    assert [edition_date(settings, t) for t in plan.missed] == [
        date(2024, 2, 27),
        date(2024, 2, 28),
        date(2024, 2, 29),
    ]


def test_nothing_is_owed_when_the_ledger_says_sent(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    plan = plan_catch_up(settings, NOW, NOW - timedelta(days=2), _owed())
    assert plan.late is None and plan.missed == ()


def test_a_new_store_misses_nothing_before_the_grace(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    late = plan_catch_up(settings, NOW + timedelta(hours=5), None, _owed(date(2024, 3, 1)))
    assert late.late is None and late.missed == ()
    assert plan_catch_up(settings, NOW, None, _owed(date(2024, 3, 1))).late is not None


def test_a_failed_delivery_is_retried_on_a_restart_within_the_grace(tmp_path: Path) -> None:
    # The daemon ran the 07:00 edition (since = 07:00:05), a recipient failed; restarted
    # at 09:00 it sends again to those still owed.
    settings = _settings(tmp_path)
    since = datetime(2024, 3, 1, 4, 0, 5, tzinfo=UTC)
    plan = plan_catch_up(settings, NOW, since, _owed(date(2024, 3, 1)))
    assert plan.late == datetime(2024, 3, 1, 4, 0, tzinfo=UTC)


# run --once (time-machine: the CLI reads the wall clock)


def test_run_once_collects_before_send_time_and_sends_after(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = write_settings(
        tmp_path,
        [{"url": feed_server.url("feeds/nasa.xml")}],
        sections={"schedule": {"send_at": "07:00"}},
    )
    runner = CliRunner()
    with time_machine.travel(datetime(2024, 3, 1, 3, 0, tzinfo=UTC), tick=False):  # 06:00
        early = runner.invoke(cli, ["--config", str(config), "run", "--once"])
    assert early.exit_code == 0, early.output
    assert "1 new story" in early.output and not (tmp_path / "outbox").exists()
    with time_machine.travel(datetime(2024, 3, 1, 4, 30, tzinfo=UTC), tick=False):  # 07:30
        due = runner.invoke(cli, ["--config", str(config), "run", "--once"])
        again = runner.invoke(cli, ["--config", str(config), "run", "--once"])
    assert "edition 2024-03-01" in due.output and "sent 2" in due.output
    assert "edition 2024-03-01" not in again.output  # nothing owed: a collect
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2


def test_run_once_after_the_grace_records_the_miss_and_status_shows_it(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = write_settings(
        tmp_path,
        [{"url": feed_server.url("feeds/nasa.xml")}],
        sections={"schedule": {"send_at": "07:00", "misfire_grace_hours": 1}},
    )
    runner = CliRunner()
    with time_machine.travel(datetime(2024, 3, 1, 3, 0, tzinfo=UTC), tick=False):  # 06:00
        assert runner.invoke(cli, ["--config", str(config), "run", "--once"]).exit_code == 0
    with time_machine.travel(datetime(2024, 3, 1, 5, 30, tzinfo=UTC), tick=False):  # 08:30
        late = runner.invoke(cli, ["--config", str(config), "run", "--once"])
        status = runner.invoke(cli, ["--config", str(config), "status"])
    assert "edition 2024-03-01" not in late.output
    assert not (tmp_path / "outbox").exists()
    assert status.exit_code == 1, status.output
    assert "missed: edition 2024-03-01 missed: scheduled 2024-03-01T07:00:00+03:00" in status.output
    assert "next edition: 2024-03-02 07:00" in status.output


def test_an_edition_caught_up_after_midnight_is_its_scheduled_day(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    # A 23:30 edition sent late at 00:30 is the day before's, in the ledger and the archive;
    # the new day still gets its own edition at 23:30 (it was not used up by the late one).
    config = write_settings(
        tmp_path,
        [{"url": feed_server.url("feeds/nasa.xml")}],
        sections={"schedule": {"send_at": "23:30", "misfire_grace_hours": 3}},
    )
    runner = CliRunner()

    def run_once_at(moment: datetime) -> str:
        with time_machine.travel(moment, tick=False):
            result = runner.invoke(cli, ["--config", str(config), "run", "--once"])
        assert result.exit_code == 0, result.output
        return result.output

    run_once_at(datetime(2024, 3, 1, 19, 0, tzinfo=UTC))  # 22:00 on 1 March: a collect
    late = run_once_at(datetime(2024, 3, 1, 21, 30, tzinfo=UTC))  # 00:30 on 2 March
    assert "edition 2024-03-01" in late and "sent 2" in late
    ledger = runner.invoke(cli, ["--config", str(config), "deliveries", "--date", "2024-03-01"])
    assert "2 sent" in ledger.output
    next_day = run_once_at(datetime(2024, 3, 2, 20, 31, tzinfo=UTC))  # 23:31 on 2 March
    assert "edition 2024-03-02" in next_day


def test_run_once_exits_non_zero_when_the_edition_job_fails(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    # The mailer cannot even be built (a login without its password): `digest send` exits
    # 2 for this (a configuration error); so must `run --once`, which cron runs in its place.
    config = write_settings(
        tmp_path,
        [{"url": feed_server.url("feeds/nasa.xml")}],
        sections={
            "schedule": {"send_at": "07:00"},
            "delivery": {"backend": "smtp"},
            "smtp": {"host": "127.0.0.1", "port": 2525, "username": "digest"},
        },
    )
    runner = CliRunner(env={"DIGEST_SMTP_PASSWORD": None})
    with time_machine.travel(datetime(2024, 3, 1, 4, 30, tzinfo=UTC), tick=False):  # 07:30
        result = runner.invoke(cli, ["--config", str(config), "run", "--once"])
    assert result.exit_code == 2, result.output
    assert "DIGEST_SMTP_PASSWORD is not" in result.output


def test_a_start_that_straddles_the_send_time_neither_misses_nor_repeats_it(
    tmp_path: Path,
) -> None:
    # Catch-up is planned at 06:59:59.9 (nothing due yet); the scheduler starts 0.2 s later.
    # The edition trigger must still fire at 07:00 today, not first tomorrow.
    settings = _settings(tmp_path)
    planned_at = datetime(2024, 3, 1, 3, 59, 59, 900000, tzinfo=UTC)
    scheduler = build_scheduler(settings, now=planned_at)
    assert scheduler.get_job("edition-catch-up") is None
    with time_machine.travel(planned_at + timedelta(seconds=0.2), tick=False):
        scheduler.start(paused=True)
        try:
            fire = scheduler.get_job("edition-0").next_run_time
        finally:
            scheduler.shutdown(wait=False)
    assert fire == datetime(2024, 3, 1, 4, 0, tzinfo=UTC)
