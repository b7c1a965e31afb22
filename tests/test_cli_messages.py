"""What the CLI says: each fatal error once, log times in the readers' zone, a collect table
that fits 100 columns, and a browser that could not be opened."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from digest.cli import cli
from tests.conftest import FIXTURES, REPO, FeedServer, write_settings

NASA = str(FIXTURES / "feeds" / "nasa.xml")


def _digest(config: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    return subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env={**environ, "PYTHONPATH": str(REPO), **env},
        timeout=300,
        check=False,
    )


def test_a_fatal_error_is_printed_once(tmp_path: Path) -> None:
    config = write_settings(
        tmp_path,
        [{"url": NASA}],
        sections={
            # Nothing listens on port 9: the mail server cannot be used at all.
            "delivery": {"backend": "smtp"},
            "smtp": {"host": "127.0.0.1", "port": 9, "security": "none", "retries": 0},
        },
    )
    done = _digest(config, "send")
    assert done.returncode == 1
    assert done.stderr.count("SMTP 127.0.0.1:9: cannot connect") == 1, done.stderr
    assert done.stderr.startswith("Error: SMTP 127.0.0.1:9: cannot connect"), done.stderr


def test_log_lines_carry_the_configured_zone(tmp_path: Path) -> None:
    missing = tmp_path / "missing.xml"
    config = write_settings(tmp_path, [{"url": NASA}, {"url": str(missing)}], timezone="Asia/Tokyo")
    started = datetime.now(ZoneInfo("Asia/Tokyo"))
    # --debug logs the failed feed (the table alone reports it otherwise).
    done = _digest(config, "collect", "--no-summarize", "--debug")
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stderr.splitlines() if str(missing) in line)
    stamp = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+09:00) INFO ", line)
    assert stamp, line
    logged = datetime.fromisoformat(stamp.group(1))
    assert abs(logged - started) < timedelta(minutes=2)


def test_the_collect_table_fits_100_columns(tmp_path: Path, feed_server: FeedServer) -> None:
    long_name = "The Extremely Long Name of a Feed Imported From Somebody's OPML File " * 3
    deep = tmp_path.joinpath(*["a-rather-long-folder-name"] * 3, "missing-feed.xml")
    config = write_settings(
        tmp_path,
        [
            {"url": feed_server.url("feeds/nasa.xml"), "name": long_name},
            {"url": str(deep), "name": "short"},
        ],
    )
    result = CliRunner().invoke(cli, ["--config", str(config), "collect", "--no-summarize"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    detail_column = lines[0].index("detail")
    for line in lines:  # only a detail's single unbreakable word (a path) may run past 100
        assert len(line) <= 100 or " " not in line[detail_column:].strip(), line
    assert any(line.startswith(long_name[:39] + "…  new ") for line in lines), lines
    failed = lines.index(next(line for line in lines if line.startswith("short ")))
    wrapped = lines[failed : failed + 2]
    assert wrapped[0].endswith("no such file:")
    assert wrapped[1] == " " * detail_column + str(deep)  # whole, to copy


def test_preview_open_without_a_browser_says_where_the_file_is(tmp_path: Path) -> None:
    config = write_settings(tmp_path, [{"url": NASA}])
    out = tmp_path / "preview.html"
    # BROWSER names the only browser webbrowser may use; `false` fails to open anything.
    done = _digest(config, "preview", "--no-collect", "--open", "--out", str(out), BROWSER="false")
    assert done.returncode == 0, done.stderr
    assert out.is_file()
    assert f"open {out.resolve().as_uri()} by hand" in done.stderr
    opened = _digest(config, "preview", "--no-collect", "--open", "--out", str(out), BROWSER="true")
    assert opened.returncode == 0 and "by hand" not in opened.stderr


@pytest.mark.slow
def test_ctrl_c_in_preview_exits_130_without_aborted(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    """Commands without their own stop handling (preview: read-only) still end as an
    interrupted command does: 130, and a word, not click's 'Aborted!' and exit 1."""
    config = write_settings(tmp_path, [{"url": feed_server.url("slow")}])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "digest", "--config", str(config), "preview"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.monotonic() + 60
    while not any(path == "/slow" for path, _ in feed_server.requests):  # it is fetching
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert "interrupted (SIGINT)" in err and "Aborted!" not in err + out
    assert "Traceback" not in err


def test_no_progress_bar_when_every_summary_is_cached(tmp_path: Path) -> None:
    """On a terminal, a send whose summaries collect already made shows no empty
    'summarising: 0story' bar (a bar does show while there is something to summarise)."""
    config = write_settings(tmp_path, [{"url": NASA}])
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def on_a_terminal(*args: str) -> str:
        leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        try:
            done = subprocess.run(
                [sys.executable, "-m", "digest", "--config", str(config), *args],
                stdout=subprocess.PIPE, stderr=follower, env=env, timeout=300, check=True,
            )  # fmt: skip
            os.close(follower)
            err = b""
            with contextlib.suppress(OSError):  # EIO once everything written was read
                while chunk := os.read(leader, 65536):
                    err += chunk
            return done.stdout.decode() + err.decode(errors="replace")
        finally:
            os.close(leader)

    assert "summarising" in on_a_terminal("collect")
    assert "summarising" not in on_a_terminal("send", "--no-collect")
