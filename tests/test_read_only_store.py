"""The read-only commands on a store whose folder cannot be written (a read-only filesystem,
a folder without write permission), where SQLite cannot make the ``-shm`` index a WAL reader
needs: they read it all the same, and a ``-wal`` file of changes is read too, or refused."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.conftest import FEEDS, REPO, cannot_run_here, in_read_only_mount, write_settings

Run = Callable[[Path, Sequence[str]], list[str]]


def _in_folder_without_write_permission(folder: Path, argv: Sequence[str]) -> list[str]:
    folder.chmod(0o555)
    if os.geteuid() != 0:
        return list(argv)
    # Root writes to any folder whatever its mode, unless without these capabilities.
    if shutil.which("setpriv") is None:
        cannot_run_here("needs setpriv (util-linux) to run as root without write-any-file")
    dropped = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={dropped}", f"--bounding-set={dropped}", *argv]


READ_ONLY = [
    pytest.param(in_read_only_mount, id="read-only-mount"),
    pytest.param(_in_folder_without_write_permission, id="folder-without-write-permission"),
]


def _digest(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "digest", "--config", str(config), *args]


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)


def _sent_edition(tmp_path: Path) -> Path:
    """A store with today's edition archived and sent to two readers (into the outbox), closed
    cleanly: no ``-wal`` or ``-shm`` file is left beside it."""
    config = write_settings(tmp_path, [{"url": str(FEEDS / "nasa.xml"), "name": "NASA"}])
    sent = _run(_digest(config, "send"))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert sorted(p.name for p in tmp_path.glob("digest.db*")) == [
        "digest.db",
        "digest.db.send-lock",
    ]
    return config


@pytest.fixture
def restore_write_permission(tmp_path: Path) -> Iterator[None]:
    yield
    tmp_path.chmod(0o755)  # so that pytest can remove it


@pytest.mark.parametrize("read_only", READ_ONLY)
@pytest.mark.usefixtures("restore_write_permission")
def test_the_read_only_commands_read_a_store_in_a_read_only_folder(
    tmp_path: Path, read_only: Run
) -> None:
    config = _sent_edition(tmp_path)
    commands = {
        "status": ["--debug", "status"],
        "deliveries": ["deliveries"],
        "feeds list": ["feeds", "list"],
        "feeds failures": ["feeds", "failures", str(FEEDS / "nasa.xml")],
        "preview": ["preview", "--no-collect", "--text"],
        "send --dry-run": ["send", "--dry-run"],
    }
    done = {
        name: _run(read_only(tmp_path, _digest(config, *args))) for name, args in commands.items()
    }
    for name, run in done.items():
        assert run.returncode == 0, f"{name}: {run.stdout}{run.stderr}"
    assert "last edition: " in done["status"].stdout
    assert ": 2 sent" in done["status"].stdout
    assert "reading it as immutable" in done["status"].stderr  # --debug says so
    deliveries = done["deliveries"].stdout
    assert "2 recipients" in deliveries and deliveries.count(" sent ") == 2
    assert "1 feed: 1 ok" in done["feeds list"].stdout
    assert "NASA: no failures recorded" in done["feeds failures"].stdout
    assert "NASA Television to Broadcast Space Station Departure" in done["preview"].stdout
    assert done["send --dry-run"].stdout.count("already sent") == 2
    assert sorted(p.name for p in tmp_path.glob("digest.db*")) == [
        "digest.db",
        "digest.db.send-lock",
    ]


def _crash_after_a_change(config: Path) -> None:
    """Another process commits a change (one of the two deliveries forgotten) and is killed
    before it moves it into the store file: the change stays in ``digest.db-wal``."""
    writer = (
        "import sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "conn.execute('PRAGMA wal_autocheckpoint = 0')\n"
        "conn.execute(\"DELETE FROM deliveries WHERE recipient LIKE 'Second%'\")\n"
        "print('committed', flush=True)\n"
        "sys.stdin.read()\n"
    )
    store = config.parent / "digest.db"
    process = subprocess.Popen(
        [sys.executable, "-c", writer, str(store)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline() == "committed\n"
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    assert (config.parent / "digest.db-wal").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.parametrize("read_only", READ_ONLY)
@pytest.mark.usefixtures("restore_write_permission")
def test_changes_a_crash_left_in_the_wal_file_are_read_or_the_store_refused(
    tmp_path: Path, read_only: Run
) -> None:
    config = _sent_edition(tmp_path)
    _crash_after_a_change(config)
    # Its -shm index is there: SQLite reads the store with its -wal file.
    read = _run(read_only(tmp_path, _digest(config, "deliveries")))
    assert read.returncode == 0, read.stdout + read.stderr
    assert "1 recipient" in read.stdout and "second@example.org" not in read.stdout
    # Without it, reading the store file alone would miss the change: refused, saying why.
    tmp_path.chmod(0o755)
    (tmp_path / "digest.db-shm").unlink()
    refused = _run(read_only(tmp_path, _digest(config, "deliveries")))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "digest.db-wal holds changes not yet in the store file" in refused.stderr
    assert "open it once where its folder is writable" in refused.stderr
