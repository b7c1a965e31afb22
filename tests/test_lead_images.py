"""Lead images: what the feeds name (JSON Feed's image, Media RSS, enclosures) and what the
article page names (og:image) become a story's ``image_url`` only as an absolute http(s)
address; anything script-capable, relative to nothing or over-long is dropped."""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import lxml.html
import pytest

from digest.collecting import collect_all
from digest.config import load_settings
from digest.models import FeedSource, FetchResult
from digest.normalise import image_url
from digest.parse import parse_feed
from digest.runtime import Runtime
from digest.sending import send_edition
from digest.sqlite_store import SQLiteStore
from tests.conftest import FeedServer, write_settings
from tests.deliver_sink import body_text

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
        "https://img.example.org/it%27s%20a%20%22photo%22.jpg"
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


# The article page's own image, when its full text is fetched


_PARAGRAPHS = "".join(
    f"<p>Paragraph {n}: the harbour bridge reopened on Monday after two years of repairs, "
    "and the first buses crossed it at dawn while engineers watched from the pier.</p>"
    for n in range(1, 6)
)


def _page(image: str) -> bytes:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Harbour bridge'
        f' reopens | Harbour News</title><meta property="og:image" content="{image}">'
        '<meta property="og:type" content="article"></head><body><nav><a href="/">Home</a>'
        "</nav><article><h1>Harbour bridge reopens</h1>"
        f"{_PARAGRAPHS}</article><footer>Sign up for our newsletter</footer></body></html>"
    ).encode()


def _teasers(server: FeedServer) -> bytes:
    items = "".join(
        f"<item><title>Story {n}</title><link>{server.url(f'article/{n}')}</link>"
        f"<description>Teaser {n}.</description>{extra}</item>"
        for n, extra in (
            (1, ""),
            (2, '<enclosure url="https://cdn.example.org/feed-2.jpg" type="image/jpeg"/>'),
            (3, ""),
        )
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Harbour News</title>'
        f"<link>{server.base_url}/</link>{items}</channel></rss>"
    ).encode()


def test_a_teasers_lead_image_is_its_article_pages_og_image(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    html = {"Content-Type": "text/html; charset=utf-8"}
    feed_server.extra_routes["/harbour.xml"] = (200, {}, _teasers(feed_server))
    feed_server.extra_routes["/article/1"] = (200, html, _page("/media/bridge 1.jpg"))
    feed_server.extra_routes["/article/2"] = (200, html, _page("/media/bridge-2.jpg"))
    feed_server.extra_routes["/article/3"] = (200, html, _page("javascript:alert(1)"))
    feeds = [{"url": feed_server.url("harbour.xml"), "name": "Harbour"}]
    collect = {"collect": {"full_text": True}}
    settings = load_settings(write_settings(tmp_path, feeds, sections=collect))
    with SQLiteStore.open(settings.store.path) as store:
        collect_all(Runtime(settings, store, clock=lambda: NOW))
        stories = {s.title: s for s in store.stories_for_edition(NOW.date())}
        kept = store.article(feed_server.url("article/1"))
    assert all(s.text_source == "article" for s in stories.values())
    assert stories["Story 1"].image_url == feed_server.url("media/bridge%201.jpg")
    assert stories["Story 2"].image_url == "https://cdn.example.org/feed-2.jpg"  # the feed's
    assert stories["Story 3"].image_url is None
    assert kept is not None and kept.image_url == feed_server.url("media/bridge%201.jpg")
    fetched = [path for path, _ in feed_server.requests if not path.startswith("/harbour")]
    assert sorted(fetched) == ["/article/1", "/article/2", "/article/3"]  # never an image


def test_a_sent_edition_names_the_image_and_never_fetches_it(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    """Collected, rendered and sent: the HTML part references the image by its address, the
    plain-text part does not mention it, and nothing ever asked the server for it."""
    image = feed_server.url("media/lead.png")
    feed = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Pictures</title>'
        f"<item><title>Harbour bridge reopens</title><link>{feed_server.url('a/1')}</link>"
        f"<description>{'The bridge is open again after two years. ' * 5}</description>"
        f'<enclosure url="{image}" type="image/png" length="100"/></item></channel></rss>'
    ).encode()
    feed_server.extra_routes["/pictures.xml"] = (200, {}, feed)
    feeds = [{"url": feed_server.url("pictures.xml"), "name": "Pictures"}]
    settings = load_settings(write_settings(tmp_path, feeds, recipients=("r@example.org",)))
    with Runtime.open(settings, clock=lambda: NOW) as runtime:
        send_edition(runtime, collect=True)
    (path,) = (tmp_path / "outbox").glob("*.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    html = lxml.html.document_fromstring(body_text(message, "html"))
    assert [(i.get("src"), i.get("alt")) for i in html.iter("img")] == [
        (image, "Harbour bridge reopens")
    ]
    assert "lead.png" not in body_text(message, "plain")
    assert [path for path, _ in feed_server.requests] == ["/pictures.xml"]
