"""Each story's language: detected offline from its headline and text, the feed's own
declaration deciding where the text is too short to tell (issue 15)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.language import declared_language, story_language
from digest.models import FeedSource, FetchResult, Story
from digest.parse import parse_feed
from tests.conftest import SHARED_DATA, in_corpus

FEEDS = SHARED_DATA / "feeds"
NOW = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("title", "text", "language"),
    [
        ("Syrie : un attentat à la voiture piégée fait 19 morts", "", "fr"),
        ("Will Washington and Beijing's cool war heat up?", "", "en"),
        ("Očkovanie proti chrípke: lekári odporúčajú dať sa zaočkovať čo najskôr", "", "sk"),
        ("Sicherheitslücke", "Ein Fehler in Homekit erlaubt es, fremde Geräte zu steuern.", "de"),
    ],
)
def test_the_language_of_a_headline_and_its_text(title: str, text: str, language: str) -> None:
    assert story_language(title, text) == language


def test_the_feeds_declaration_decides_only_where_the_text_cannot() -> None:
    # Too short to tell: py3langid scores "306: My Watch Has Ended" as Nigerian Pidgin.
    assert story_language("306: My Watch Has Ended", "") is None
    assert story_language("306: My Watch Has Ended", "", declared="en") == "en"
    # Sure of the text: a declaration does not overrule it.
    assert story_language("Syrie : un attentat à la voiture piégée fait 19 morts", "") == "fr"
    french = "Le gouvernement a annoncé mardi une réforme des retraites très contestée."
    assert story_language("Réforme des retraites", french, declared="en") == "fr"


@pytest.mark.parametrize(
    ("value", "code"),
    [("en-US", "en"), ("de_DE", "de"), ("FR", "fr"), (" sk ", "sk"), ("English", None), ("", None)],
)
def test_a_declaration_gives_its_primary_language(value: str, code: str | None) -> None:
    assert declared_language(value) == code


def _stories(body: bytes, url: str = "https://example.org/feed") -> tuple[Story, ...]:
    source = FeedSource(url=url, name="Example")
    return parse_feed(FetchResult(source=source, fetched_at=NOW, status=200, body=body)).stories


_SHORT = "Episode 12"  # too short for the detector: the declaration decides


@pytest.mark.parametrize(
    "body",
    [
        b"<rss version='2.0'><channel><title>T</title><language>de-DE</language>"
        b"<item><title>" + _SHORT.encode() + b"</title><link>https://example.org/1</link>"
        b"</item></channel></rss>",
        b"<feed xmlns='http://www.w3.org/2005/Atom' xml:lang='de'><title>T</title><entry>"
        b"<title>" + _SHORT.encode() + b"</title><link href='https://example.org/1'/>"
        b"<id>1</id></entry></feed>",
        b'{"version": "https://jsonfeed.org/version/1.1", "title": "T", "language": "de",'
        b' "items": [{"id": "1", "url": "https://example.org/1", "title": "'
        + _SHORT.encode()
        + b'"}]}',
    ],
    ids=["rss", "atom", "json-feed"],
)
def test_each_format_gives_its_declared_language(body: bytes) -> None:
    (story,) = _stories(body)
    assert story.language == "de"


def _corpus_stories(relative: str) -> tuple[Story, ...]:
    path = FEEDS / relative
    return _stories(path.read_bytes(), url=str(path))


@pytest.mark.parametrize(
    ("relative", "language"),
    [
        in_corpus(
            "feeds/Ranchero-Software__NetNewsWire",
            "Ranchero-Software__NetNewsWire/aktuality.rss",
            "sk",
        ),
        in_corpus("feeds/codehollow__FeedReader", "codehollow__FeedReader/Rss20LeMonde.xml", "fr"),
        in_corpus("feeds/spacecowboy__Feeder", "spacecowboy__Feeder/model/golem-de.xml", "de"),
        # Short podcast titles the detector is unsure of; the feed declares en-US.
        in_corpus(
            "feeds/Ranchero-Software__NetNewsWire", "Ranchero-Software__NetNewsWire/atp.rss", "en"
        ),
    ],
)
def test_real_feeds_are_in_their_language(relative: str, language: str) -> None:
    stories = _corpus_stories(relative)
    assert Counter(s.language for s in stories) == {language: len(stories)}


@pytest.mark.corpus("feeds/spacecowboy__Feeder")
def test_a_feed_of_many_languages_gives_each_story_its_own() -> None:
    """OpenStreetMap's diaries declare no language and hold many: the Czech diary entry that
    swallowed 16 Slovak stories in the edition is Czech."""
    stories = _corpus_stories("spacecowboy__Feeder/model/openstreetmap.xml")
    by_title = {s.title: s.language for s in stories}
    assert by_title["Klášterec nad Ohří má špatně zakreslené plochy"] == "cs"
    assert by_title["Viel hat sich getan!"] == "de"
    assert by_title["Begining of a mountain of a task"] == "en"
    assert Path(stories[0].feed_url).name == "openstreetmap.xml"
