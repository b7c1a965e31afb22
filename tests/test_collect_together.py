"""Several collectors sharing one store (issue 18): each feed fetched once per round, each
host fetched from by one collector at a time, each text summarised once. Real ``python -m
digest`` processes, a real loopback feed server, real SQLite and PostgreSQL stores."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from digest.collecting import collect_all
from digest.config import load_settings
from digest.editions import CachedSummarizer, summary_key
from digest.models import DueFeed
from digest.runtime import Runtime, claim_holder, utc_now
from digest.summarize import SummaryRequest
from tests.conftest import FEEDS, REPO, serving, write_settings

ENGINES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


@pytest.fixture(params=ENGINES)
def store_section(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str | None]:
    """The settings' [store]: a SQLite file, or a PostgreSQL schema of the test's own."""
    if request.param == "sqlite":
        return {"path": str(tmp_path / "digest.db")}
    return {"path": None, "url": request.getfixturevalue("postgres_url")}


@dataclass
class CountingServer:
    """What the feed server saw: the requests for each path, and the most requests it was
    answering at once for each Host."""

    base_url: str = ""
    requests: Counter[str] = field(default_factory=Counter)
    most_at_once: Counter[str] = field(default_factory=Counter)
    _at_once: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def arrived(self, path: str, host: str) -> None:
        with self._lock:
            self.requests[path] += 1
            self._at_once[host] += 1
            self.most_at_once[host] = max(self.most_at_once[host], self._at_once[host])

    def answered(self, host: str) -> None:
        with self._lock:
            self._at_once[host] -= 1


def _rss(path: str) -> bytes:
    """A feed of three stories of its own, published now."""
    now = format_datetime(datetime.now(UTC))
    items = "".join(
        f"<item><title>Story {n} of {path}</title><link>https://news.example{path}/{n}</link>"
        f"<pubDate>{now}</pubDate><description>Story {n} of the feed at {path}, in full."
        "</description></item>"
        for n in range(3)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>{path}</title>{items}'.encode()
        + b"</channel></rss>"
    )


@pytest.fixture
def counting_server() -> Iterator[CountingServer]:
    seen = CountingServer()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            host = self.headers.get("Host", "")
            seen.arrived(self.path, host)
            time.sleep(0.3)  # a slow server, so that the collectors' fetches overlap
            # Counted as answered before the body goes: the client may send its next
            # request as soon as it has the body.
            seen.answered(host)
            body = _rss(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serving(Handler) as base_url:
        seen.base_url = base_url
        yield seen


def _digest_together(
    config: Path, *args: str, count: int = 2
) -> list[subprocess.CompletedProcess[str]]:
    """``count`` ``python -m digest`` processes with these arguments, started together."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "digest", "--config", str(config), *args]
    running = [
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for _ in range(count)
    ]
    done = []
    for process in running:
        out, err = process.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(command, process.returncode, out, err))
    return done


_ROW = re.compile(r"^(F\d+)\s+(\S+)\s", re.MULTILINE)


def test_two_collectors_fetch_each_feed_once_and_store_each_story_once(
    tmp_path: Path, counting_server: CountingServer, store_section: dict[str, str | None]
) -> None:
    port = counting_server.base_url.rsplit(":", 1)[1]
    bases = [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]
    urls = [f"{base}/{h}/feed{n}.xml" for h, base in enumerate(bases) for n in range(4)]
    feeds = [{"url": url, "name": f"F{i}"} for i, url in enumerate(urls)]
    # A round of 30 minutes: had one collector ended before the other began, the other would
    # still not fetch again (with 0, it would: a new round).
    sections = {"store": store_section, "collect": {"min_interval_minutes": 30}}
    config = write_settings(tmp_path, feeds, sections=sections)

    runs = _digest_together(config, "collect", "--no-summarize")

    assert [run.returncode for run in runs] == [0, 0], [run.stderr for run in runs]
    assert counting_server.requests == Counter({url.split(port, 1)[1]: 1 for url in urls})
    statuses: dict[str, list[str]] = {}
    for run in runs:
        for name, status in _ROW.findall(run.stdout):
            statuses.setdefault(name, []).append(status)
    # Read by one, skipped by the other (it was another collector's), never failed.
    assert all(sorted(s) == ["new", "skipped"] for s in statuses.values()), statuses
    assert len(statuses) == len(feeds)
    with Runtime.open(load_settings(config), access="read") as runtime:
        stories = runtime.store.stories_for_edition(datetime.now(UTC).date())
    assert len(stories) == 3 * len(feeds)
    assert len({story.url for story in stories}) == len(stories)


def test_two_collectors_keep_to_per_host_between_them(
    tmp_path: Path, counting_server: CountingServer, store_section: dict[str, str | None]
) -> None:
    feeds = [{"url": f"{counting_server.base_url}/feed{n}.xml", "name": f"F{n}"} for n in range(8)]
    sections = {"store": store_section, "collect": {"per_host": 2, "min_interval_minutes": 30}}
    config = write_settings(tmp_path, feeds, sections=sections)

    runs = _digest_together(config, "collect", "--no-summarize")

    assert [run.returncode for run in runs] == [0, 0], [run.stderr for run in runs]
    (host,) = counting_server.most_at_once
    assert counting_server.most_at_once[host] <= 2
    assert set(counting_server.requests.values()) == {1}


# A summarizer plugin, installed as a package would be (an entry point in the "digest"
# group), that writes each headline it is asked to summarise to a file.
_PLUGIN = """
import os
import time

from digest.hookspecs import hookimpl


class CountingSummarizer:
    model_id = "counting"

    def summarize(self, requests):
        with open(os.environ["COUNTING_SUMMARIZER_LOG"], "a", encoding="utf-8") as log:
            for request in requests:
                log.write(request.title + "\\n")
                log.flush()
                time.sleep(0.02)  # a slow model: the two processes' work overlaps
        return [f"In short: {request.title}" for request in requests]


@hookimpl
def register_summarizers(register):
    register("counting", lambda settings: CountingSummarizer())
"""

# Both processes wait at the gate (a file the test makes) with their summarizer loaded, so
# that they summarise the edition at the same moment.
_SUMMARISE_AT_THE_GATE = """
import sys, time
from pathlib import Path
from digest.config import load_settings
from digest.models import DueFeed
from digest.editions import summarize_edition
from digest.runtime import Runtime

with Runtime.open(load_settings(Path(sys.argv[1]))) as runtime:
    runtime.summarizer
    Path(sys.argv[3]).touch()
    while not Path(sys.argv[2]).exists():
        time.sleep(0.01)
    summarize_edition(runtime)
"""


def _install_plugin(folder: Path) -> None:
    folder.mkdir()
    (folder / "counting_summarizer.py").write_text(_PLUGIN, encoding="utf-8")
    info = folder / "counting_summarizer-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: counting-summarizer\nVersion: 1.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        "[digest]\ncounting = counting_summarizer\n", encoding="utf-8"
    )


def test_two_processes_summarise_each_text_once(
    tmp_path: Path, store_section: dict[str, str | None]
) -> None:
    feeds = [
        {"url": str(FEEDS / name), "name": name, "dedupe": False}
        for name in ("nasa.xml", "japantoday.xml", "jsonfeed.json")
    ]
    sections = {"store": store_section, "summarize": {"summarizer": "counting"}}
    config = write_settings(tmp_path, feeds, sections=sections)
    with Runtime.open(load_settings(config)) as runtime:
        assert collect_all(runtime).new_stories
    _install_plugin(tmp_path / "plugin")
    log, gate = tmp_path / "summarised.txt", tmp_path / "gate"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path / "plugin")]),
        "COUNTING_SUMMARIZER_LOG": str(log),
    }
    ready = [tmp_path / f"ready{n}" for n in range(2)]
    running = [
        subprocess.Popen(
            [sys.executable, "-c", _SUMMARISE_AT_THE_GATE, str(config), str(gate), str(r)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for r in ready
    ]
    while not all(r.exists() for r in ready) and all(p.poll() is None for p in running):
        time.sleep(0.01)
    gate.touch()
    done = [process.communicate(timeout=120) for process in running]

    assert [p.returncode for p in running] == [0, 0], [err for _, err in done]
    summarised = log.read_text(encoding="utf-8").splitlines()
    assert len(summarised) > 3  # an edition's worth
    assert [title for title, n in Counter(summarised).items() if n > 1] == []


def test_a_collector_leaves_a_live_collectors_host_and_takes_a_dead_ones(
    tmp_path: Path, counting_server: CountingServer, store_section: dict[str, str | None]
) -> None:
    port = counting_server.base_url.rsplit(":", 1)[1]
    alive = [f"http://127.0.0.1:{port}/alive{n}.xml" for n in range(3)]
    dead = [f"http://localhost:{port}/dead{n}.xml" for n in range(2)]
    feeds = [{"url": url, "name": f"F{i}"} for i, url in enumerate(alive + dead)]
    config = write_settings(tmp_path, feeds, sections={"store": store_section})
    with Runtime.open(load_settings(config)) as runtime:
        store = runtime.store
        due = [DueFeed(url=u, host=urlsplit(u).hostname or "") for u in alive + dead]
        store.claim_feeds("another:1:aaaaaa", due[:3], lease=timedelta(hours=1))
        store.claim_feeds("died:2:bbbbbb", due[3:], lease=timedelta(0))  # its lease ran out

        first = collect_all(runtime)
        store.release_feed_claims("another:1:aaaaaa")
        second = collect_all(runtime)

    assert [(f.status, f.taken_by) for f in first.feeds] == [
        *[("skipped", "another:1:aaaaaa")] * 3,
        *[("new", None)] * 2,
    ]
    assert "another:1:aaaaaa" in (first.feeds[0].hold_reason or "")
    # Its own fetches never count against it: a single collector fetches as it always did.
    assert [f.status for f in second.feeds] == ["new"] * 3 + ["unchanged"] * 2
    assert counting_server.requests == Counter(
        {**{f"/alive{n}.xml": 1 for n in range(3)}, **{f"/dead{n}.xml": 2 for n in range(2)}}
    )


def test_the_feeds_of_a_killed_collector_are_fetched_by_the_next_one(
    tmp_path: Path, store_section: dict[str, str | None]
) -> None:
    asked: Counter[str] = Counter()
    hanging, let_go = threading.Event(), threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            asked[self.path] += 1
            if asked[self.path] == 1:  # the first collector's fetch: it is killed meanwhile
                hanging.set()
                let_go.wait(30)
            body = _rss(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serving(Handler) as base_url:
        feeds = [{"url": f"{base_url}/feed.xml", "name": "F0"}]
        config = write_settings(tmp_path, feeds, sections={"store": store_section})
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        command = [sys.executable, "-m", "digest", "--config", str(config), "collect"]
        first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
        assert hanging.wait(60)  # it has claimed the host, and is fetching
        first.kill()
        first.wait()
        let_go.set()
        # Long before its lease runs out: its process is gone, so its claim is too.
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    assert second.returncode == 0, second.stderr
    assert _ROW.findall(second.stdout) == [("F0", "new")]
    assert asked == Counter({"/feed.xml": 2})


def test_a_summary_claimed_by_a_process_that_ended_is_made_at_once(
    tmp_path: Path, store_section: dict[str, str | None]
) -> None:
    feeds = [{"url": str(FEEDS / "nasa.xml"), "name": "NASA"}]
    config = write_settings(tmp_path, feeds, sections={"store": store_section})
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    gone = f"{socket.gethostname()}:{ended.stdout.strip()}:abcdef"
    requests = [SummaryRequest(title="A headline", text="The story. It goes on.")]
    with Runtime.open(load_settings(config)) as runtime:
        key = summary_key(requests[0])
        model_id = runtime.summarizer.model_id
        assert runtime.store.claim_summaries(gone, model_id, [key], lease=timedelta(hours=1))
        summarizer = CachedSummarizer(runtime.summarizer, runtime.store, utc_now, claim_holder())
        assert summarizer.summarize(requests) == runtime.summarizer.summarize(requests)
        assert runtime.store.cached_summaries(summarizer.model_id, [key])
