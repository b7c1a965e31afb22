"""The mail backend's preflight: every problem that needs no network stops `digest send`
before it collects or builds anything, and `digest check` reports the same problems."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.config import load_settings
from digest.preflight import mailer_problems
from digest.runtime import read_smtp_password
from tests.conftest import REPO, write_settings
from tests.deliver_sink import make_certificate

FEED = str(REPO / "tests" / "fixtures" / "feeds" / "nasa.xml")


def _config(tmp_path: Path, **sections: dict[str, Any]) -> Path:
    return write_settings(tmp_path, [{"url": FEED, "name": "NASA"}], sections=sections)


def _smtp(**smtp: Any) -> dict[str, dict[str, Any]]:
    return {"delivery": {"backend": "smtp"}, "smtp": {"host": "127.0.0.1", **smtp}}


def _problems(tmp_path: Path, sections: dict[str, dict[str, Any]]) -> list[str]:
    return mailer_problems(load_settings(_config(tmp_path, **sections)), read_smtp_password())


def _rows(tmp_path: Path, table: str) -> int:
    if not (tmp_path / "digest.db").exists():
        return 0
    with sqlite3.connect(tmp_path / "digest.db") as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_send_without_the_password_fails_at_once_and_archives_nothing(tmp_path: Path) -> None:
    config = _config(tmp_path, **_smtp(port=2525, username="digest"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    done = subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(config), "send"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr  # a configuration error
    assert "[smtp].username = 'digest' is set but $DIGEST_SMTP_PASSWORD is not" in done.stderr
    assert "export DIGEST_SMTP_PASSWORD=" in done.stderr
    assert "nothing was collected, built or sent" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""  # no collect table either
    assert _rows(tmp_path, "stories") == 0
    assert _rows(tmp_path, "editions") == 0 and _rows(tmp_path, "deliveries") == 0


def _bad_ca(folder: Path) -> str:
    (folder / "notpem.pem").write_text("not a certificate\n")
    return str(folder / "notpem.pem")


BAD = [
    pytest.param(_smtp(port=587, security="tls"), "[smtp].security = 'tls' with [smtp].port = 587", id="tls-on-587"),
    pytest.param(_smtp(port=465, security="starttls"), "[smtp].security = 'starttls' with [smtp].port = 465", id="starttls-on-465"),
    pytest.param(_smtp(port=2525, security="none", ca_file="ca.pem"), "[smtp].ca_file = ", id="ca-without-tls"),
    pytest.param(_smtp(port=2525, ca_file="missing.pem"), "[smtp].ca_file: cannot read", id="ca-missing"),
    pytest.param(_smtp(port=2525, ca_file="notpem.pem"), "[smtp].ca_file: ", id="ca-not-pem"),
    pytest.param({"delivery": {"backend": "smtp"}, "smtp": {"host": "mail.example.org", "port": 2525, "security": "none", "username": "u"}}, "would send the password to mail.example.org unencrypted", id="login-in-clear"),
    pytest.param({"delivery": {"backend": "sendmail", "sendmail_command": ["/nonexistent/sendmail", "-t"]}}, "[delivery].sendmail_command: '/nonexistent/sendmail' is not an executable", id="no-sendmail"),
    pytest.param({"delivery": {"backend": "outbox", "outbox": "afile/outbox"}}, "[delivery].outbox = ", id="outbox-under-a-file"),
]  # fmt: skip


@pytest.mark.parametrize(("sections", "expected"), BAD)
def test_check_and_send_report_each_mail_setting_problem_before_any_work(
    tmp_path: Path, sections: dict[str, dict[str, Any]], expected: str
) -> None:
    _bad_ca(tmp_path)
    (tmp_path / "afile").write_text("a file, not a folder\n")
    config = _config(tmp_path, **sections)
    env = {"DIGEST_SMTP_PASSWORD": "secret"}
    checked = CliRunner().invoke(cli, ["--config", str(config), "check"], env=env)
    assert checked.exit_code == 1, checked.output
    assert expected in checked.output
    sent = CliRunner().invoke(cli, ["--config", str(config), "send"], env=env)
    assert sent.exit_code == 2 and expected in sent.output, sent.output
    assert "nothing was collected, built or sent" in sent.output
    assert _rows(tmp_path, "stories") == 0 and _rows(tmp_path, "editions") == 0


def test_coherent_mail_settings_have_no_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, _ = make_certificate(tmp_path)
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "secret")
    good = [
        _smtp(port=587, security="starttls", username="digest"),
        _smtp(port=465, security="tls", ca_file=str(cert)),
        _smtp(port=2525, security="none", username="digest"),  # loopback: a local relay
        {"delivery": {"backend": "sendmail", "sendmail_command": [sys.executable, "-c", ""]}},
        {"delivery": {"backend": "outbox", "outbox": "not/yet/made"}},
    ]
    for sections in good:
        assert _problems(tmp_path, sections) == [], sections


def test_a_password_in_the_environment_clears_the_login_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sections = _smtp(port=587, username="digest")
    assert len(_problems(tmp_path, sections)) == 1
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "secret")
    assert _problems(tmp_path, sections) == []
