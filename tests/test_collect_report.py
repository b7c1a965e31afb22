"""What a collect run reports: article pages fetched, failed and skipped (and why), and each
feed's parse warnings said once. Real loopback servers and real `python -m digest` runs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.config import load_settings
from digest.pipeline import collect_once
from tests.conftest import REPO, write_settings

_WRONG_CHARSET_FEED = """<?xml version="1.0" encoding="ISO-8859-1"?>
<rss version="2.0"><channel><title>Börse</title><link>https://boerse.example/</link>
<item><title>Kurse für Anleger</title><link>https://boerse.example/1</link>
<description>Die Börse schließt höher; Anleger atmen auf.</description></item>
</channel></rss>
""".encode()  # UTF-8 bytes under a Latin-1 declaration, as Rss20FinanzenNet.xml does
_CHARSET_WARNING = "declared ISO-8859-1, but the bytes are UTF-8"
NOW = datetime(2024, 1, 1, 12, tzinfo=UTC)


def _digest(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "digest", "--config", str(config), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def test_a_feeds_charset_warning_is_printed_once_per_run(tmp_path: Path) -> None:
    (tmp_path / "boerse.xml").write_bytes(_WRONG_CHARSET_FEED)
    config = write_settings(tmp_path, [{"url": "boerse.xml", "name": "Boerse"}])
    done = _digest(config, "collect", "--no-summarize")
    assert done.returncode == 0, done.stderr
    assert (done.stdout + done.stderr).count(_CHARSET_WARNING) == 1
    assert _CHARSET_WARNING in done.stdout  # in the feed's row of the table


def test_the_daemon_log_still_has_the_charset_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "boerse.xml").write_bytes(_WRONG_CHARSET_FEED)
    settings = load_settings(write_settings(tmp_path, [{"url": "boerse.xml", "name": "B"}]))
    with caplog.at_level(logging.INFO):
        report = collect_once(settings, lambda: NOW, summarize=False)
    assert report.feeds[0].warnings == (_CHARSET_WARNING,)
    logged = [r for r in caplog.records if _CHARSET_WARNING in r.getMessage()]
    assert [r.levelno for r in logged] == [logging.INFO]
