from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from click.testing import CliRunner

from digest.cli import cli
from digest.config import load_settings
from digest.pipeline import edition_date
from digest.schedule import build_scheduler, edition_trigger, is_catch_up_due, is_edition_due
from tests.conftest import FeedServer, write_settings


def _settings(tmp_path: Path, timezone: str, send_at: str = "07:00") -> Path:
    return write_settings(
        tmp_path,
        [{"url": "https://example.org/rss"}],
        timezone=timezone,
        sections={"schedule": {"send_at": send_at, "misfire_grace_hours": 3}},
    )


def _fire_times(trigger: object, start: datetime, count: int) -> list[datetime]:
    times, previous, now = [], None, start
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, now)  # type: ignore[attr-defined]
        times.append(fire)
        previous, now = fire, fire + timedelta(seconds=1)
    return times


@pytest.mark.parametrize(
    ("timezone", "send_at", "start", "expected_utc_hours"),
    [
        # New York springs forward on 2024-03-10 and falls back on 2024-11-03.
        ("America/New_York", "07:00", datetime(2024, 3, 9, tzinfo=UTC), [12, 11, 11]),
        ("America/New_York", "07:00", datetime(2024, 11, 2, tzinfo=UTC), [11, 12, 12]),
        # London springs forward on 2024-03-31.
        ("Europe/London", "07:00", datetime(2024, 3, 30, tzinfo=UTC), [7, 6, 6]),
        # Istanbul has had no DST since 2016: always UTC+3.
        ("Europe/Istanbul", "07:00", datetime(2024, 3, 30, tzinfo=UTC), [4, 4, 4]),
    ],
)
def test_edition_fires_once_a_day_at_local_send_time_across_dst(
    tmp_path: Path, timezone: str, send_at: str, start: datetime, expected_utc_hours: list[int]
) -> None:
    settings = load_settings(_settings(tmp_path, timezone, send_at))
    times = _fire_times(edition_trigger(settings), start.astimezone(ZoneInfo(timezone)), 3)
    local = [t.astimezone(ZoneInfo(timezone)) for t in times]
    assert [f"{t:%H:%M}" for t in local] == [send_at] * 3
    assert len({t.date() for t in local}) == 3  # one firing per local day
    assert [t.astimezone(UTC).hour for t in times] == expected_utc_hours


def test_a_trigger_firing_twice_in_the_fall_back_hour_is_still_one_edition_date(
    tmp_path: Path,
) -> None:
    # APScheduler 3's CronTrigger fires 01:30 twice on New York's fall-back night; the
    # edition is keyed by the local date, so the delivery ledger turns both into one.
    settings = load_settings(_settings(tmp_path, "America/New_York", "01:30"))
    first, second = _fire_times(edition_trigger(settings), datetime(2024, 11, 2, 12, tzinfo=UTC), 2)
    assert first.astimezone(UTC) == datetime(2024, 11, 3, 5, 30, tzinfo=UTC)
    assert second.astimezone(UTC) == datetime(2024, 11, 3, 6, 30, tzinfo=UTC)
    assert edition_date(settings, first) == edition_date(settings, second) == date(2024, 11, 3)


def test_edition_is_due_after_send_time_in_the_readers_timezone(tmp_path: Path) -> None:
    settings = load_settings(_settings(tmp_path, "Europe/Istanbul"))
    assert not is_edition_due(settings, datetime(2024, 3, 1, 3, 59, tzinfo=UTC))
    assert is_edition_due(settings, datetime(2024, 3, 1, 4, 0, tzinfo=UTC))


def test_scheduler_jobs_coalesce_and_tolerate_hours_of_downtime(tmp_path: Path) -> None:
    settings = load_settings(_settings(tmp_path, "Europe/Istanbul"))
    scheduler = build_scheduler(settings)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {"collect", "edition"}
    for job in jobs.values():
        assert job.coalesce is True and job.max_instances == 1
        assert job.misfire_grace_time == 3 * 3600


def test_run_once_collects_before_send_time_and_sends_after(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = write_settings(
        tmp_path,
        [{"url": feed_server.url("feeds/nasa.xml")}],
        sections={"schedule": {"send_at": "07:00"}},
    )
    runner = CliRunner()
    with time_machine.travel(datetime(2024, 3, 1, 3, 0, tzinfo=UTC), tick=False):  # 06:00 Istanbul
        early = runner.invoke(cli, ["--config", str(config), "run", "--once"])
    assert early.exit_code == 0, early.output
    assert "1 new stories" in early.output and not (tmp_path / "outbox").exists()
    with time_machine.travel(datetime(2024, 3, 1, 4, 30, tzinfo=UTC), tick=False):  # 07:30
        due = runner.invoke(cli, ["--config", str(config), "run", "--once"])
        again = runner.invoke(cli, ["--config", str(config), "run", "--once"])
    assert "edition 2024-03-01" in due.output and "sent 2" in due.output
    assert "already sent 2" in again.output
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2


def test_a_daemon_started_after_send_time_catches_up_within_the_grace_only(tmp_path: Path) -> None:
    settings = load_settings(_settings(tmp_path, "Europe/Istanbul"))  # 07:00, 3 h grace
    assert not is_catch_up_due(settings, datetime(2024, 3, 1, 3, 59, tzinfo=UTC))  # 06:59
    assert is_catch_up_due(settings, datetime(2024, 3, 1, 6, 0, tzinfo=UTC))  # 09:00
    assert not is_catch_up_due(settings, datetime(2024, 3, 1, 7, 1, tzinfo=UTC))  # 10:01
    with time_machine.travel(datetime(2024, 3, 1, 6, 0, tzinfo=UTC), tick=False):
        edition = build_scheduler(settings).get_job("edition")
        assert edition.next_run_time == datetime(2024, 3, 1, 6, 0, tzinfo=UTC)
    with time_machine.travel(datetime(2024, 3, 1, 8, 0, tzinfo=UTC), tick=False):
        edition = build_scheduler(settings).get_job("edition")
        # No catch-up: the scheduler takes the next fire time from the trigger when it starts.
        assert not hasattr(edition, "next_run_time")
