"""Collect benchmark: digest's real collect path against N loopback feeds, and rss2email on
the same feeds in the same run.

The parent builds N distinct RSS 2.0 feeds (50 entries each by default) from real entries of
the corpus in shared/data/feeds, serves them from an aiohttp server on 127.0.0.1 that waits
``--latency-ms`` before every answer and honours ETag/If-Modified-Since, and runs each
measurement in a fresh child process: its wall time is taken around the collect call (after
imports), its peak RSS from ``os.wait4``. Nothing is sent anywhere but 127.0.0.1.

    .venv/bin/python benchmarks/collect.py            # the issue's cases (about 2-3 minutes)
    .venv/bin/python benchmarks/collect.py --quick    # a few seconds, no rss2email
    .venv/bin/python benchmarks/collect.py --n 100 --latency-ms 50
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import email.utils
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from aiohttp import web

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "data" / "feeds"
ENTRIES_PER_FEED = 50
MAX_BODY_CHARS = 100_000  # leaves out the corpus's single 540 KB outlier entry
CHILD_TIME_LIMIT_S = 900.0
LAST_MODIFIED = "Mon, 01 Jan 2024 00:00:00 GMT"
# The targets; printed as PASS/MISS, never asserted.
TARGET_50_S = 1.5
TARGET_RATIO = 7.0
TARGET_500_S = 4.0
TARGET_RSS_MB = 300.0


# Corpus -> feeds


@dataclass(frozen=True, slots=True, kw_only=True)
class CorpusEntry:
    """One real entry from the corpus, as text fields ready to be written out again."""

    title: str
    summary: str
    content: str | None
    published: str | None
    author: str | None


def load_corpus_entries(root: Path = CORPUS, limit: int | None = None) -> list[CorpusEntry]:
    """Real RSS/Atom entries with a title and a body, duplicates dropped, in a fixed shuffle."""
    import feedparser

    entries: dict[tuple[str, str], CorpusEntry] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix != ".json"):
        parsed = feedparser.parse(
            io.BytesIO(path.read_bytes()), sanitize_html=False, resolve_relative_uris=False
        )
        for raw in parsed.entries:
            entry = _corpus_entry(raw)
            if entry is not None:
                entries.setdefault((entry.title, entry.summary[:200]), entry)
        if limit is not None and len(entries) >= limit:
            break
    pool = list(entries.values())
    random.Random(20240101).shuffle(pool)
    return pool


def _corpus_entry(raw: Any) -> CorpusEntry | None:
    title = (raw.get("title") or "").strip()
    content = (raw.get("content") or [{}])[0].get("value") or None
    summary = raw.get("summary") or content or ""
    if not title or not summary or len(summary) + len(content or "") > MAX_BODY_CHARS:
        return None
    moment = raw.get("published_parsed") or raw.get("updated_parsed")
    published = None
    if moment is not None:
        year, month, day, hour, minute, second = moment[:6]
        when = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        published = email.utils.format_datetime(when, usegmt=True)
    return CorpusEntry(
        title=title,
        summary=summary,
        content=content if content != summary else None,
        published=published,
        author=raw.get("author") or None,
    )


def build_feeds(
    pool: Sequence[CorpusEntry], n: int, base_url: str, per_feed: int = ENTRIES_PER_FEED
) -> dict[str, bytes]:
    """N RSS 2.0 feeds keyed by path; every entry gets its own loopback link and guid."""
    feeds = {}
    for number in range(n):
        entries = [pool[(number * per_feed + i) % len(pool)] for i in range(per_feed)]
        feeds[f"/feeds/{number:04d}.xml"] = _rss(number, entries, base_url).encode("utf-8")
    return feeds


def _rss(number: int, entries: Sequence[CorpusEntry], base_url: str) -> str:
    items = "".join(
        _item(entry, f"{base_url}/story/{number:04d}/{index:03d}")
        for index, entry in enumerate(entries)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
        f"<title>Benchmark feed {number}</title><link>{base_url}/</link>"
        f"<description>Real corpus entries, feed {number}</description>{items}"
        "</channel></rss>\n"
    )


def _item(entry: CorpusEntry, link: str) -> str:
    parts = [
        f"<item><title>{escape(entry.title)}</title><link>{link}</link>",
        f'<guid isPermaLink="true">{link}</guid>',
        f"<description>{escape(entry.summary)}</description>",
    ]
    if entry.published:
        parts.append(f"<pubDate>{entry.published}</pubDate>")
    if entry.author:
        parts.append(f"<dc:creator>{escape(entry.author)}</dc:creator>")
    if entry.content:
        parts.append(f"<content:encoded>{escape(entry.content)}</content:encoded>")
    parts.append("</item>")
    return "".join(parts)


# The loopback server


@dataclass
class FeedServer:
    """An aiohttp server on 127.0.0.1 in its own thread; every answer waits ``latency_s``."""

    latency_s: float
    feeds: dict[str, bytes] = field(default_factory=dict)
    is_conditional: bool = True  # False: ignore validators, resend the unchanged body
    statuses: Counter[int] = field(default_factory=Counter)
    in_flight: int = 0
    peak_in_flight: int = 0
    base_url: str = ""
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None

    def start(self) -> None:
        """Listen on a free loopback port; ``base_url`` is set on return."""
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=30)

    def stop(self) -> None:
        if self._loop is None or self._runner is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)

    def reset_counts(self) -> None:
        self.statuses.clear()
        self.peak_in_flight = 0

    async def _serve(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/feeds/{name}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # A backlog above the 500 feeds, so a burst of connects is never refused.
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=2048)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"

    async def _handle(self, request: web.Request) -> web.Response:
        from aiohttp import web

        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.latency_s)
            body = self.feeds.get(request.path)
            status = 404 if body is None else 304 if self._is_fresh(request) else 200
            self.statuses[status] += 1
            if status != 200:
                return web.Response(status=status)
            headers = {"ETag": _etag(request.path), "Last-Modified": LAST_MODIFIED}
            return web.Response(body=body, content_type="application/rss+xml", headers=headers)
        finally:
            self.in_flight -= 1

    def _is_fresh(self, request: web.Request) -> bool:
        if not self.is_conditional:
            return False
        etag = request.headers.get("If-None-Match")
        if etag is not None:
            return etag == _etag(request.path)
        return request.headers.get("If-Modified-Since") == LAST_MODIFIED


def _etag(path: str) -> str:
    return f'"bench-{path.rsplit("/", 1)[-1]}"'


# Children: one fresh process per measurement


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildSpec:
    """What a child process measures; written as JSON for it to read."""

    tool: str  # "digest", "rss2email" or "rss2email-setup"
    workdir: str
    urls: list[str]
    profile: str | None = None
    digest_src: str | None = None  # a folder holding another digest/ package to measure


def _collect_all(settings: Any, store: Any) -> Any:
    """collect_all as the measured tree has it: on a Runtime, or (a tree from before issue
    14, given with --digest-src) on the settings, the store and a clock."""
    try:
        from digest.collecting import collect_all
        from digest.runtime import Runtime
    except ImportError:
        from digest.pipeline import collect_all as collect_with_clock

        return collect_with_clock(settings, store, lambda: datetime.now(UTC))
    return collect_all(Runtime(settings, store))


def _open_store(path: Path) -> Any:
    """The SQLite store at ``path``, in this tree's API or (--digest-src) an older one's."""
    try:
        from digest.sqlite_store import SQLiteStore
    except ImportError:  # before the Store protocol: the class was the SQLite store
        from digest.store import Store as SQLiteStore  # type: ignore[assignment]
    return SQLiteStore.open(path)


def digest_child(spec: ChildSpec) -> dict[str, Any]:
    """Run digest's collect_all once on a store in the workdir; time only the collect."""
    from digest.config import validate_settings

    workdir = Path(spec.workdir)
    settings = validate_settings(_digest_settings(spec.urls), workdir / "settings.toml")
    profiler = cProfile.Profile() if spec.profile else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    with _open_store(settings.store.path) as store:
        report = _collect_all(settings, store)
    wall = time.perf_counter() - start
    if profiler and spec.profile:
        profiler.disable()
        profiler.dump_stats(spec.profile)
    errors = [f.error for f in report.failed]
    source = str(Path(sys.modules["digest"].__file__ or "").parent)
    return {"wall_s": wall, "stored": report.new_stories, "errors": errors, "source": source}


def _digest_settings(urls: Sequence[str]) -> dict[str, Any]:
    return {
        "store": {"path": "digest.db"},
        "collect": {
            "full_text": False,
            "max_age_days": 0,
            "concurrency": 256,  # the settings' maximum
            "per_host": 256,  # the maximum: every feed here is on 127.0.0.1
            "timeout_seconds": 120.0,
        },
        "feeds": [{"url": url} for url in urls],
        "delivery": {"from": "bench@example.invalid", "recipients": ["reader@example.invalid"]},
    }


def rss2email_setup_child(spec: ChildSpec) -> dict[str, Any]:
    """Write rss2email's config (mail can go nowhere) and add the feeds with its own CLI."""
    from rss2email import main

    config, data = _r2e_paths(spec.workdir)
    # --no-send never mails; the settings below make sure a slip could not either.
    config.write_text(
        "[DEFAULT]\nto = reader@example.invalid\nfrom = bench@example.invalid\n"
        "email-protocol = sendmail\nsendmail = /bin/false\nsmtp-server = 127.0.0.1:9\n"
    )
    for number, url in enumerate(spec.urls):
        main.run(["-c", str(config), "-d", str(data), "add", f"f{number:04d}", url])
    return {"feeds": len(spec.urls)}


def rss2email_child(spec: ChildSpec) -> dict[str, Any]:
    """Time ``r2e run --no-send`` in this process (after imports), then count what it saw."""
    from rss2email import main

    config, data = _r2e_paths(spec.workdir)
    start = time.perf_counter()
    main.run(["-c", str(config), "-d", str(data), "run", "--no-send"])
    wall = time.perf_counter() - start
    feeds = json.loads(data.read_text())["feeds"]
    return {"wall_s": wall, "stored": sum(len(f.get("seen", {})) for f in feeds), "errors": []}


def _r2e_paths(workdir: str) -> tuple[Path, Path]:
    return Path(workdir) / "r2e.cfg", Path(workdir) / "r2e.json"


CHILDREN = {
    "digest": digest_child,
    "rss2email": rss2email_child,
    "rss2email-setup": rss2email_setup_child,
}


def run_child_main(spec_path: str) -> None:
    """The child's entry: run one measurement and print its result as the last line."""
    spec = ChildSpec(**json.loads(Path(spec_path).read_text()))
    result = CHILDREN[spec.tool](spec)
    print(json.dumps({**result, "vm_hwm_mb": _status_kb(os.getpid(), "VmHWM") / 1024}))


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildRun:
    result: dict[str, Any]
    process_s: float
    peak_rss_mb: float
    peak_pss_mb: float


def run_child(spec: ChildSpec) -> ChildRun:
    """Run one child to its end and read its own rusage (peak RSS of that process alone)."""
    workdir = Path(spec.workdir)
    spec_path = workdir / f"{spec.tool}-spec.json"
    spec_path.write_text(json.dumps(asdict(spec)))
    out_path, err_path = workdir / f"{spec.tool}.out", workdir / f"{spec.tool}.err"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(spec_path)]
    with out_path.open("wb") as out, err_path.open("ab") as err:
        start = time.perf_counter()
        env = _child_env(workdir, spec.digest_src)
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        sampler = _TreeRssSampler(proc.pid)
        sampler.start()
        try:
            proc.wait(timeout=CHILD_TIME_LIMIT_S)
        finally:
            sampler.stop()
            proc.kill()  # a no-op unless the time limit ran out
        elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        tail = err_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{spec.tool} child failed ({proc.returncode}):\n{tail}")
    result = json.loads(out_path.read_text().strip().splitlines()[-1])
    peak_mb = max(result["vm_hwm_mb"], sampler.peak_kb / 1024)
    pss_mb = sampler.peak_pss_kb / 1024
    return ChildRun(result=result, process_s=elapsed, peak_rss_mb=peak_mb, peak_pss_mb=pss_mb)


class _TreeRssSampler(threading.Thread):
    """Samples the summed RSS of a process and its descendants (worker processes count too).

    Not ``ru_maxrss``: on Linux a child's ru_maxrss starts at the RSS its parent had when it
    forked, so every child of this (large) parent would report at least the parent's size.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kb = 0
        # PSS shares each page among the processes that map it: the worker processes share
        # the interpreter and libraries, which a sum of their RSS would count once each.
        self.peak_pss_kb = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.02):
            tree = _process_tree(self.pid)
            self.peak_kb = max(self.peak_kb, sum(_status_kb(pid, "VmRSS") for pid in tree))
            self.peak_pss_kb = max(self.peak_pss_kb, sum(_pss_kb(pid) for pid in tree))

    def stop(self) -> None:
        self._done.set()
        self.join()


def _process_tree(pid: int) -> list[int]:
    pids, index = [pid], 0
    while index < len(pids):
        for task in Path(f"/proc/{pids[index]}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                pids.extend(int(child) for child in task.read_text().split())
        index += 1
    return pids


def _pss_kb(pid: int) -> int:
    """The proportional set size of a process (0 once it is gone)."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in lines if line.startswith("Pss:")), 0)


def _status_kb(pid: int, key: str) -> int:
    """A ``kB`` line of /proc/PID/status (0 once the process is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in lines if line.startswith(f"{key}:")), 0)


def _child_env(workdir: Path, digest_src: str | None) -> dict[str, str]:
    # No proxy may take loopback requests elsewhere; rss2email's lock file stays in workdir.
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(NO_PROXY="*", XDG_RUNTIME_DIR=str(workdir), PYTHONDONTWRITEBYTECODE="1")
    if digest_src:
        env["PYTHONPATH"] = digest_src  # ahead of the editable install's path
    return env


# Measurements and the table


@dataclass(frozen=True, slots=True, kw_only=True)
class Measurement:
    """One row of the table."""

    tool: str
    run: str
    n: int
    latency_ms: float
    wall_s: float
    process_s: float
    peak_rss_mb: float
    peak_pss_mb: float
    entries: int  # entries in the 200 bodies the tool received
    responses: str
    peak_in_flight: int
    stored: int
    expected: int
    errors: tuple[str, ...] = ()
    source: str = ""  # where digest was imported from

    @property
    def feeds_per_s(self) -> float:
        return self.n / self.wall_s

    @property
    def entries_per_s(self) -> float:
        return self.entries / self.wall_s


def measure(
    server: FeedServer, spec: ChildSpec, run: str, expected: int, per_feed: int
) -> Measurement:
    """Run one child against the server and turn what both saw into a row."""
    server.reset_counts()
    child = run_child(spec)
    statuses = dict(sorted(server.statuses.items()))
    return Measurement(
        tool="rss2email" if spec.tool == "rss2email" else spec.tool,
        run=run,
        n=len(spec.urls),
        latency_ms=server.latency_s * 1000,
        wall_s=child.result["wall_s"],
        process_s=child.process_s,
        peak_rss_mb=child.peak_rss_mb,
        peak_pss_mb=child.peak_pss_mb,
        entries=statuses.get(200, 0) * per_feed,
        responses=" ".join(f"{count}x{status}" for status, count in statuses.items()),
        peak_in_flight=server.peak_in_flight,
        stored=child.result["stored"],
        expected=expected,
        errors=tuple(child.result["errors"]),
        source=child.result.get("source", ""),
    )


_COLUMNS = (
    ("tool", "<9"),
    ("run", "<15"),
    ("N", ">4"),
    ("latency", ">8"),
    ("wall s", ">7"),
    ("proc s", ">7"),
    ("feeds/s", ">8"),
    ("entries/s", ">9"),
    ("peak RSS MB", ">11"),
    ("peak PSS MB", ">11"),
    ("HTTP", "<14"),
    ("in-flight", ">9"),
    ("stored", ">11"),
)


def format_table(rows: Sequence[Measurement]) -> str:
    """The results as a fixed-width table, one line per measurement."""
    header = "  ".join(f"{name:{spec}}" for name, spec in _COLUMNS)
    lines = [header, "-" * len(header)]
    for row in rows:
        cells = (
            row.tool,
            row.run,
            row.n,
            f"{row.latency_ms:g} ms",
            f"{row.wall_s:.2f}",
            f"{row.process_s:.2f}",
            f"{row.feeds_per_s:.1f}",
            f"{row.entries_per_s:.0f}" if row.entries else "-",
            f"{row.peak_rss_mb:.0f}",
            f"{row.peak_pss_mb:.0f}",
            row.responses,
            row.peak_in_flight,
            f"{row.stored}/{row.expected}",
        )
        lines.append(
            "  ".join(f"{cell:{spec}}" for cell, (_, spec) in zip(cells, _COLUMNS, strict=True))
        )
    return "\n".join(lines)


def format_verdicts(rows: Sequence[Measurement]) -> str:
    """The ratio to rss2email and the issue's targets, for the rows that measure them."""
    lines = [
        f"measured the digest package in {s}" for s in sorted({r.source for r in rows if r.source})
    ]
    for row in rows:
        if row.errors:
            lines.append(
                f"! {row.tool} {row.run} N={row.n}: {len(row.errors)} feed(s) failed, "
                f"first: {row.errors[0]}"
            )
        if row.stored != row.expected:
            lines.append(
                f"! {row.tool} {row.run} N={row.n}: stored {row.stored}, expected {row.expected}"
            )
    lines.extend(_ratio_lines(rows))
    lines.extend(_target_lines(rows))
    return "\n".join(lines)


def _ratio_lines(rows: Sequence[Measurement]) -> list[str]:
    lines = []
    for r2e in (r for r in rows if r.tool == "rss2email"):
        ours = _find(rows, "digest", "first", r2e.n, r2e.latency_ms)
        if ours is not None:
            ratio = r2e.wall_s / ours.wall_s
            lines.append(
                f"ratio rss2email/digest wall, N={r2e.n} at {r2e.latency_ms:g} ms: {ratio:.1f}x"
                f" (target >= {TARGET_RATIO:g}x: {_verdict(ratio >= TARGET_RATIO)})"
            )
    return lines


def _target_lines(rows: Sequence[Measurement]) -> list[str]:
    lines = []
    if (row := _find(rows, "digest", "first", 50, 200)) is not None:
        lines.append(_time_target(row, TARGET_50_S))
    if (row := _find(rows, "digest", "first", 500, None)) is not None:
        lines.append(_time_target(row, TARGET_500_S))
    digest_rows = [r for r in rows if r.tool == "digest"]
    if digest_rows:
        peak = max(r.peak_pss_mb for r in digest_rows)
        ok = _verdict(peak <= TARGET_RSS_MB)
        lines.append(
            f"target: digest peak memory (PSS of the process tree) <= {TARGET_RSS_MB:g} MB:"
            f" {peak:.0f} MB {ok} (summed RSS, shared pages counted per process:"
            f" {max(r.peak_rss_mb for r in digest_rows):.0f} MB)"
        )
    return lines


def _time_target(row: Measurement, target_s: float) -> str:
    verdict = _verdict(row.wall_s <= target_s)
    return (
        f"target: digest N={row.n} at {row.latency_ms:g} ms in <= {target_s:g} s:"
        f" {row.wall_s:.2f} s {verdict}"
    )


def _find(
    rows: Sequence[Measurement], tool: str, run: str, n: int, latency_ms: float | None
) -> Measurement | None:
    for row in rows:
        same_latency = latency_ms is None or row.latency_ms == latency_ms
        if row.tool == tool and row.run == run and row.n == n and same_latency:
            return row
    return None


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# Cases


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One N: digest's first run, and optionally its reruns and rss2email on the same feeds."""

    n: int
    reruns: bool
    rss2email: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    per_feed: int
    root: Path
    profile_dir: Path | None = None
    digest_src: str | None = None


def run_case(server: FeedServer, case: Case, options: Options) -> list[Measurement]:
    """Every measurement of one case, each in its own child; the reruns reuse the store."""
    urls = [server.base_url + path for path in sorted(server.feeds)[: case.n]]
    expected = case.n * options.per_feed
    workdir = Path(tempfile.mkdtemp(prefix=f"digest-n{case.n}-", dir=options.root))
    rows = [_measure_digest(server, workdir, urls, "first", expected, options)]
    if case.reruns:
        rows.append(_measure_digest(server, workdir, urls, "rerun-304", 0, options))
        server.is_conditional = False
        try:
            rows.append(_measure_digest(server, workdir, urls, "rerun-same-200", 0, options))
        finally:
            server.is_conditional = True
    if case.rss2email:
        r2e_dir = Path(tempfile.mkdtemp(prefix=f"r2e-n{case.n}-", dir=options.root))
        run_child(ChildSpec(tool="rss2email-setup", workdir=str(r2e_dir), urls=urls))
        spec = ChildSpec(tool="rss2email", workdir=str(r2e_dir), urls=urls)
        rows.append(measure(server, spec, "first", expected, options.per_feed))
    return rows


def _measure_digest(
    server: FeedServer, workdir: Path, urls: list[str], run: str, expected: int, options: Options
) -> Measurement:
    profile = None
    if options.profile_dir:
        profile = str(options.profile_dir / f"digest-n{len(urls)}-{run}.prof")
    spec = ChildSpec(
        tool="digest",
        workdir=str(workdir),
        urls=urls,
        profile=profile,
        digest_src=options.digest_src,
    )
    return measure(server, spec, run, expected, options.per_feed)


def plan(args: argparse.Namespace) -> tuple[list[Case], float]:
    """The cases to run and the latency in seconds, from the command line."""
    if args.quick:
        latency_ms = 20.0 if args.latency_ms is None else args.latency_ms
        return [Case(n=args.n or 5, reruns=True, rss2email=args.rss2email is True)], (
            latency_ms / 1000
        )
    latency = (200.0 if args.latency_ms is None else args.latency_ms) / 1000
    with_r2e = args.rss2email is not False
    if args.n:
        return [Case(n=args.n, reruns=True, rss2email=with_r2e)], latency
    return [
        Case(n=50, reruns=False, rss2email=with_r2e),
        Case(n=500, reruns=True, rss2email=False),
    ], latency


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add = parser.add_argument
    add("--n", type=int, help="run one case with this many feeds (default: N=50, then N=500)")
    add("--latency-ms", type=float, help="latency of every answer (default 200; --quick 20)")
    add("--entries", type=int, default=ENTRIES_PER_FEED, help="entries per feed (default 50)")
    add("--quick", action="store_true", help="N=5 at 20 ms, no rss2email: a smoke run")
    add(
        "--rss2email",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time rss2email on the same feeds (default: yes, except with --quick)",
    )
    add("--profile", type=Path, metavar="DIR", help="write cProfile stats of digest runs here")
    add("--digest-src", metavar="DIR", help="measure the digest/ package in DIR instead")
    add("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        run_child_main(args.child)
        return
    cases, latency = plan(args)
    largest = max(case.n for case in cases)
    pool = load_corpus_entries(limit=largest * args.entries if args.quick else None)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    server = FeedServer(latency_s=latency)
    server.start()
    try:
        server.feeds = build_feeds(pool, largest, server.base_url, args.entries)
        print(_describe_feeds(pool, server), flush=True)
        with tempfile.TemporaryDirectory(prefix="digest-bench-") as root:
            options = Options(
                per_feed=args.entries,
                root=Path(root),
                profile_dir=args.profile,
                digest_src=args.digest_src,
            )
            rows = [row for case in cases for row in run_case(server, case, options)]
    finally:
        server.stop()
    print(format_table(rows))
    print(format_verdicts(rows))
    if args.profile:
        print(f"profiles in {args.profile}; digest's wall times above include cProfile's overhead")


def _describe_feeds(pool: Sequence[CorpusEntry], server: FeedServer) -> str:
    feeds = server.feeds.values()
    size_kb = sum(map(len, feeds)) / len(feeds) / 1024
    return (
        f"{len(pool)} distinct corpus entries -> {len(feeds)} feeds, {size_kb:.0f} KB each on"
        f" average, served at {server.base_url} with {server.latency_s * 1000:g} ms latency"
    )


if __name__ == "__main__":
    main()
