"""Preview and send with nothing new: the first run (no cached embeddings) against repeats.

Builds a store of about --stories real stories from the corpus in shared/data/feeds (local
feed files, read by `digest collect` with the default extractive summarizer), then times,
each in a fresh `python -m digest` process from the outside (start-up and imports included):

- `preview --no-collect --out FILE` on a copy of the store without cached embeddings (the
  store of a digest from before the cache; preview is read-only, so it stays cold) and on
  the store as collect left it (warm);
- `send --no-collect` to an outbox, on a fresh copy of each of those stores per run.

With --baseline DIR, the same two commands also run from another tree (say the base
commit's, from `git archive COMMIT | tar -x -C DIR`) on the warm store; runs of all cases
are interleaved, so a busy machine slows each alike. Prints a table of medians of --repeat
runs, the ratios, the story count, and whether every run gave the same stories. Nothing
leaves the machine: feeds are files.

    .venv/bin/python benchmarks/preview.py
    .venv/bin/python benchmarks/preview.py --repeat 5 --stories 750
    .venv/bin/python benchmarks/preview.py --baseline DIR            # and the tree in DIR
    .venv/bin/python benchmarks/preview.py --digest-src DIR          # another commit's tree
    .venv/bin/python benchmarks/preview.py --profile /tmp/warm.prof  # cProfile a warm preview
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pstats
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "data" / "feeds"
# One podcast feed of 730 episodes would be a third of the store from a single outlet.
MAX_STORIES_PER_FEED = 200


def pick_feeds(src: Path, target: int) -> list[Path]:
    """Corpus feed files in name order until their stories reach ``target``."""
    sys.path.insert(0, str(src))
    from digest.errors import FeedError
    from digest.models import FeedSource, FetchResult
    from digest.parse import parse_feed

    picked, total = [], 0
    for path in sorted(p for p in CORPUS.rglob("*") if p.is_file()):
        result = FetchResult(
            source=FeedSource(url=str(path)),
            fetched_at=datetime.now(UTC),
            status=200,
            body=path.read_bytes(),
        )
        try:
            count = len(parse_feed(result).stories)
        except FeedError:
            continue
        if 0 < count <= MAX_STORIES_PER_FEED:
            picked.append(path)
            total += count
        if total >= target:
            break
    return picked


def write_settings(folder: Path, feeds: list[Path]) -> Path:
    lines = ['timezone = "UTC"']
    for path in feeds:
        lines += ["[[feeds]]", f'url = "{path}"']
    lines += [
        "[store]",
        'path = "digest.db"',
        "[collect]",
        "max_age_days = 0",
        "full_text = false",
        "[delivery]",
        'backend = "outbox"',
        'outbox = "outbox"',
        'from = "Digest <digest@example.org>"',
        'recipients = ["a@example.org", "b@example.org", "c@example.org"]',
    ]
    path = folder / "settings.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_digest(src: Path, settings: Path, *args: str, profile: Path | None = None) -> float:
    """Seconds for one ``python -m digest`` process; exits the benchmark if it fails."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env |= {"PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1", "NO_PROXY": "*"}
    prefix = ["-m", "cProfile", "-o", str(profile)] if profile else []
    command = [sys.executable, *prefix, "-m", "digest", "--config", str(settings), *args]
    started = time.perf_counter()
    # Run from the settings' folder: `-m` imports ./digest first, so run from a checkout
    # every tree would be that checkout's.
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, check=False, cwd=settings.parent
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{done.stdout}\n{done.stderr[-3000:]}")
    return seconds


def copy_store(source: Path, folder: Path, *, cold: bool) -> Path:
    """A consistent copy of the store and its settings in ``folder``; ``cold``: without
    cached embeddings (as a store written by a digest from before the cache)."""
    folder.mkdir(parents=True)
    shutil.copy(source / "settings.toml", folder / "settings.toml")
    with sqlite3.connect(source / "digest.db") as old, sqlite3.connect(folder / "digest.db") as new:
        old.backup(new)
        tables = {row[0] for row in new.execute("SELECT name FROM sqlite_master")}
        if cold and "embeddings" in tables:
            new.execute("DELETE FROM embeddings")
    new.close()
    old.close()
    return folder / "settings.toml"


def count(store: Path, table: str) -> int:
    with sqlite3.connect(store) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        found = (
            conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] if table in tables else 0
        )
    conn.close()
    return int(found)


def edition_of(html: str) -> str:
    """An edition's stories, hashed: its links in order (the HTML also holds the time)."""
    links = re.findall(r'href="(http[^"]+)"', html)
    return hashlib.sha256("\n".join(links).encode()).hexdigest()[:12]


def archived_html(settings: Path) -> str:
    """The edition a send archived."""
    with sqlite3.connect(settings.parent / "digest.db") as conn:
        html: str = conn.execute("SELECT html FROM editions").fetchone()[0]
    conn.close()
    return html


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stories", type=int, default=750)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--digest-src", type=Path, default=REPO, help="the tree to measure")
    parser.add_argument("--baseline", type=Path, help="also time this tree (e.g. the base commit)")
    parser.add_argument("--profile", type=Path, help="cProfile one warm preview into this file")
    args = parser.parse_args()
    src = args.digest_src.resolve()
    work = Path(tempfile.mkdtemp(prefix="digest-preview-bench-"))
    try:
        measure(src, work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(src: Path, work: Path, args: argparse.Namespace) -> None:
    built = work / "built"
    built.mkdir()
    feeds = pick_feeds(src, args.stories)
    settings = write_settings(built, feeds)
    collect_s = run_digest(src, settings, "collect")
    stories = count(built / "digest.db", "stories")
    print(f"digest from {src}" + (f"; baseline from {args.baseline}" if args.baseline else ""))
    print(
        f"store: {stories} stories from {len(feeds)} feeds; collect (with today's summaries) "
        f"{collect_s:.1f} s; cached embeddings after collect: "
        f"{count(built / 'digest.db', 'embeddings')}"
    )
    cold = copy_store(built, work / "cold", cold=True)
    cases = [("cold", src, cold), ("warm", src, settings)]
    if args.baseline:
        cases.append(("base", args.baseline.resolve(), settings))
    times: dict[tuple[str, str], list[float]] = {}
    editions: dict[str, set[str]] = {"preview": set(), "send": set()}
    # Interleaved, so that the load of a shared machine falls on every case alike.
    for n in range(args.repeat):
        for label, tree, store in cases:
            out = work / f"preview-{label}.html"
            took = run_digest(tree, store, "preview", "--no-collect", "--out", str(out))
            times.setdefault(("preview --no-collect", label), []).append(took)
            editions["preview"].add(edition_of(out.read_text(encoding="utf-8")))
        for label, tree, _ in cases:
            copy = copy_store(built, work / f"send-{label}-{n}", cold=label == "cold")
            times.setdefault(("send --no-collect", label), []).append(
                run_digest(tree, copy, "send", "--no-collect")
            )
            editions["send"].add(edition_of(archived_html(copy)))
    print_table(times, stories)
    for command, seen in editions.items():
        print(f"{command}: same stories in every run: {'yes' if len(seen) == 1 else seen}")
    if args.profile:
        run_digest(
            src, settings, "preview", "--no-collect", "--out", "/dev/null", profile=args.profile
        )
        print(f"\nprofile of one warm preview ({args.profile}), top 30 by cumulative time:")
        pstats.Stats(str(args.profile)).sort_stats("cumulative").print_stats(30)


def print_table(times: dict[tuple[str, str], list[float]], stories: int) -> None:
    print(f"\n{'command':<22} {'cache':<5} {'runs':>4} {'median s':>9} {'min s':>7} {'max s':>7}")
    medians = {key: statistics.median(runs) for key, runs in times.items()}
    for (command, label), runs in times.items():
        print(
            f"{command:<22} {label:<5} {len(runs):>4} {medians[command, label]:>9.2f}"
            f" {min(runs):>7.2f} {max(runs):>7.2f}"
        )
    commands = list(dict.fromkeys(command for command, _ in times))
    for command in commands:
        ratio = medians[command, "cold"] / medians[command, "warm"]
        line = f"{command}: first (cold) / repeat (warm) {ratio:.1f}x"
        if (command, "base") in medians:
            line += f"; baseline / warm {medians[command, 'base'] / medians[command, 'warm']:.1f}x"
        print(f"{line} on {stories} stories")
    warm = max(medians[command, "warm"] for command in commands)
    print(f"target: warm preview and send <= 2 s: {warm:.2f} {'PASS' if warm <= 2 else 'MISS'}")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
