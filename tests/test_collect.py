from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from digest.collect import (
    FetchLimits,
    canonical_url,
    fetch_all,
    html_to_text,
    parse_feed,
    recent_stories,
)
from digest.errors import FeedError
from digest.models import FeedSource, FeedState, FetchResult
from tests.conftest import FEEDS, FeedServer

NOW = datetime(2024, 1, 1, 12, tzinfo=UTC)


def _result(name: str, url: str | None = None, content_type: str | None = None) -> FetchResult:
    source = FeedSource(url=url or str(FEEDS / name), name=None)
    return FetchResult(
        source=source, fetched_at=NOW, body=(FEEDS / name).read_bytes(), content_type=content_type
    )


def _from_bytes(body: bytes, url: str = "https://news.example.org/feed") -> FetchResult:
    return FetchResult(source=FeedSource(url=url), fetched_at=NOW, body=body)


def test_rss_entry_is_normalised() -> None:
    (story,) = parse_feed(_result("nasa.xml"))
    assert story.title == (
        "NASA Television to Broadcast Space Station Departure of Cygnus Cargo Ship"
    )
    assert story.url == (
        "http://www.nasa.gov/press-release/"
        "nasa-television-to-broadcast-space-station-departure-of-cygnus-cargo-ship"
    )
    assert story.source_name == "NASA Breaking News"
    assert story.published_at == datetime(2019, 8, 1, 20, 15, tzinfo=UTC)
    assert story.text.startswith("More than three months after delivering several tons")
    assert "\n" not in story.text
    assert story.story_id.startswith("sha256:")


def test_json_feed_is_read_by_our_own_parser() -> None:
    (story,) = parse_feed(_result("jsonfeed.json", content_type="application/feed+json"))
    assert story.title == "Announcing JSON Feed"
    assert story.url == "https://jsonfeed.org/2017/05/17/announcing_json_feed"
    assert story.published_at == datetime(2017, 5, 17, 15, 2, 12, tzinfo=UTC)
    assert story.source_name == "JSON Feed"
    assert story.text.splitlines()[1].startswith("So we developed JSON Feed")
    assert '<a href="http://cyber.harvard.edu/rss/rss.html"' in story.html


def test_entries_without_a_link_are_skipped_and_guid_permalinks_used() -> None:
    stories = parse_feed(_result("missing-link.xml"))
    assert [(s.title, s.url) for s in stories] == [
        ("Item 1", "http://link1/"),
        ("Item 2", "http://link2/"),
    ]


def test_untitled_entry_is_titled_from_its_text_never_blank() -> None:
    body = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>
    <item><link>https://news.example.org/a</link>
    <description>&lt;p&gt;Storm closes the harbour for a second day as winds reach 120 km/h on the coast&lt;/p&gt;</description></item>
    <item><link>https://news.example.org/b</link></item>
    </channel></rss>"""
    (story,) = parse_feed(_from_bytes(body))
    assert story.title == "Storm closes the harbour for a second day as winds reach 120…"


def test_feed_html_is_sanitised_and_titles_are_plain_text() -> None:
    body = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>
    <item><title>&lt;b&gt;Bold&lt;/b&gt; &amp;amp; &lt;script&gt;alert(1)&lt;/script&gt;news</title>
    <link>https://news.example.org/a?utm_source=rss&amp;id=7#top</link>
    <description>&lt;p onclick="x()"&gt;Hi &lt;a href="javascript:alert(1)"&gt;there&lt;/a&gt;&lt;/p&gt;&lt;script&gt;steal()&lt;/script&gt;</description></item>
    </channel></rss>"""
    (story,) = parse_feed(_from_bytes(body))
    assert story.title == "Bold & news"
    assert story.url == "https://news.example.org/a?id=7"
    assert "script" not in story.html and "onclick" not in story.html
    assert "javascript:" not in story.html
    assert story.text == "Hi there"


def test_not_a_feed_is_an_error_for_that_feed() -> None:
    with pytest.raises(FeedError, match="not a readable feed"):
        parse_feed(_from_bytes(b"<html><body><p>Just a page</p></body></html>"))
    with pytest.raises(FeedError, match="not a JSON Feed"):
        parse_feed(_from_bytes(b'{"hello": "world"}'))


def test_mojibake_capture_still_parses_into_titled_stories() -> None:
    stories = parse_feed(_result("japantoday.xml"))
    assert len(stories) == 20
    assert all(s.title and s.url.startswith("http") for s in stories)
    assert any("airport shooting" in s.title for s in stories)


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("HTTPS://Example.ORG:443/a?utm_source=x&b=1&fbclid=z#frag", "https://example.org/a?b=1"),
        ("http://example.org:8080", "http://example.org:8080/"),
        ("http://example.org/p?gclid=1", "http://example.org/p"),
    ],
)
def test_canonical_url(url: str, canonical: str) -> None:
    assert canonical_url(url) == canonical


def test_html_to_text_keeps_block_breaks_and_decodes_entities() -> None:
    assert html_to_text("<p>One &amp; two</p><p>Three<br>four</p>") == "One & two\nThree\nfour"


def test_max_age_drops_old_entries_unless_zero() -> None:
    stories = parse_feed(_result("nasa.xml"))
    assert recent_stories(stories, NOW, 2) == ()
    assert recent_stories(stories, NOW, 0) == stories


# Fetching over a real loopback server


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
    (story,) = parse_feed(result)
    assert story.url == f"{feed_server.base_url}/blog/2003/12/13/atom03"


def test_missing_local_file_is_a_feed_error_not_a_crash(tmp_path: object) -> None:
    source = FeedSource(url="/nonexistent/feed.xml")
    (result,) = fetch_all([source], {}, FetchLimits(), lambda: NOW)
    assert result.error == "no such file: /nonexistent/feed.xml"


def test_a_malformed_json_feed_item_is_skipped_not_the_whole_feed() -> None:
    body = b"""{"version": "https://jsonfeed.org/version/1.1", "title": 5, "home_page_url": 7,
      "items": [
        {"id": "1", "url": 5, "content_html": 5, "authors": 5},
        {"id": ["x"], "url": "https://news.example.org/ok", "title": "Fine", "authors": [{"name": 3}, {"name": "Ann"}]},
        "not an item"
      ]}"""
    (story,) = parse_feed(_from_bytes(body))
    assert (story.title, story.url, story.author) == ("Fine", "https://news.example.org/ok", "Ann")
