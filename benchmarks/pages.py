"""Article-pages benchmark: `digest collect` of the offline demo with `full_text` on and every
article link pointing at a loopback host that accepts connections and never answers.

The demo config (examples/demo.toml) and its feeds are copied to a temp folder; each article
host in the feeds (indianexpress.com, www.japantimes.co.jp, ...) becomes its own silent
server on 127.0.0.2, 127.0.0.3, ... (one per host, as a dead news site would be), and
`full_text` is turned on. Each run is a fresh `python -m digest --config ... collect
--no-summarize` child process on an empty store, with PYTHONPATH set to the digest source
being measured; its wall time includes the child's start-up. Nothing leaves 127.0.0.0/8.

    .venv/bin/python benchmarks/pages.py                         # this checkout, 3 runs
    .venv/bin/python benchmarks/pages.py --base /tmp/pages-base  # and another checkout
    .venv/bin/python benchmarks/pages.py --timeout-seconds 2 --runs 1

`--timeout-seconds` sets `[collect].timeout_seconds` (the demo's default is 30 s); before
page_timeout_seconds existed, it was also each article page's deadline, so a base checkout
takes about (pages of the busiest host / per_host) x that long.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "examples"
ARTICLE_HOSTS = (
    "indianexpress.com",
    "www.japantimes.co.jp",
    "www.japantoday.com",
    "inessential.com",
)
sys.path.insert(0, str(REPO))
from tests.silent_host import SilentHost  # noqa: E402  (the tests' dead article host)


def make_demo(folder: Path, hosts: dict[str, SilentHost], timeout_seconds: float | None) -> Path:
    """Copy the demo into ``folder`` with its article links on the silent hosts."""
    shutil.copytree(DEMO / "feeds", folder / "feeds")
    for feed in (folder / "feeds").iterdir():
        text = feed.read_text(encoding="utf-8")
        for name, host in hosts.items():
            text = re.sub(
                rf"https?://{re.escape(name)}", f"http://{host.address}:{host.port}", text
            )
        feed.write_text(text, encoding="utf-8")
    config = (DEMO / "demo.toml").read_text(encoding="utf-8")
    config = config.replace("full_text = false", "full_text = true")
    if timeout_seconds is not None:
        config = config.replace("[collect]\n", f"[collect]\ntimeout_seconds = {timeout_seconds}\n")
    path = folder / "demo.toml"
    path.write_text(config, encoding="utf-8")
    return path


@dataclass(frozen=True)
class Run:
    seconds: float
    requests: int
    last_line: str


def allowing_loopback(config: Path, src: Path) -> Path:
    """The config, with the silent hosts' 127.0.0.0/8 allowed if ``src`` refuses internal
    addresses by default (an older checkout knows no such key and would reject it)."""
    if "allowed_internal_networks" not in (src / "digest" / "config.py").read_text("utf-8"):
        return config
    allowing = config.with_name("demo-loopback.toml")
    text = config.read_text(encoding="utf-8")
    line = 'allowed_internal_networks = ["127.0.0.0/8"]  # the silent hosts play news sites\n'
    allowing.write_text(text.replace("[collect]\n", f"[collect]\n{line}", 1), encoding="utf-8")
    return allowing


def run_collect(config: Path, src: Path, hosts: dict[str, SilentHost]) -> Run:
    """One collect into an empty store, in a child process running the digest in ``src``."""
    config = allowing_loopback(config, src)
    shutil.rmtree(config.parent / "demo-output", ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, "-m", "digest", "--config", str(config), "collect", "--no-summarize"]
    started = time.perf_counter()
    # Not from the checkout: `python -m` would import the digest/ in its working folder.
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=3600, cwd=config.parent
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"collect failed ({src}):\n{done.stderr[-2000:]}")
    requests = sum(len(h.requests) for h in hosts.values())
    for host in hosts.values():
        host.hang_up()
    return Run(seconds=seconds, requests=requests, last_line=done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=REPO, help="digest checkout to measure")
    parser.add_argument("--base", type=Path, help="another checkout, measured first")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout-seconds", type=float, help="[collect].timeout_seconds")
    args = parser.parse_args()
    hosts = {name: SilentHost(f"127.0.0.{n}") for n, name in enumerate(ARTICLE_HOSTS, start=2)}
    cases = [("before", args.base), ("after", args.src)] if args.base else [("after", args.src)]
    try:
        with tempfile.TemporaryDirectory(prefix="digest-pages-") as workdir:
            config = make_demo(Path(workdir), hosts, args.timeout_seconds)
            rows = [
                (label, [run_collect(config, src, hosts) for _ in range(args.runs)])
                for label, src in cases
            ]
    finally:
        for host in hosts.values():
            host.close()
    print_table(rows, args)


def print_table(rows: list[tuple[str, list[Run]]], args: argparse.Namespace) -> None:
    timeout = f"{args.timeout_seconds:g} s" if args.timeout_seconds else "30 s (demo default)"
    print(f"collect of the demo, {len(ARTICLE_HOSTS)} silent article hosts, feed timeout {timeout}")
    print(
        f"{'case':<7} {'runs':>4} {'median s':>9} {'min s':>7} {'max s':>7} {'page requests':>13}"
    )
    for label, runs in rows:
        seconds = [r.seconds for r in runs]
        requests = statistics.median(r.requests for r in runs)
        print(
            f"{label:<7} {len(runs):>4} {statistics.median(seconds):>9.1f} {min(seconds):>7.1f}"
            f" {max(seconds):>7.1f} {requests:>13g}"
        )
    for label, runs in rows:
        print(f"{label}: {runs[-1].last_line}")


if __name__ == "__main__":
    main()
