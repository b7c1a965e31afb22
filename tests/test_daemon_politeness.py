"""Per-feed politeness: a feed is not fetched more often than its RSS <ttl>, its
Cache-Control max-age, a 429/503's Retry-After or its configured minimum interval. A real
HTTP server on 127.0.0.1 counts the requests; the collect runs are given their clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from digest.cli import cli
from digest.collecting import CollectReport, collect_once
from digest.config import load_settings
from digest.fetching import feed_hold
from digest.http_headers import max_age_seconds, retry_after_seconds
from digest.models import FeedSource, FetchResult
from digest.runtime import Runtime
from tests.conftest import FEEDS, FeedServer, write_settings

T0 = datetime(2024, 3, 1, 6, 0, tzinfo=UTC)


def _rss(ttl: int | None = None, item: str = "one") -> bytes:
    ttl_element = f"<ttl>{ttl}</ttl>" if ttl else ""
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Polite</title>'
        f"<link>https://example.org/</link>{ttl_element}"
        f"<item><title>Story {item}</title><link>https://example.org/{item}</link>"
        f"<description>The {item} story, told in a few words.</description></item>"
        "</channel></rss>"
    ).encode()


def _route(server: FeedServer, path: str, status: int, headers: dict[str, str], body: bytes) -> str:
    server.extra_routes[path] = (status, {"Content-Type": "application/rss+xml", **headers}, body)
    return server.url(path)


def _collect(tmp_path: Path, urls: list[str], at: datetime, **collect: Any) -> CollectReport:
    config = write_settings(
        tmp_path, [{"url": url} for url in urls], sections={"collect": {"retries": 2, **collect}}
    )
    with Runtime.open(load_settings(config), clock=lambda: at) as runtime:
        return collect_once(runtime, summarize=False)


def _hits(server: FeedServer, path: str) -> int:
    return sum(1 for requested, _ in server.requests if requested == path)


def test_a_feed_is_not_fetched_again_before_its_rss_ttl(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    url = _route(feed_server, "/ttl.xml", 200, {}, _rss(ttl=60))
    assert _collect(tmp_path, [url], T0).feeds[0].status == "new"
    early = _collect(tmp_path, [url], T0 + timedelta(minutes=30)).feeds[0]
    assert early.status == "skipped"
    assert early.not_before == T0 + timedelta(minutes=60)
    assert early.hold_reason == "RSS ttl 60 min (60 min)"
    assert _hits(feed_server, "/ttl.xml") == 1
    assert _collect(tmp_path, [url], T0 + timedelta(minutes=61)).feeds[0].status == "unchanged"
    assert _hits(feed_server, "/ttl.xml") == 2


def test_the_ttl_is_kept_when_the_feed_answers_unchanged(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    url = _route(feed_server, "/ttl.xml", 200, {}, _rss(ttl=20))
    _collect(tmp_path, [url], T0)
    # The same body again is not parsed; the ttl read the first time still holds.
    assert _collect(tmp_path, [url], T0 + timedelta(minutes=21)).feeds[0].status == "unchanged"
    assert _collect(tmp_path, [url], T0 + timedelta(minutes=30)).feeds[0].status == "skipped"


def test_cache_control_max_age_holds_a_feed(tmp_path: Path, feed_server: FeedServer) -> None:
    url = _route(feed_server, "/cached.xml", 200, {"Cache-Control": "public, max-age=600"}, _rss())
    _collect(tmp_path, [url], T0)
    held = _collect(tmp_path, [url], T0 + timedelta(minutes=5)).feeds[0]
    assert held.status == "skipped" and held.not_before == T0 + timedelta(minutes=10)
    assert "max-age" in (held.hold_reason or "")
    assert _collect(tmp_path, [url], T0 + timedelta(minutes=11)).feeds[0].status != "skipped"


def test_a_429_with_retry_after_is_not_asked_again_before_then(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    url = _route(feed_server, "/busy.xml", 429, {"Retry-After": "120"}, b"slow down")
    failed = _collect(tmp_path, [url], T0).feeds[0]
    assert failed.status == "failed" and "Retry-After: 120 s" in (failed.error or "")
    held = _collect(tmp_path, [url], T0 + timedelta(seconds=60)).feeds[0]
    assert held.status == "skipped" and held.not_before == T0 + timedelta(seconds=120)
    assert held.hold_reason == "Retry-After after HTTP 429 (2 min)"
    assert _hits(feed_server, "/busy.xml") == 1


def test_a_503_that_says_when_is_not_retried_and_one_that_does_not_is(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    polite = _route(feed_server, "/down.xml", 503, {"Retry-After": "3600"}, b"maintenance")
    plain = _route(feed_server, "/flaky.xml", 503, {}, b"oops")
    report = _collect(tmp_path, [polite, plain], T0)
    assert [f.status for f in report.feeds] == ["failed", "failed"]
    assert _hits(feed_server, "/down.xml") == 1  # the server said when: not retried now
    assert _hits(feed_server, "/flaky.xml") == 3  # retried twice with backoff
    later = _collect(tmp_path, [polite, plain], T0 + timedelta(minutes=30))
    assert [f.status for f in later.feeds] == ["skipped", "failed"]


def test_a_configured_minimum_interval_holds_every_http_feed(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    url = _route(feed_server, "/plain.xml", 200, {}, _rss())
    _collect(tmp_path, [url], T0, min_interval_minutes=45)
    held = _collect(tmp_path, [url], T0 + timedelta(minutes=44), min_interval_minutes=45)
    assert held.feeds[0].status == "skipped"
    assert held.feeds[0].hold_reason == "minimum interval (45 min)"


def test_collect_says_which_feeds_were_not_due(tmp_path: Path, feed_server: FeedServer) -> None:
    url = _route(feed_server, "/ttl.xml", 200, {}, _rss(ttl=1440))
    config = write_settings(tmp_path, [{"url": url}, {"url": str(FEEDS / "nasa.xml")}])
    runner = CliRunner()
    command = ["--config", str(config), "collect", "--no-summarize"]
    assert runner.invoke(cli, command).exit_code == 0
    again = runner.invoke(cli, command)
    assert again.exit_code == 0, again.output
    words = " ".join(again.output.split())  # a long detail wraps under its column
    assert "skipped" in words and "(RSS ttl 1440 min (24.0 h))" in words
    assert "2 feeds: 1 read, 0 failed, 1 not due yet" in again.output


def test_local_files_are_never_held_and_holds_are_capped_at_a_day() -> None:
    local = FetchResult(source=FeedSource(url=str(FEEDS / "nasa.xml")), fetched_at=T0)
    assert feed_hold(local, ttl_minutes=60) == (None, None)
    remote = FetchResult(source=FeedSource(url="https://example.org/rss"), fetched_at=T0)
    assert feed_hold(remote, ttl_minutes=None) == (None, None)
    until, reason = feed_hold(remote, ttl_minutes=1800)  # 30 hours asked
    assert until == T0 + timedelta(hours=24) and reason == "RSS ttl 1800 min (24.0 h)"


def test_retry_after_and_max_age_headers_are_read() -> None:
    assert retry_after_seconds({"Retry-After": "120"}) == 120
    dated = {
        "Retry-After": "Fri, 01 Mar 2024 06:05:00 GMT",
        "Date": "Fri, 01 Mar 2024 06:00:00 GMT",
    }
    assert retry_after_seconds(dated) == 300
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({}) is None
    assert max_age_seconds({"Cache-Control": "public, max-age=300"}) == 300
    assert max_age_seconds({"Cache-Control": "s-maxage=10"}) is None
    assert max_age_seconds({"Cache-Control": "no-cache, max-age=300"}) is None
