"""The ``corpus`` marker of tests/conftest.py, in a real pytest run (a subprocess) on a copy of
that conftest in a clone-like folder under tmp_path: with the corpus beside it the tests run;
without it they are skipped saying which path is missing, and under CI=true they fail. The
``netns`` marker likewise, without a way to create a network namespace (no `ip` on PATH)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

TESTS = """
import pytest

from tests.conftest import corpus_files


@pytest.mark.corpus("seed/page.txt")
def test_reads_the_seed():
    from tests.conftest import SHARED_DATA

    assert (SHARED_DATA / "seed" / "page.txt").read_text() == "page"


@pytest.mark.parametrize("path", corpus_files("feeds"))
def test_each_feed(path):
    assert path.read_bytes() == b"<rss/>"


def test_without_the_corpus():
    pass
"""


def _clone(tmp_path: Path) -> Path:
    clone = tmp_path / "clone"
    (clone / "tests").mkdir(parents=True)
    (clone / "tests" / "__init__.py").write_text("")
    for helper in ("conftest.py", "postgres.py"):  # the conftest and its PostgreSQL fixtures
        (clone / "tests" / helper).write_bytes((REPO / "tests" / helper).read_bytes())
    (clone / "tests" / "test_sample.py").write_text(TESTS)
    return clone


def _pytest(clone: Path, *, ci: bool, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTHONPATH")}
    env |= {"PYTHONPATH": str(clone), **({"CI": "true"} if ci else {}), **extra_env}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-rsE", "-p", "no:cacheprovider", "tests"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_without_the_corpus_its_tests_are_skipped_saying_which_path_is_missing(
    tmp_path: Path,
) -> None:
    run = _pytest(_clone(tmp_path), ci=False)
    assert run.returncode == 0, run.stdout
    assert "1 passed, 2 skipped" in run.stdout
    missing = tmp_path / "shared" / "data"
    reason = f"{missing} is missing: this test reads the ../shared/data corpus beside the clone"
    assert run.stdout.count(reason) == 2, run.stdout


def test_under_ci_a_missing_corpus_fails_its_tests(tmp_path: Path) -> None:
    run = _pytest(_clone(tmp_path), ci=True)
    assert run.returncode == 1
    assert "1 passed, 2 errors" in run.stdout, run.stdout
    assert "CI must provide it there" in run.stdout


def test_a_missing_file_of_a_present_corpus_is_named(tmp_path: Path) -> None:
    clone = _clone(tmp_path)
    (tmp_path / "shared" / "data" / "feeds").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "feeds" / "a.xml").write_bytes(b"<rss/>")
    run = _pytest(clone, ci=False)
    assert "2 passed, 1 skipped" in run.stdout, run.stdout
    assert f"{tmp_path / 'shared' / 'data' / 'seed' / 'page.txt'} is missing" in run.stdout


def test_with_the_corpus_beside_the_clone_its_tests_run(tmp_path: Path) -> None:
    clone = _clone(tmp_path)
    data = tmp_path / "shared" / "data"
    (data / "seed").mkdir(parents=True)
    (data / "seed" / "page.txt").write_text("page")
    (data / "feeds" / "origin").mkdir(parents=True)
    for name in ("a.xml", "b.xml"):
        (data / "feeds" / "origin" / name).write_bytes(b"<rss/>")
    run = _pytest(clone, ci=True)
    assert run.returncode == 0, run.stdout
    assert "4 passed" in run.stdout


NETNS_TESTS = """
import pytest


@pytest.mark.netns
def test_in_a_namespace():
    raise AssertionError("ran without a way to create a network namespace")
"""


def test_without_ip_netns_its_tests_are_skipped_saying_why_and_fail_under_ci(
    tmp_path: Path,
) -> None:
    clone = _clone(tmp_path)
    (clone / "tests" / "test_sample.py").write_text(NETNS_TESTS)
    no_ip = str(tmp_path / "empty-path")  # nothing on PATH: no `ip`
    skipped = _pytest(clone, ci=False, PATH=no_ip)
    assert skipped.returncode == 0, skipped.stdout
    assert "1 skipped" in skipped.stdout
    assert "this test creates a network namespace" in skipped.stdout
    failed = _pytest(clone, ci=True, PATH=no_ip)
    assert "1 error" in failed.stdout, failed.stdout
    assert "CI must run these tests as root, with iproute2" in failed.stdout
