"""Rate limits over real SMTP (aiosmtpd on 127.0.0.1) with a real SQLite store:
``[delivery].max_per_hour`` stops a run cleanly and the rest go on after the hour (clock set
with time-machine); ``max_per_minute`` paces one run, its waits shifting the same clock."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import time_machine
from click.testing import CliRunner, Result

from digest.cli import RATE_LIMITED_EXIT, cli
from digest.config import load_settings
from digest.ledger import delivery_ledger
from digest.models import DeliveryState
from digest.runtime import Runtime
from digest.schedule import build_scheduler
from digest.sending import send_edition
from tests.conftest import FEEDS, write_settings
from tests.deliver_sink import Sink, running

START = datetime(2024, 3, 1, 5, tzinfo=UTC)  # 08:00 in Istanbul, the settings' zone


def _readers(count: int) -> tuple[str, ...]:
    return tuple(f"reader{n}@example.org" for n in range(count))


def _config(
    tmp_path: Path, port: int, readers: int, schedule: dict[str, Any] | None = None, **delivery: Any
) -> Path:
    return write_settings(
        tmp_path,
        [{"url": str(FEEDS / "nasa.xml"), "name": "NASA"}],
        recipients=_readers(readers),
        sections={
            "delivery": {"backend": "smtp", **delivery},
            "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "retries": 0,
                     "timeout_seconds": 5.0, "retry_backoff_seconds": 0.01},
            "schedule": schedule or {},
        },
    )  # fmt: skip


def _send_at(config: Path, moment: datetime) -> Result:
    with time_machine.travel(moment, tick=False):
        return CliRunner().invoke(cli, ["--config", str(config), "send"])


def _states(config: Path) -> dict[str, DeliveryState]:
    with Runtime.open(load_settings(config), access="read") as runtime:
        _, rows = delivery_ledger(runtime)
    return {d.address: d.state for d in rows}


def test_the_hourly_limit_stops_the_run_and_the_rest_go_after_the_hour(tmp_path: Path) -> None:
    sink = Sink()
    with running(sink) as port:
        config = _config(tmp_path, port, 5, max_per_hour=3)
        first = _send_at(config, START)
        assert first.exit_code == RATE_LIMITED_EXIT, first.output
        assert "sent 3, 2 left pending; they can go on at 2024-03-01 09:00" in first.output
        states = list(_states(config).values())
        assert states.count(DeliveryState.SENT) == 3
        assert states.count(DeliveryState.PENDING) == 2  # never left "sending"
        sessions = len(sink.sessions)

        again = _send_at(config, START + timedelta(minutes=59))
        assert again.exit_code == RATE_LIMITED_EXIT, again.output
        assert "sent 0, 2 left pending; they can go on at 2024-03-01 09:00" in again.output
        assert len(sink.recipients) == 3 and len(sink.sessions) == sessions  # not even a HELO

        after = _send_at(config, START + timedelta(hours=1))
    assert after.exit_code == 0, after.output
    assert "sent 2, failed 0, already sent 3" in after.output
    assert sink.copies_by_recipient() == dict.fromkeys(_readers(5), 1)
    assert set(_states(config).values()) == {DeliveryState.SENT}


def _most_in_a_minute(times: Sequence[datetime]) -> int:
    return max(
        sum(1 for t in times if start <= t < start + timedelta(minutes=1)) for start in times
    )


def test_the_minute_limit_paces_one_run_without_leaving_anyone_out(tmp_path: Path) -> None:
    sink = Sink()
    waits: list[float] = []
    with running(sink) as port, time_machine.travel(START, tick=False) as traveller:

        def sleep(seconds: float, stop: object) -> None:
            waits.append(seconds)
            traveller.shift(seconds)

        settings = load_settings(_config(tmp_path, port, 4, max_per_minute=2))
        with Runtime.open(settings, sleep=sleep) as runtime:
            report = send_edition(runtime, collect=True)
    assert report.ok and report.resumes_at is None
    assert len(report.in_state(DeliveryState.SENT)) == 4
    assert sorted(sink.recipients) == sorted(_readers(4))
    assert _most_in_a_minute(sink.accepted_at) == 2
    assert waits == [60.0]  # the third waits for the first to leave the window, once
    assert sink.accepted_at[-1] - sink.accepted_at[0] == timedelta(minutes=1)


def test_the_daemon_sends_the_held_back_rest_when_the_hour_frees_up(tmp_path: Path) -> None:
    sink = Sink()
    with running(sink) as port:
        schedule = {"send_at": "08:00", "misfire_grace_hours": 0.5}  # shorter than the wait
        settings = load_settings(_config(tmp_path, port, 5, schedule, max_per_hour=3))
        scheduler = build_scheduler(settings, threading.Event(), now=START - timedelta(minutes=1))
        assert scheduler.get_job("edition-resume") is None
        edition = scheduler.get_job("edition-0")
        with time_machine.travel(START, tick=False):
            first = edition.func(*edition.args, **edition.kwargs)
        assert first is not None and first.resumes_at == START + timedelta(hours=1)
        assert len(first.in_state(DeliveryState.PENDING)) == 2
        with Runtime.open(settings, access="read") as runtime:
            [run] = runtime.store.job_runs("edition")
        assert run.summary.endswith("the rest go at 2024-03-01T06:00:00+00:00"), run.summary
        resume = scheduler.get_job("edition-resume")  # once, at the hour: not a hot loop
        assert resume is not None and resume.trigger.run_date == START + timedelta(hours=1)
        with time_machine.travel(resume.trigger.run_date, tick=False):
            rest = resume.func(*resume.args, **resume.kwargs)
    assert rest is not None and rest.ok and rest.resumes_at is None
    assert sink.copies_by_recipient() == dict.fromkeys(_readers(5), 1)


def test_a_stop_while_waiting_for_the_minute_leaves_the_rest_pending(tmp_path: Path) -> None:
    sink, stop = Sink(), threading.Event()
    with running(sink) as port, time_machine.travel(START, tick=False):
        settings = load_settings(_config(tmp_path, port, 4, max_per_minute=2))
        with Runtime.open(settings, sleep=lambda seconds, event: stop.set()) as runtime:
            report = send_edition(runtime, collect=True, stop=stop)
    assert report.stopped and len(sink.recipients) == 2
    assert len(report.in_state(DeliveryState.PENDING)) == 2


def test_a_limit_below_one_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    config = _config(tmp_path, 25, 1, max_per_hour=0)
    result = CliRunner().invoke(cli, ["--config", str(config), "check"])
    assert result.exit_code == 2 and "[delivery].max_per_hour" in result.output
