"""``digest web``'s public archive through Starlette's TestClient: the list of past
editions, each edition as sent with the per-reader unsubscribe link neutralised, and an
Atom feed (RFC 4287) that feedparser reads without complaint."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from xml.etree import ElementTree

import feedparser
import pytest
from starlette.testclient import TestClient

from digest.config import Settings, load_settings
from digest.messages import UNSUBSCRIBE_TOKEN
from digest.models import RenderedDigest
from digest.runtime import Runtime
from digest.web import create_app
from tests.conftest import FEEDS, write_settings

BASE = "https://news.example.org"
ATOM = "{http://www.w3.org/2005/Atom}"


def _edition(day: date, subject: str) -> RenderedDigest:
    link = f"{BASE}/unsubscribe/{UNSUBSCRIBE_TOKEN}"
    return RenderedDigest(
        edition_on=day,
        subject=subject,
        html=f'<html><body><h1>{subject}</h1><a href="{link}">Unsubscribe</a></body></html>',
        text=f"{subject}\nUnsubscribe: {link}\n",
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    config = write_settings(
        tmp_path,
        [{"url": str(FEEDS / "nasa.xml"), "name": "NASA"}],
        sections={"web": {"base_url": BASE}, "render": {"title": "Morning & Co"}},
    )
    return load_settings(config)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with Runtime.open(settings) as runtime:
        for day, subject in ((1, "First <news>"), (2, "Second")):
            created = datetime(2024, 3, day, 5, tzinfo=UTC)
            runtime.store.create_edition(_edition(date(2024, 3, day), subject), [], created)
    with TestClient(create_app(settings, "k" * 40), base_url="https://testserver") as test:
        yield test


def test_the_archive_lists_editions_newest_first(client: TestClient) -> None:
    page = client.get("/archive/")
    assert page.status_code == 200
    second = page.text.index(f'href="{BASE}/archive/2024-03-02/"')
    first = page.text.index(f'href="{BASE}/archive/2024-03-01/"')
    assert second < first
    assert "First &lt;news&gt;" in page.text  # subjects are escaped


def test_an_archived_edition_has_no_readers_link_and_a_strict_policy(client: TestClient) -> None:
    page = client.get("/archive/2024-03-01/")
    assert page.status_code == 200 and "<h1>First <news></h1>" in page.text
    assert UNSUBSCRIBE_TOKEN not in page.text and "/unsubscribe/" not in page.text
    assert f'href="{BASE}/subscribe"' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src" not in policy and policy.startswith("default-src 'none'")
    assert "sandbox" in policy


@pytest.mark.parametrize("path", ["/archive/2024-02-30/", "/archive/2020-01-01/", "/archive/x/"])
def test_a_missing_edition_is_404(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_the_atom_feed_is_valid_and_lists_every_edition(client: TestClient) -> None:
    answer = client.get("/feed.atom")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/atom+xml")
    parsed = feedparser.parse(answer.content)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert parsed.feed.title == "Morning & Co"
    assert [e.title for e in parsed.entries] == ["Second", "First <news>"]
    assert [e.link for e in parsed.entries] == [
        f"{BASE}/archive/2024-03-02/",
        f"{BASE}/archive/2024-03-01/",
    ]
    root = ElementTree.fromstring(answer.content)
    # RFC 4287 4.1.1: a feed has exactly one id, title and updated, and an author (here on
    # the feed); each entry has one id, title and updated.
    for name in ("id", "title", "updated", "author"):
        assert len(root.findall(f"{ATOM}{name}")) == 1, name
    assert root.find(f"{ATOM}link[@rel='self']") is not None
    for entry in root.findall(f"{ATOM}entry"):
        for name in ("id", "title", "updated"):
            assert len(entry.findall(f"{ATOM}{name}")) == 1, name
    assert root.findtext(f"{ATOM}updated") == "2024-03-02T00:00:00Z"
