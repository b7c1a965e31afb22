"""Smoke tests of benchmarks/collect.py (a few loopback feeds) and benchmarks/scale.py (its
quick mode, on SQLite and on PostgreSQL): each runs end to end and prints its table. No timing
is asserted; timing targets live in benchmarks/ only."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from tests.conftest import REPO, SHARED_DATA
from tests.postgres import SERVER_URL


@pytest.mark.corpus("feeds")
def test_collect_benchmark_quick_prints_its_table() -> None:
    assert (SHARED_DATA / "feeds").is_dir()
    completed = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "collect.py"), "--quick", "--n", "3"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    header = next(line for line in lines if line.startswith("tool "))
    for column in (
        "wall s",
        "feeds/s",
        "entries/s",
        "peak RSS MB",
        "peak PSS MB",
        "HTTP",
        "stored",
    ):
        assert column in header
    rows = {line.split()[1]: line for line in lines if line.startswith("digest ")}
    assert list(rows) == ["first", "rerun-304", "rerun-same-200"]
    assert "3x200" in rows["first"] and rows["first"].endswith(" 150/150")
    assert "3x304" in rows["rerun-304"] and rows["rerun-304"].endswith(" 0/0")
    assert "3x200" in rows["rerun-same-200"] and rows["rerun-same-200"].endswith(" 0/0")
    assert "rss2email" not in completed.stdout
    assert "target: digest peak memory (PSS of the process tree)" in completed.stdout


def test_the_paired_bootstrap_interval_brackets_the_mean_gap() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from summaries import bootstrap_interval

    assert bootstrap_interval([2.5] * 16) == (2.5, 2.5)
    low, high = bootstrap_interval([-10.0, 10.0] * 8)  # the mean is 0, the spread wide
    assert low < -2 and high > 2
    low, high = bootstrap_interval([1.0, 3.0] * 200)  # 400 stories: narrow around 2
    assert 1.8 < low < 2 < high < 2.2


def _run_scale(*args: str) -> tuple[subprocess.CompletedProcess[str], int]:
    process = subprocess.Popen(
        [sys.executable, str(REPO / "benchmarks" / "scale.py"), "--quick", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = process.communicate(timeout=300)
    completed = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    assert completed.returncode == 0, err[-3000:]
    return completed, process.pid


def _scale_rows(output: str) -> dict[tuple[str, str, int], str]:
    """The table's rows by (run, engine, senders)."""
    rows = {}
    for line in output.splitlines():
        words = line.split()
        if len(words) > 3 and line.startswith(("smtp ", "ledger ", "sink ")):
            rows[" ".join(words[:2]), words[2], int(words[3])] = line
    return rows


def test_scale_benchmark_quick_prints_every_run_of_its_table() -> None:
    completed, _ = _run_scale()
    rows = _scale_rows(completed.stdout)
    assert set(rows) == {
        ("sink ceiling", "smtplib", 1),
        ("sink ceiling", "smtplib", 4),
        *((run, "sqlite", senders) for run in ("smtp wall", "smtp sends", "ledger only")
          for senders in (1, 2)),
    }  # fmt: skip
    assert rows["ledger only", "sqlite", 1].split()[6] == "1.00x"
    assert "µs/message with the static unsubscribe link" in completed.stdout
    assert "1,000,000 recipients on this machine" in completed.stdout


@pytest.mark.postgres
def test_scale_benchmark_quick_on_postgresql_drops_its_database() -> None:
    completed, pid = _run_scale("--engines", "postgresql", "--postgres-url", SERVER_URL)
    rows = _scale_rows(completed.stdout)
    assert {key for key in rows if key[1] == "postgresql"} == {
        (run, "postgresql", senders)
        for run in ("smtp wall", "smtp sends", "ledger only")
        for senders in (1, 2)
    }
    assert "each added machine adds one sender's rate" in completed.stdout
    with psycopg.connect(SERVER_URL) as admin:
        left = admin.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s",
            (f"digest_bench_scale_{pid}_%",),
        ).fetchall()
    assert left == []
