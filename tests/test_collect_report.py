"""What a collect run reports: article pages fetched, failed and skipped (and why), and each
feed's parse warnings said once. Real loopback servers and real `python -m digest` runs."""

from __future__ import annotations

import itertools
import logging
import os
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest

from digest.collect import FetchLimits, fetch_all, fetch_pages
from digest.collecting import collect_once
from digest.config import load_settings
from digest.models import FeedSource, FetchResult
from digest.runtime import Runtime
from digest.sqlite_store import SQLiteStore
from tests.conftest import REPO, FeedServer, write_settings
from tests.silent_host import SilentHost

_WRONG_CHARSET_FEED = """<?xml version="1.0" encoding="ISO-8859-1"?>
<rss version="2.0"><channel><title>Börse</title><link>https://boerse.example/</link>
<item><title>Kurse für Anleger</title><link>https://boerse.example/1</link>
<description>Die Börse schließt höher; Anleger atmen auf.</description></item>
</channel></rss>
""".encode()  # UTF-8 bytes under a Latin-1 declaration, as Rss20FinanzenNet.xml does
_CHARSET_WARNING = "declared ISO-8859-1, but the bytes are UTF-8"
NOW = datetime(2024, 1, 1, 12, tzinfo=UTC)
# The article hosts here are on 127.0.0.0/8 and play sites on the internet, so the settings
# allow that network ([collect].allowed_internal_networks).
LOOPBACK = (ip_network("127.0.0.0/8"),)


def _digest(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "digest", "--config", str(config), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def test_a_feeds_charset_warning_is_printed_once_per_run(tmp_path: Path) -> None:
    (tmp_path / "boerse.xml").write_bytes(_WRONG_CHARSET_FEED)
    config = write_settings(tmp_path, [{"url": "boerse.xml", "name": "Boerse"}])
    done = _digest(config, "collect", "--no-summarize")
    assert done.returncode == 0, done.stderr
    assert (done.stdout + done.stderr).count(_CHARSET_WARNING) == 1
    assert _CHARSET_WARNING in done.stdout  # in the feed's row of the table


def test_a_failed_feed_is_reported_once_per_run(tmp_path: Path) -> None:
    (tmp_path / "good.xml").write_bytes(_WRONG_CHARSET_FEED)
    config = write_settings(
        tmp_path, [{"url": "good.xml", "name": "Good"}, {"url": "broken.xml", "name": "Broken"}]
    )
    (tmp_path / "broken.xml").write_text("<rss><channel><item>", encoding="utf-8")
    done = _digest(config, "collect", "--no-summarize")
    assert done.returncode == 0, done.stderr
    rows = [line for line in (done.stdout + done.stderr).splitlines() if "broken.xml" in line]
    assert len(rows) <= 1 and "Broken" in done.stdout and "failed" in done.stdout, done.stdout
    assert "broken.xml" not in done.stderr


def test_the_daemon_log_still_has_the_charset_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "boerse.xml").write_bytes(_WRONG_CHARSET_FEED)
    settings = load_settings(write_settings(tmp_path, [{"url": "boerse.xml", "name": "B"}]))
    with caplog.at_level(logging.INFO), Runtime.open(settings, clock=lambda: NOW) as runtime:
        report = collect_once(runtime, summarize=False)
    assert report.feeds[0].warnings == (_CHARSET_WARNING,)
    logged = [r for r in caplog.records if _CHARSET_WARNING in r.getMessage()]
    assert [r.levelno for r in logged] == [logging.INFO]


# Article pages from hosts that do not answer


@pytest.fixture
def silent_server() -> Iterator[SilentHost]:
    server = SilentHost()
    yield server
    server.close()


def _refused_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: bound, then closed."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


def _pages(urls: list[str], **limits: Any) -> list[FetchResult]:
    limits.setdefault("allowed_internal_networks", LOOPBACK)
    return fetch_pages(urls, FetchLimits(**limits), lambda: NOW)


def test_a_host_that_never_answers_is_given_up_after_three_pages(
    silent_server: SilentHost, feed_server: FeedServer
) -> None:
    feed_server.extra_routes["/article/ok"] = (200, {"Content-Type": "text/html"}, b"<p>hi</p>")
    silent = [silent_server.url(f"story/{n}") for n in range(8)]
    results = _pages(
        [*silent, feed_server.url("article/ok")], timeout_seconds=0.5, per_host=1, give_up_after=3
    )
    assert len(silent_server.requests) == 3  # the other five were never asked for
    kinds = [r.error_kind for r in results[:8]]
    assert kinds == ["timeout"] * 3 + ["skipped"] * 5
    assert results[0].error == "timed out after 0.5 s"
    assert results[3].error == (
        "not fetched: 127.0.0.2 did not answer 3 times in a row in this run (last: timeout)"
    )
    assert results[8].is_ok  # another host is not held back


def test_pages_in_flight_together_all_count_before_the_host_is_tried_again(
    silent_server: SilentHost,
) -> None:
    silent_server.garble_first = 1  # one of the first four fails at once, three time out later
    urls = [silent_server.url(f"story/{n}") for n in range(12)]
    results = _pages(urls, timeout_seconds=0.5, per_host=4, give_up_after=3)
    # The quick failure did not let a fifth page go out while the other three were pending.
    assert len(silent_server.requests) == 4
    kinds = Counter(r.error_kind for r in results)
    assert kinds == {"network": 1, "timeout": 3, "skipped": 8}


def test_pages_waiting_for_a_slow_host_do_not_hold_up_other_hosts(
    silent_server: SilentHost, feed_server: FeedServer
) -> None:
    feed_server.extra_routes["/article/ok"] = (200, {"Content-Type": "text/html"}, b"<p>hi</p>")
    ticks = itertools.count()

    def clock() -> datetime:  # stamps each result in the order the fetches end
        return NOW + timedelta(seconds=next(ticks))

    urls = [*(silent_server.url(f"story/{n}") for n in range(3)), feed_server.url("article/ok")]
    limits = FetchLimits(
        timeout_seconds=0.5,
        concurrency=2,
        per_host=1,
        give_up_after=3,
        allowed_internal_networks=LOOPBACK,
    )
    *silent, other = fetch_pages(urls, limits, clock)
    # Two overall slots: the silent host's queued pages must not sit on the second one.
    assert other.is_ok
    assert other.fetched_at < min(r.fetched_at for r in silent)


def test_a_refused_port_is_given_up_after_three_pages() -> None:
    port = _refused_port()
    urls = [f"http://127.0.0.1:{port}/story/{n}" for n in range(5)]
    results = _pages(urls, per_host=1, give_up_after=3)
    assert [r.error_kind for r in results] == ["connection-refused"] * 3 + ["skipped"] * 2
    assert results[0].error == f"127.0.0.1:{port} refused the connection"


def test_a_host_that_answers_even_with_errors_is_never_given_up(feed_server: FeedServer) -> None:
    results = _pages([feed_server.url(f"status/404?{n}") for n in range(5)], give_up_after=2)
    assert [r.error_kind for r in results] == ["http"] * 5
    assert len(feed_server.requests) == 5


def test_feeds_are_never_given_up_on() -> None:
    port = _refused_port()
    sources = [FeedSource(url=f"http://127.0.0.1:{port}/feed/{n}") for n in range(5)]
    results = fetch_all(sources, {}, FetchLimits(per_host=1), lambda: NOW)
    assert [r.error_kind for r in results] == ["connection-refused"] * 5


_ARTICLE = (
    "<html><body><article><h1>Bridge</h1>"
    + "".join(
        f"<p>Paragraph {n}: the harbour bridge reopened on Monday after two years of repairs, "
        "and the first buses crossed it at dawn while engineers watched from the pier.</p>"
        for n in range(5)
    )
    + "</article></body></html>"
).encode()


def _teaser_feed(links: list[str]) -> bytes:
    items = "".join(
        f"<item><title>Story {n}</title><link>{link}</link>"
        f"<description>Teaser {n} of the story.</description></item>"
        for n, link in enumerate(links)
    )
    return f"""<?xml version="1.0"?><rss version="2.0"><channel><title>Teasers</title>
<link>https://news.example/</link>{items}</channel></rss>""".encode()


def test_collect_reports_pages_fetched_failed_and_skipped(
    tmp_path: Path, silent_server: SilentHost, feed_server: FeedServer
) -> None:
    feed_server.extra_routes["/article/ok"] = (200, {"Content-Type": "text/html"}, _ARTICLE)
    port = _refused_port()
    silent = [silent_server.url(f"story/{n}") for n in range(5)]
    refused = [f"http://127.0.0.3:{port}/story/{n}" for n in range(2)]
    links = [feed_server.url("article/ok"), *silent, *refused]
    (tmp_path / "teasers.xml").write_bytes(_teaser_feed(links))
    collect = {
        "full_text": True,
        "page_timeout_seconds": 0.5,
        "per_host": 1,
        "allowed_internal_networks": ["127.0.0.0/8"],
    }
    config = write_settings(
        tmp_path, [{"url": "teasers.xml", "name": "Teasers"}], sections={"collect": collect}
    )
    done = _digest(config, "collect", "--no-summarize")
    assert done.returncode == 0, done.stderr
    assert "1 feed: 1 read, 0 failed; 8 new stories" in done.stdout
    assert (
        "article pages: 1 fetched, 5 failed (timeout: 3 at 1 host; connection-refused: 2 at"
        " 1 host), 2 skipped after repeated failures at 127.0.0.2; summaries use the feed's"
        " teaser for those"
    ) in done.stdout
    assert len(silent_server.requests) == 3
    with SQLiteStore.open(tmp_path / "digest.db") as store:
        assert store.article(silent[0]) is not None  # a failure, kept: not fetched again
        assert store.article(silent[4]) is None  # skipped: never tried, so nothing to keep
        by_url = {s.url: s for s in store.stories_for_edition(NOW.date())}
    assert len(by_url) == 8
    assert by_url[links[0]].text_source == "article"
    assert by_url[silent[4]].text_source == "feed"


def test_collect_says_nothing_about_pages_when_none_were_asked_for(tmp_path: Path) -> None:
    (tmp_path / "teasers.xml").write_bytes(_teaser_feed(["https://news.example/1"]))
    config = write_settings(tmp_path, [{"url": "teasers.xml", "name": "Teasers"}])
    done = _digest(config, "collect", "--no-summarize")  # full_text is off
    assert done.returncode == 0, done.stderr
    assert "article pages" not in done.stdout


def test_a_feed_whose_entries_are_all_too_old_says_so(tmp_path: Path) -> None:
    nasa = str(REPO / "tests" / "fixtures" / "feeds" / "nasa.xml")  # entries from 2017
    config = write_settings(
        tmp_path, [{"url": nasa, "name": "NASA"}], sections={"collect": {"max_age_days": 2}}
    )
    done = _digest(config, "collect", "--no-summarize")
    assert done.returncode == 0, done.stderr
    row = " ".join(done.stdout.split())  # the detail column wraps
    assert "NASA unchanged 0 every entry (1) was published more than 2 days ago: none kept" in row
    assert "[collect].max_age_days" in row


def _dated_feed(dates: list[datetime | None]) -> bytes:
    items = "".join(
        f"<item><title>Entry number {n}</title><link>https://big.example/{n}</link>"
        + (f"<pubDate>{format_datetime(when)}</pubDate>" if when else "")
        + f"<description>Entry {n}.</description></item>"
        for n, when in enumerate(dates)
    )
    return f'<rss version="2.0"><channel><title>Big</title>{items}</channel></rss>'.encode()


def test_a_feed_with_more_entries_than_the_cap_keeps_the_newest_and_says_so(
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC)
    # Entries 0-29 dated oldest first, then two undated ones, which are of unknown age and
    # count as the oldest (issue 15): the 23 newest are 7-29.
    dates: list[datetime | None] = [now - timedelta(hours=30 - n) for n in range(30)]
    (tmp_path / "big.xml").write_bytes(_dated_feed([*dates, None, None]))
    config = write_settings(
        tmp_path,
        [{"url": "big.xml", "name": "Big"}],
        sections={"collect": {"max_age_days": 2, "max_entries_per_feed": 23}},
    )
    done = _digest(config, "collect", "--no-summarize")
    assert done.returncode == 0, done.stderr
    row = " ".join(done.stdout.split())
    assert "Big new 23 kept the newest 23 of its 32 recent entries" in row
    assert "[collect].max_entries_per_feed" in row
    with SQLiteStore.open(load_settings(config).store.path) as store:
        kept = {story.title for story in store.stories_for_edition(now.date())}
    assert kept == {f"Entry number {n}" for n in range(7, 30)}
