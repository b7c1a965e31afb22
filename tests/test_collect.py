from __future__ import annotations

import time
from datetime import UTC, datetime

from digest.collect import FetchLimits, fetch_all
from digest.models import FeedSource, FeedState, FetchResult
from digest.parse import parse_feed
from tests.conftest import FEEDS, FeedServer

NOW = datetime(2024, 1, 1, 12, tzinfo=UTC)


def _result(name: str, url: str | None = None, content_type: str | None = None) -> FetchResult:
    source = FeedSource(url=url or str(FEEDS / name), name=None)
    return FetchResult(
        source=source, fetched_at=NOW, body=(FEEDS / name).read_bytes(), content_type=content_type
    )


def _from_bytes(body: bytes, url: str = "https://news.example.org/feed") -> FetchResult:
    return FetchResult(source=FeedSource(url=url), fetched_at=NOW, body=body)


def _fetch(server: FeedServer, paths: list[str], **limits: float) -> list[FetchResult]:
    sources = [FeedSource(url=server.url(p), name=p) for p in paths]
    return fetch_all(sources, {}, FetchLimits(**limits), lambda: NOW)  # type: ignore[arg-type]


def test_fetch_reports_each_failure_and_keeps_the_good_feeds(feed_server: FeedServer) -> None:
    results = _fetch(
        feed_server,
        ["feeds/nasa.xml", "status/404", "status/500", "huge", "feeds/jsonfeed.json"],
        max_bytes=1_000_000,
    )
    ok, missing, broken, huge, json_feed = results
    assert ok.is_ok and ok.status == 200 and b"NASA" in ok.body
    assert missing.error == "HTTP 404 Not Found"
    assert broken.error == "HTTP 500 Internal Server Error"
    assert huge.error == "response larger than 1,000,000 bytes"
    assert json_feed.content_type == "application/feed+json"
    user_agents = {headers.get("User-Agent", "") for _, headers in feed_server.requests}
    assert all(agent.startswith("digest/") for agent in user_agents)


def test_fetch_gives_up_at_the_overall_deadline(feed_server: FeedServer) -> None:
    started = time.monotonic()
    (slow,) = _fetch(feed_server, ["slow"], timeout_seconds=1)
    assert time.monotonic() - started < 4
    assert slow.error == "timed out after 1 s"


def test_conditional_get_turns_an_unchanged_feed_into_304(feed_server: FeedServer) -> None:
    source = FeedSource(url=feed_server.url("feeds/nasa.xml"))
    (first,) = fetch_all([source], {}, FetchLimits(), lambda: NOW)
    assert first.etag
    state = FeedState(url=source.url, etag=first.etag)
    (second,) = fetch_all([source], {source.url: state}, FetchLimits(), lambda: NOW)
    assert second.is_not_modified and second.body == b""
    assert feed_server.requests[-1][1]["If-None-Match"] == first.etag


def test_relative_links_resolve_against_the_feed_address(feed_server: FeedServer) -> None:
    (result,) = _fetch(feed_server, ["feeds/relative.atom"])
    (story,) = parse_feed(result).stories
    assert story.url == f"{feed_server.base_url}/blog/2003/12/13/atom03"


def test_missing_local_file_is_a_feed_error_not_a_crash(tmp_path: object) -> None:
    source = FeedSource(url="/nonexistent/feed.xml")
    (result,) = fetch_all([source], {}, FetchLimits(), lambda: NOW)
    assert result.error == "no such file: /nonexistent/feed.xml"
