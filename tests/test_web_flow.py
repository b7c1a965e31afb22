"""End to end, over real HTTP and SMTP on 127.0.0.1: ``digest web`` runs as its own process;
a reader subscribes, gets the confirmation email (aiosmtpd), confirms, gets the edition
(``digest send``), unsubscribes by POSTing to the URL in that message's own List-Unsubscribe
header, and the next day's edition does not go to them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2 as httpx
import pytest
import time_machine
from click.testing import CliRunner

from digest.cli import cli
from tests.conftest import FEEDS, REPO, free_port, write_settings
from tests.deliver_sink import Sink, body_text, running

pytestmark = pytest.mark.slow  # starts `digest web` as a process and stops it with SIGTERM

KEY = "e2e-" + "s" * 40
FIRST_DAY = datetime(2024, 3, 1, 5, tzinfo=UTC)


def _config(folder: Path, smtp_port: int, web_port: int) -> Path:
    return write_settings(
        folder,
        [{"url": str(FEEDS / "nasa.xml"), "name": "NASA"}],
        recipients=("old@example.org",),
        sections={
            "render": {"empty_edition": "send"},
            "delivery": {"backend": "smtp", "unsubscribe_mailto": "leave@example.org"},
            "smtp": {"host": "127.0.0.1", "port": smtp_port, "security": "none", "retries": 0,
                     "timeout_seconds": 5.0},
            "web": {"base_url": f"http://127.0.0.1:{web_port}"},
        },
    )  # fmt: skip


@pytest.fixture
def web_process(tmp_path: Path) -> Iterator[tuple[Path, int, Sink]]:
    sink = Sink()
    with running(sink) as smtp_port:
        web_port = free_port()
        config = _config(tmp_path, smtp_port, web_port)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
        env |= {"DIGEST_SECRET_KEY": KEY, "PYTHONPATH": str(REPO)}
        argv = [sys.executable, "-m", "digest", "--config", str(config), "web"]
        process = subprocess.Popen(
            [*argv, "--host", "127.0.0.1", "--port", str(web_port)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_until_listening(web_port, process)
            yield config, web_port, sink
        finally:
            process.terminate()
            _, err = process.communicate(timeout=20)
            # uvicorn finishes the requests in flight, then ends by the signal it got
            assert process.returncode in (0, -15), err.decode()


def _wait_until_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"digest web exited: {process.stderr.read().decode()}")  # type: ignore[union-attr]
        try:
            httpx.get(f"http://127.0.0.1:{port}/subscribe", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("digest web did not start listening")


def _send_on(config: Path, day: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET_KEY", KEY)
    with time_machine.travel(FIRST_DAY + timedelta(days=day), tick=False):
        result = CliRunner().invoke(cli, ["--config", str(config), "send"])
    assert result.exit_code == 0, result.output


def test_subscribe_confirm_receive_one_click_unsubscribe_then_no_more_mail(
    web_process: tuple[Path, int, Sink], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, port, sink = web_process
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as browser:
        form = browser.get("/subscribe")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        answer = browser.post(
            "/subscribe", data={"csrf": csrf.group(1), "email": "new@example.org"}
        )
        assert answer.status_code == 200, answer.text
        [confirmation] = sink.messages()
        assert sink.recipients == ["new@example.org"]
        link = re.search(r"http://127\.0\.0\.1:\d+/confirm/\S+", body_text(confirmation, "plain"))
        assert link is not None
        assert browser.get(link.group(0)).status_code == 200

    _send_on(config, 0, monkeypatch)
    editions = {address: raw for address, raw in sink.accepted[1:]}
    assert set(editions) == {"old@example.org", "new@example.org"}
    edition = next(m for m in sink.messages()[1:] if m["To"] == "new@example.org")
    assert edition["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    uris = re.findall(r"<([^>]+)>", str(edition["List-Unsubscribe"]))
    assert uris[0] == "mailto:leave@example.org?subject=unsubscribe"
    one_click = uris[1]
    assert one_click.startswith(f"http://127.0.0.1:{port}/unsubscribe/")
    assert f'href="{one_click}"' in body_text(edition, "html")  # the footer: the same page
    assert one_click in body_text(edition, "plain")
    # What a mail provider does (RFC 8058): POST the body to the header's URL, no cookies.
    done = httpx.post(
        one_click,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert done.status_code == 200 and not done.history

    _send_on(config, 1, monkeypatch)
    next_day = sink.recipients[3:]
    assert next_day == ["old@example.org"]
