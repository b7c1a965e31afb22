"""Lead images: what the feeds name (JSON Feed's image, Media RSS, enclosures) and what the
article page names (og:image) become a story's ``image_url`` only as an absolute http(s)
address; anything script-capable, relative to nothing or over-long is dropped."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from digest.models import FeedSource, FetchResult
from digest.normalise import image_url
from digest.parse import parse_feed

NOW = datetime(2024, 1, 1, 12, tzinfo=UTC)
FEED_URL = "https://news.example.org/feed"


def _parse(body: bytes, url: str = FEED_URL) -> list[str | None]:
    result = FetchResult(source=FeedSource(url=url), fetched_at=NOW, body=body)
    return [story.image_url for story in parse_feed(result).stories]


def _json_feed(*items: Mapping[str, object]) -> bytes:
    return json.dumps({"version": "https://jsonfeed.org/version/1.1", "items": items}).encode()


def test_json_feed_image_then_banner_image() -> None:
    items = (
        {"id": "1", "url": "https://news.example.org/1", "title": "One", "image": "/i/1.png",
         "banner_image": "https://news.example.org/banner-1.png"},
        {"id": "2", "url": "https://news.example.org/2", "title": "Two",
         "banner_image": "https://cdn.example.org/b2.jpg"},
        {"id": "3", "url": "https://news.example.org/3", "title": "Three", "image": 7},
    )  # fmt: skip
    assert _parse(_json_feed(*items)) == [
        "https://news.example.org/i/1.png",
        "https://cdn.example.org/b2.jpg",
        None,
    ]


HOSTILE_IMAGES = {
    "javascript:alert(1)": None,
    " JaVaScRiPt:alert(1)": None,
    "java\tscript:alert(1)": None,
    "data:image/svg+xml,<svg onload=alert(1)>": None,
    "data:image/png;base64,iVBORw0KGgo=": None,
    "vbscript:msgbox(1)": None,
    "ftp://files.example.org/a.jpg": None,
    "https://": None,
    "https://img.example.org/" + "a" * 2100 + ".jpg": None,
    'https://img.example.org/a.jpg"><script>alert(1)</script>': (
        "https://img.example.org/a.jpg%22%3E%3Cscript%3Ealert(1)%3C/script%3E"
    ),
    'https://img.example.org/it\'s a "photo".jpg': (
        "https://img.example.org/it's%20a%20%22photo%22.jpg"
    ),
    "//cdn.example.org/x.jpg#frag": "https://cdn.example.org/x.jpg",
    "HTTPS://IMG.Example.ORG:443/p.jpg?utm_source=rss&w=600": "https://img.example.org/p.jpg?w=600",
}


@pytest.mark.parametrize(("given", "expected"), HOSTILE_IMAGES.items())
def test_only_an_absolute_http_image_address_is_kept(given: str, expected: str | None) -> None:
    assert image_url(given, FEED_URL) == expected


def test_hostile_image_addresses_in_a_feed_never_reach_a_story() -> None:
    items = [
        {"id": str(n), "url": f"https://news.example.org/{n}", "title": f"T{n}", "image": given}
        for n, given in enumerate(HOSTILE_IMAGES)
    ]
    assert _parse(_json_feed(*items)) == list(HOSTILE_IMAGES.values())


def test_a_relative_image_of_a_local_feed_file_without_a_site_resolves_to_nothing() -> None:
    body = (
        b'<rss version="2.0"><channel><title>T</title><item><title>X</title>'
        b"<link>https://news.example.org/x</link>"
        b'<enclosure url="images/x.jpg" type="image/jpeg" length="1"/></item></channel></rss>'
    )
    assert _parse(body, url="/srv/feeds/local.xml") == [None]
    assert _parse(body) == ["https://news.example.org/images/x.jpg"]
