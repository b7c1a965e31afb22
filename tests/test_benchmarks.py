"""Smoke test of benchmarks/collect.py: it runs end to end on a few loopback feeds and prints
its table. No timing is asserted; timing targets live in benchmarks/ only."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO, SHARED_DATA


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
