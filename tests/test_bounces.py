"""Bounces over real SMTP (aiosmtpd on 127.0.0.1): a permanent refusal of a recipient stops
mail to them, at once for "user unknown", after ``[delivery].bounce_limit`` consecutive
editions otherwise; a 4xx is never a bounce. One edition a day, days set with time-machine."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from click.testing import CliRunner, Result

from digest.cli import cli
from tests.conftest import FEEDS, write_settings
from tests.deliver_sink import Sink, running

READERS = ("Ann <ann@example.org>", "bad@example.org", "cy@example.org")
FIRST_DAY = datetime(2024, 3, 1, 5, tzinfo=UTC)


def _config(tmp_path: Path, port: int, **delivery: Any) -> Path:
    return write_settings(
        tmp_path,
        [{"url": str(FEEDS / "nasa.xml"), "name": "NASA"}],
        recipients=READERS,
        sections={
            "render": {"empty_edition": "send"},  # an edition every day, news or not
            "delivery": {"backend": "smtp", **delivery},
            "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "retries": 0,
                     "timeout_seconds": 5.0, "retry_backoff_seconds": 0.01},
        },
    )  # fmt: skip


def _send_on(config: Path, day: int, *args: str) -> Result:
    with time_machine.travel(FIRST_DAY + timedelta(days=day), tick=False):
        return CliRunner().invoke(cli, ["--config", str(config), "send", *args])


def _subscriber(config: Path, address: str = "bad@example.org") -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["--config", str(config), "subscribers", "list", "--json"])
    return next(s for s in json.loads(result.output) if s["address"] == address)


def _refusing(answer: str, *, at: str = "rcpt") -> Sink:
    def refuse(address: str, attempt: int) -> str | None:
        return answer if address == "bad@example.org" else None

    return Sink(on_rcpt=refuse) if at == "rcpt" else Sink(on_data=refuse)


@pytest.mark.parametrize(
    "answer", ["550 5.1.1 <bad@example.org>: Recipient address rejected", "550 User unknown"]
)
def test_user_unknown_bounces_after_one_edition_and_gets_no_more_mail(
    tmp_path: Path, answer: str
) -> None:
    sink = _refusing(answer)
    with running(sink) as port:
        config = _config(tmp_path, port)
        first = _send_on(config, 0)
        assert first.exit_code == 1 and "sent 2, failed 1" in first.output
        bad = _subscriber(config)
        assert (bad["state"], bad["how"], bad["reason"]) == ("bounced", "bounce", answer)
        listed = CliRunner().invoke(cli, ["--config", str(config), "subscribers", "list"])
        assert f"bad@example.org  bounced       2024-03-01 08:00  bounce     {answer}" in (
            listed.output
        )
        second = _send_on(config, 1)
    assert second.exit_code == 0, second.output
    assert "sent 2, failed 0" in second.output
    assert sink.rcpt_attempts["bad@example.org"] == 1  # never asked again
    assert sink.copies_by_recipient() == {"ann@example.org": 2, "cy@example.org": 2}


def test_other_5xx_bounces_after_bounce_limit_consecutive_editions(tmp_path: Path) -> None:
    sink = _refusing("550 5.7.1 message refused as spam", at="data")
    with running(sink) as port:
        config = _config(tmp_path, port)
        for day in range(2):
            assert _send_on(config, day).exit_code == 1
            # A second send the same day retries the row, but the edition counts once.
            assert _send_on(config, day, "--no-collect").exit_code == 1
            bad = _subscriber(config)
            assert (bad["state"], bad["bounces"]) == ("active", day + 1)
        listed = CliRunner().invoke(cli, ["--config", str(config), "subscribers", "list"])
        assert "refused 2 editions in a row" in listed.output
        assert _send_on(config, 2).exit_code == 1
        bad = _subscriber(config)
        assert (bad["state"], bad["reason"]) == ("bounced", "550 5.7.1 message refused as spam")
        assert _send_on(config, 3).exit_code == 0
    assert sink.rcpt_attempts["bad@example.org"] == 5  # days 0 and 1 twice, day 2 once
    assert sink.copies_by_recipient()["cy@example.org"] == 4


def test_a_delivery_resets_the_count_and_the_limit_is_a_setting(tmp_path: Path) -> None:
    refusing = [True]
    sink = Sink(
        on_rcpt=lambda address, attempt: (
            "554 5.7.1 relay access denied"
            if address == "bad@example.org" and refusing[0]
            else None
        )
    )
    with running(sink) as port:
        config = _config(tmp_path, port, bounce_limit=2)
        _send_on(config, 0)
        assert _subscriber(config)["bounces"] == 1
        refusing[0] = False
        assert _send_on(config, 1).exit_code == 0
        assert _subscriber(config)["bounces"] == 0
        refusing[0] = True
        _send_on(config, 2)
        assert _subscriber(config)["state"] == "active"
        _send_on(config, 3)
    assert _subscriber(config)["state"] == "bounced"


def test_a_4xx_is_never_a_bounce(tmp_path: Path) -> None:
    sink = _refusing("450 4.2.1 mailbox busy, try later")
    with running(sink) as port:
        config = _config(tmp_path, port)
        for day in range(4):
            result = _send_on(config, day)
            assert result.exit_code == 1 and "450 4.2.1 mailbox busy" in result.output
    bad = _subscriber(config)
    assert (bad["state"], bad["bounces"]) == ("active", 0)
    assert sink.rcpt_attempts["bad@example.org"] == 4


def test_a_refused_sender_is_not_the_recipients_bounce(tmp_path: Path) -> None:
    class RefusingSender(Sink):
        async def handle_MAIL(self, *args: Any) -> str:
            return "550 5.7.1 sender not allowed"

    with running(RefusingSender()) as port:
        config = _config(tmp_path, port)
        for day in range(3):
            assert _send_on(config, day).exit_code == 1
    assert {_subscriber(config, a)["state"] for a in ("bad@example.org", "cy@example.org")} == {
        "active"
    }
