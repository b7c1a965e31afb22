from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digest.errors import FeedError
from digest.models import FeedSource, FetchResult
from digest.parse import canonical_url, html_to_text, parse_feed, recent_stories
from tests.conftest import FEEDS

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


def test_a_malformed_json_feed_item_is_skipped_not_the_whole_feed() -> None:
    body = b"""{"version": "https://jsonfeed.org/version/1.1", "title": 5, "home_page_url": 7,
      "items": [
        {"id": "1", "url": 5, "content_html": 5, "authors": 5},
        {"id": ["x"], "url": "https://news.example.org/ok", "title": "Fine", "authors": [{"name": 3}, {"name": "Ann"}]},
        "not an item"
      ]}"""
    (story,) = parse_feed(_from_bytes(body))
    assert (story.title, story.url, story.author) == ("Fine", "https://news.example.org/ok", "Ann")
