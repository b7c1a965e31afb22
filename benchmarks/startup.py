"""Start-up: how long the everyday commands take, each in a fresh process, before vs after.

Times ``python -m digest`` for ``--version``, ``--help``, ``status``, ``deliveries``,
``feeds list`` and ``check`` against a small real store (one feed collected and one edition
sent to an outbox), for this checkout and for a base commit checked out with ``git worktree
add`` (PYTHONPATH pointing at each), interleaved in the same run; prints the median of the
runs of each and the ratio. Target: well under 0.3 s for every command.

    .venv/bin/python benchmarks/startup.py [--base 3b81b8f] [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FEED = REPO / "tests" / "fixtures" / "feeds" / "nasa.xml"
COMMANDS = (["--version"], ["--help"], ["status"], ["deliveries"], ["feeds", "list"], ["check"])
TARGET_SECONDS = 0.3

SETTINGS = """\
timezone = "Europe/Istanbul"
[[feeds]]
url = "{feed}"
name = "NASA"
[store]
path = "digest.db"
[collect]
max_age_days = 0
full_text = false
[summarize]
summarizer = "lead"
[delivery]
backend = "outbox"
outbox = "outbox"
from = "Digest <digest@example.org>"
recipients = ["reader@example.org"]
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _digest(source: Path, config: Path, *args: str) -> tuple[float, float]:
    """Run one command in a fresh process; its wall and CPU (user + sys) seconds."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    cpu = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(config), *args],
        env=env,
        cwd=config.parent,  # not a checkout: `-m` would import ./digest from there first
        capture_output=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):  # 1: status and check may find something to report
        sys.exit(f"digest {' '.join(args)} failed ({source}):\n{done.stderr.decode()}")
    return elapsed, _children_cpu() - cpu


def _make_store(folder: Path) -> Path:
    config = folder / "settings.toml"
    config.write_text(SETTINGS.format(feed=FEED), encoding="utf-8")
    for command in (["collect", "--no-summarize"], ["send", "--no-collect"]):
        _digest(REPO, config, *command)
    return config


def _base_checkout(commit: str, folder: Path) -> Path:
    path = folder / "base"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), commit],
        capture_output=True,
        check=True,
    )
    return path


Medians = dict[str, dict[str, tuple[float, float]]]


def _measure(sources: dict[str, Path], config: Path, runs: int) -> Medians:
    """Median wall and CPU seconds per (command, source), the sources interleaved."""
    times: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for args in COMMANDS:
        name = " ".join(args)
        times[name] = {label: [] for label in sources}
        for source in sources.values():
            _digest(source, config, *args)  # warm the page cache and .pyc files
        for _ in range(runs):
            for label, source in sources.items():
                times[name][label].append(_digest(source, config, *args))
    return {
        name: {label: _medians(values) for label, values in by_source.items()}
        for name, by_source in times.items()
    }


def _medians(values: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)


def _print_table(medians: Medians, base: str, runs: int) -> None:
    print(f"digest start-up, median of {runs} fresh processes each (python -m digest ...)")
    print(
        f"{'command':<12}  {'wall before':>11}  {'wall after':>10}  {'ratio':>6}  "
        f"{'cpu before':>10}  {'cpu after':>9}  {'ratio':>6}"
    )
    for name, by_source in medians.items():
        (wall_before, cpu_before), (wall_after, cpu_after) = by_source["before"], by_source["after"]
        print(
            f"{name:<12}  {wall_before:>9.3f} s  {wall_after:>8.3f} s  "
            f"{wall_before / wall_after:>5.1f}x  {cpu_before:>8.3f} s  {cpu_after:>7.3f} s  "
            f"{cpu_before / cpu_after:>5.1f}x"
        )
    worst = max(by_source["after"][0] for by_source in medians.values())
    verdict = "met" if worst < TARGET_SECONDS else "NOT met"
    print(f"before: {base}; after: this checkout")
    print(f"target: every command under {TARGET_SECONDS} s wall: {verdict} (slowest {worst:.3f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="3b81b8f", help="The commit to compare with.")
    parser.add_argument("--runs", type=int, default=7, help="Runs per command and checkout.")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="digest-startup-") as scratch:
        folder = Path(scratch)
        base = _base_checkout(options.base, folder)
        try:
            config = _make_store(folder)
            medians = _measure({"before": base, "after": REPO}, config, options.runs)
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)],
                capture_output=True,
                check=False,
            )
    _print_table(medians, options.base, options.runs)


if __name__ == "__main__":
    main()
