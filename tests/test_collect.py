from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from digest import fetching
from digest.collect import FetchLimits, fetch_all
from digest.collecting import collect_all
from digest.config import load_settings
from digest.models import FeedSource, FeedState, FetchResult
from digest.parse import parse_feed
from digest.runtime import Runtime
from digest.sqlite_store import SQLiteStore
from tests.conftest import FeedServer, write_settings

NOW = datetime(2024, 1, 1, 12, tzinfo=UTC)


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
    assert huge.error == "response larger than 1,000,000 bytes (it declares 3,000,000 bytes)"
    assert (missing.error_kind, broken.error_kind, huge.error_kind) == ("http", "http", "too-large")
    assert json_feed.content_type == "application/feed+json"
    user_agents = {headers.get("User-Agent", "") for _, headers in feed_server.requests}
    assert all(agent.startswith("digest/") for agent in user_agents)


def test_fetch_gives_up_at_the_overall_deadline(feed_server: FeedServer) -> None:
    started = time.monotonic()
    (slow,) = _fetch(feed_server, ["slow"], timeout_seconds=1)
    assert time.monotonic() - started < 4
    assert slow.error == "timed out after 1 s"
    assert slow.error_kind == "timeout"


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


# The collect pipeline: fetch, parse, full text, store


def _article_page(paragraphs: list[str]) -> bytes:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        "<html><head><title>Story</title></head><body><nav><a href='/'>Home</a>"
        "<a href='/world'>World</a></nav><article><h1>Harbour bridge reopens</h1>"
        f"{body}</article><footer>Sign up for our newsletter</footer></body></html>"
    ).encode()


def _teaser_feed(server: FeedServer) -> bytes:
    return f"""<?xml version="1.0"?><rss version="2.0"><channel><title>Harbour News</title>
<link>{server.base_url}/</link>
<item><title>Harbour bridge reopens</title><link>{server.url("article/1")}</link>
<description>The bridge is open again.</description></item>
<item><title>Long story in the feed</title><link>{server.url("article/2")}</link>
<description>{"Every word of this story is already in the feed. " * 20}</description></item>
</channel></rss>""".encode()


def _collect(tmp_path: Path, server: FeedServer, feeds: list[dict[str, Any]], **collect: Any):  # type: ignore[no-untyped-def]
    path = write_settings(tmp_path, feeds, sections={"collect": collect})
    settings = load_settings(path)
    with SQLiteStore.open(settings.store.path) as store:
        report = collect_all(Runtime(settings, store, clock=lambda: NOW))
        stories = store.stories_for_edition(NOW.date())
        states = {f.url: store.feed_state(f.url) for f in settings.feed_sources}
    return report, stories, states


def test_teasers_get_the_article_text_once_and_long_entries_keep_theirs(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    paragraphs = [
        f"Paragraph {n}: the harbour bridge reopened on Monday after two years of repairs, "
        "and the first buses crossed it at dawn while engineers watched from the pier."
        for n in range(1, 6)
    ]
    feed_server.extra_routes["/harbour.xml"] = (200, {}, _teaser_feed(feed_server))
    feed_server.extra_routes["/article/1"] = (
        200,
        {"Content-Type": "text/html"},
        _article_page(paragraphs),
    )
    feeds = [{"url": feed_server.url("harbour.xml"), "name": "Harbour"}]
    report, stories, _ = _collect(tmp_path, feed_server, feeds, full_text=True)
    assert report.new_stories == 2
    teaser, long_entry = sorted(stories, key=lambda s: s.title)
    assert teaser.text_source == "article"
    assert teaser.text.startswith("Paragraph 1: the harbour bridge reopened")
    assert "newsletter" not in teaser.text and "Home" not in teaser.text
    assert long_entry.text_source == "feed"
    fetched = [path for path, _ in feed_server.requests if path.startswith("/article/")]
    assert fetched == ["/article/1"]
    # A second run finds nothing new and fetches no page again.
    _collect(tmp_path, feed_server, feeds, full_text=True)
    fetched = [path for path, _ in feed_server.requests if path.startswith("/article/")]
    assert fetched == ["/article/1"]


def test_a_feed_can_opt_out_of_full_text(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.extra_routes["/harbour.xml"] = (200, {}, _teaser_feed(feed_server))
    feeds = [{"url": feed_server.url("harbour.xml"), "full_text": False}]
    _, stories, _ = _collect(tmp_path, feed_server, feeds, full_text=True)
    assert {s.text_source for s in stories} == {"feed"}
    assert not [p for p, _ in feed_server.requests if p.startswith("/article/")]


def test_a_gone_feed_is_reported_and_not_fetched_again(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feeds = [
        {"url": feed_server.url("status/410"), "name": "Old"},
        {"url": feed_server.url("feeds/nasa.xml")},
    ]
    report, _, states = _collect(tmp_path, feed_server, feeds)
    assert [f.status for f in report.feeds] == ["gone", "new"]
    assert states[feed_server.url("status/410")].is_gone
    report, _, _ = _collect(tmp_path, feed_server, feeds)
    assert [f.status for f in report.feeds] == ["gone", "unchanged"]  # in config order
    assert [p for p, _ in feed_server.requests].count("/status/410") == 1


def test_a_permanent_redirect_moves_the_feed_for_the_next_fetches(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    new_url = feed_server.url("feeds/nasa.xml")
    feed_server.extra_routes["/old.xml"] = (301, {"Location": new_url}, b"")
    feeds = [{"url": feed_server.url("old.xml")}]
    report, stories, states = _collect(tmp_path, feed_server, feeds)
    assert report.feeds[0].moved_to == new_url and stories
    assert states[feed_server.url("old.xml")].fetch_url == new_url
    _collect(tmp_path, feed_server, feeds)
    assert [p for p, _ in feed_server.requests].count("/old.xml") == 1


def test_every_failure_is_kept_with_its_time_and_kind(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feeds = [{"url": feed_server.url("status/404")}]
    _collect(tmp_path, feed_server, feeds, retries=0)
    _collect(tmp_path, feed_server, feeds, retries=0)
    with SQLiteStore.open(tmp_path / "digest.db") as store:
        failures = store.feed_failures(feed_server.url("status/404"))
    assert [(f.kind, f.message) for f in failures] == [("http", "HTTP 404 Not Found")] * 2
    assert failures[0].failed_at == NOW


def test_an_unchanged_body_is_not_parsed_again(tmp_path: Path, feed_server: FeedServer) -> None:
    # No ETag or Last-Modified: the server answers 200 with the whole body every time.
    body = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>
<item><title>Has a link</title><link>https://news.example.org/1</link></item>
<item><title>Has none</title></item></channel></rss>"""
    feed_server.extra_routes["/plain.xml"] = (200, {"Content-Type": "application/rss+xml"}, body)
    feeds = [{"url": feed_server.url("plain.xml")}]
    first, _, states = _collect(tmp_path, feed_server, feeds)
    assert first.feeds[0].warnings  # parsed: it says what it skipped
    assert states[feed_server.url("plain.xml")].body_hash
    second, _, _ = _collect(tmp_path, feed_server, feeds)
    assert second.feeds[0].status == "unchanged" and second.feeds[0].warnings == ()
    feed_server.extra_routes["/plain.xml"] = (200, {}, body.replace(b"/1<", b"/2<"))
    third, _, _ = _collect(tmp_path, feed_server, feeds)
    assert third.feeds[0].new_stories == 1


def test_a_large_run_parses_in_worker_processes_with_the_same_results(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    names = ["nasa.xml", "jsonfeed.json", "relative.atom", "japantoday.xml"]
    feeds = [{"url": feed_server.url(f"feeds/{name}?copy={n}")} for n in range(5) for name in names]
    feeds.append({"url": feed_server.url("garbage")})
    assert len(feeds) >= fetching._POOL_MIN_FEEDS
    report, stories, _ = _collect(tmp_path, feed_server, feeds)
    single = tmp_path / "single"
    single.mkdir()
    small, single_stories, _ = _collect(
        single, feed_server, [{"url": feed_server.url(f"feeds/{n}")} for n in names]
    )
    assert [f.status for f in report.feeds].count("failed") == 1
    assert report.feeds[-1].error_kind == "parse"
    # Each copy is the same feed under another URL: same links, so stored once.
    assert {s.url for s in stories} == {s.url for s in single_stories}
    assert report.new_stories == small.new_stories
