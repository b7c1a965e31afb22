"""One big feed: time and peak memory of `collect` and `send` as a single feed grows.

Writes 200 normal feeds of 20 real corpus entries each (4,000 stories) plus one feed of N
entries (N = 2,500, 5,000, 10,000 and 20,000 by default), as local files, and runs the real
CLI on each: `collect` (which embeds and summarises the edition, as the daemon does), then
`send --no-collect` to an outbox. Each command runs in its own process; its wall time and
the peak of its process tree's summed RSS (sampled every 20 ms, worker processes included)
are printed. The cases:

- `capped`: digest as configured by default, at most 300 entries of one feed kept per fetch;
- `uncapped`: the cap lifted to 100,000, so all N entries are stored and dedupe carries them;
- `base`: with --base DIR, the tree in DIR (say `git archive 07a37cb digest | tar -x -C DIR`),
  which has no cap, for N up to --base-max (it needed 6.4 GB at N = 10,000).

The feeds reuse the corpus's ~3,000 distinct entries (each with its own link), so each
text is embedded once, in a seed store made first; every run starts from a copy of the
seed's embeddings and summaries, with no feeds or stories. Without that, embedding 24,000
texts on 2 cores takes longer than everything measured here.

    .venv/bin/python benchmarks/big_feed.py
    .venv/bin/python benchmarks/big_feed.py --sizes 2500 10000 --repeat 3
    .venv/bin/python benchmarks/big_feed.py --base /tmp/base --base-max 5000
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
sys.path.insert(0, str(BENCHMARKS))

from collect import (  # noqa: E402
    CorpusEntry,
    _rss,
    _TreeRssSampler,
    load_corpus_entries,
)

NORMAL_FEEDS = 200
NORMAL_ENTRIES = 20
UNCAPPED = 100_000
CHILD_TIME_LIMIT_S = 1800.0
TARGET_SEND_S, TARGET_SEND_MB = 60.0, 1024.0
# Story tables a run starts without; embeddings and summaries are kept from the seed.
_STORY_TABLES = ("deliveries", "editions", "articles", "feed_errors", "stories", "feeds")


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    case: str
    size: int
    command: str
    seconds: float
    peak_mb: float
    stories: int


def write_feeds(folder: Path, pool: Sequence[CorpusEntry], big: int) -> list[Path]:
    """The 200 normal feeds and the big one; entries cycle through the pool."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(NORMAL_FEEDS):
        entries = [pool[(number * NORMAL_ENTRIES + i) % len(pool)] for i in range(NORMAL_ENTRIES)]
        paths.append(_write(folder / f"feed{number:03d}.xml", number, entries))
    entries = [pool[(NORMAL_FEEDS * NORMAL_ENTRIES + i) % len(pool)] for i in range(big)]
    paths.append(_write(folder / "big.xml", 999, entries))
    return paths


def _short(entry: CorpusEntry) -> CorpusEntry:
    """The entry as a teaser of at most 500 characters, as in the feed that broke digest
    (10,000 entries in 5.6 MB)."""
    return replace(entry, summary=entry.summary[:500], content=None)


def _write(path: Path, number: int, entries: Sequence[CorpusEntry]) -> Path:
    path.write_text(_rss(number, entries, f"https://feed{number}.example"), encoding="utf-8")
    return path


def write_settings(folder: Path, feeds: Sequence[Path], cap: int | None) -> Path:
    lines = ['timezone = "UTC"']
    for path in feeds:
        lines += ["[[feeds]]", f'url = "{path}"']
    # Room for a 20,000-entry feed (12 MB here; the one that broke digest was 5.6 MB).
    collect = ["[collect]", "max_age_days = 0", "full_text = false", "max_bytes = 100000000"]
    if cap is not None:
        collect.append(f"max_entries_per_feed = {cap}")
    lines += ["[store]", 'path = "digest.db"', *collect]
    lines += [
        "[delivery]",
        'backend = "outbox"',
        'outbox = "outbox"',
        'from = "Digest <digest@example.org>"',
        'recipients = ["reader@example.org"]',
    ]
    path = folder / "settings.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_digest(src: Path, settings: Path, *args: str) -> tuple[float, float]:
    """(seconds, peak MB of the process tree) of one ``python -m digest`` process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env |= {"PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1", "NO_PROXY": "*"}
    command = [sys.executable, "-m", "digest", "--config", str(settings), *args]
    started = time.perf_counter()
    # Not from a checkout's root: `-m` would import ./digest from there, whatever PYTHONPATH says.
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=settings.parent,
    )
    sampler = _TreeRssSampler(process.pid)
    sampler.start()
    try:
        out, err = process.communicate(timeout=CHILD_TIME_LIMIT_S)
    finally:
        sampler.stop()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        sys.exit(f"failed ({process.returncode}): {' '.join(args)}\n{out[-2000:]}\n{err[-3000:]}")
    return seconds, sampler.peak_kb / 1024


def make_seed(src: Path, work: Path, pool: Sequence[CorpusEntry]) -> Path:
    """A store whose embeddings and summaries cover every text the feeds can hold."""
    folder = work / "seed"
    folder.mkdir()
    feed = _write(folder / "pool.xml", 0, pool)
    settings = write_settings(folder, [feed], UNCAPPED if _knows_cap(src) else None)
    seconds, _ = run_digest(src, settings, "collect")
    print(f"seed: {len(pool):,} texts embedded and summarised in {seconds:.0f} s", flush=True)
    return folder / "digest.db"


def _knows_cap(src: Path) -> bool:
    return "max_entries_per_feed" in (src / "digest" / "config.py").read_text(encoding="utf-8")


def fresh_store(seed: Path, folder: Path) -> None:
    store = folder / "digest.db"
    shutil.copyfile(seed, store)
    with sqlite3.connect(store) as db:
        db.execute("PRAGMA foreign_keys = OFF")
        for table in _STORY_TABLES:
            db.execute(f"DELETE FROM {table}")
    sqlite3.connect(store).execute("VACUUM").connection.close()


def count_stories(folder: Path) -> int:
    with sqlite3.connect(folder / "digest.db") as db:
        return int(db.execute("SELECT count(*) FROM stories").fetchone()[0])


def measure(case: str, src: Path, size: int, cap: int | None, work: Path, seed: Path) -> list[Run]:
    folder = Path(tempfile.mkdtemp(prefix=f"{case}-{size}-", dir=work))
    feeds = sorted((work / f"feeds-{size}").glob("*.xml"))
    settings = write_settings(folder, feeds, cap)
    fresh_store(seed, folder)
    runs = []
    for command in (("collect",), ("send", "--no-collect")):
        seconds, peak = run_digest(src, settings, *command)
        stories = count_stories(folder)
        runs.append(
            Run(
                case=case,
                size=size,
                command=command[0],
                seconds=seconds,
                peak_mb=peak,
                stories=stories,
            )
        )
        print(
            f"  {case:<9} N={size:>6,}  {command[0]:<8} {seconds:7.1f} s  {peak:7.0f} MB",
            flush=True,
        )
    shutil.rmtree(folder)
    return runs


def print_table(runs: Sequence[Run]) -> None:
    print()
    print(
        f"{'case':<9} {'big feed':>9} {'stories':>8} {'command':<8} {'median s':>9} "
        f"{'peak MB':>8} {'runs':>5}"
    )
    keys = sorted(
        {(r.case, r.size, r.command) for r in runs}, key=lambda k: (k[1], k[0], k[2] != "collect")
    )
    for case, size, command in keys:
        same = [r for r in runs if (r.case, r.size, r.command) == (case, size, command)]
        seconds = statistics.median(r.seconds for r in same)
        peak = statistics.median(r.peak_mb for r in same)
        verdict = ""
        if command == "send" and case == "capped" and size == 10_000:
            ok = seconds < TARGET_SEND_S and peak < TARGET_SEND_MB
            verdict = f"  target < {TARGET_SEND_S:.0f} s, < 1 GB: {'PASS' if ok else 'MISS'}"
        print(
            f"{case:<9} {size:>9,} {same[-1].stories:>8,} {command:<8} {seconds:>9.1f} "
            f"{peak:>8.0f} {len(same):>5}{verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_500, 5_000, 10_000, 20_000])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--base", type=Path, help="a tree of digest without the cap, to compare")
    parser.add_argument("--base-max", type=int, default=5_000)
    parser.add_argument("--no-uncapped", action="store_true")
    args = parser.parse_args()
    pool = [_short(entry) for entry in load_corpus_entries()]
    if not pool:
        sys.exit("no corpus entries: this needs ../shared/data/feeds beside the clone")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="digest-big-feed-") as tmp:
        work = Path(tmp)
        for size in args.sizes:
            write_feeds(work / f"feeds-{size}", pool, size)
        seed = make_seed(REPO, work, pool)
        cases: list[tuple[str, Path, int | None, int]] = [("capped", REPO, None, sys.maxsize)]
        if not args.no_uncapped:
            cases.append(("uncapped", REPO, UNCAPPED, sys.maxsize))
        if args.base:
            cases.append(("base", args.base.resolve(), None, args.base_max))
        # Rounds of every case in turn, so that a busy machine slows each alike.
        for _ in range(args.repeat):
            for size in args.sizes:
                for case, src, cap, largest in cases:
                    if size <= largest:
                        runs += measure(case, src, size, cap, work, seed)
    print_table(runs)


if __name__ == "__main__":
    main()
