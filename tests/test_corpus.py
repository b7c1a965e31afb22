"""Every real feed of the shared corpus, served over loopback HTTP, fetched and parsed.

Each file must give stories or a clear per-feed ``FeedError``: never another exception, a
hang, or a story with an empty title or link. Exact values pin a few files per format
and per encoding. Without the corpus these are skipped (failed under CI=true);
tests/test_parse.py pins the encodings on the repository's own sample of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from digest.collect import FetchLimits, fetch_all
from digest.errors import FeedError
from digest.models import FeedSource, ParsedFeed
from digest.parse import parse_feed
from tests.conftest import REPO, SAMPLE, SHARED_DATA, serving

CORPUS = SHARED_DATA / "feeds"
pytestmark = pytest.mark.corpus("feeds")
NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)
_CONTENT_TYPES = {
    ".json": "application/feed+json",
    ".atom": "application/atom+xml",
    ".rss": "application/rss+xml",
    ".rdf": "application/rdf+xml",
}


def _folder_handler(folder: Path) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            file = (folder / unquote(self.path.split("?")[0]).lstrip("/")).resolve()
            if not file.is_relative_to(folder) or not file.is_file():
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = file.read_bytes()
            self.send_response(200)
            # No charset: the body's own BOM or XML declaration has to be read.
            self.send_header("Content-Type", _CONTENT_TYPES.get(file.suffix, "application/xml"))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture(scope="module")
def corpus_url() -> Iterator[str]:
    """The corpus folder served by a threaded HTTP server on 127.0.0.1."""
    with serving(_folder_handler(CORPUS.resolve())) as base_url:
        yield base_url


@dataclass(frozen=True)
class Outcome:
    parsed: ParsedFeed | None = None
    error: str | None = None


@pytest.fixture(scope="module")
def outcomes(corpus_url: str) -> dict[str, Outcome]:
    """Each corpus file (by its path under feeds/) -> its stories or its error."""
    files = sorted(str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*") if p.is_file())
    sources = [FeedSource(url=f"{corpus_url}/{name}") for name in files]
    limits = FetchLimits(timeout_seconds=10, retries=0)
    results = fetch_all(sources, {}, limits, lambda: NOW)
    assert [r.error for r in results if r.error] == []
    recorded = {}
    for name, result in zip(files, results, strict=True):
        try:
            recorded[name] = Outcome(parsed=parse_feed(result))
        except FeedError as exc:
            recorded[name] = Outcome(error=exc.message)
    return recorded


def _stories(outcomes: dict[str, Outcome], name: str) -> ParsedFeed:
    parsed = outcomes[name].parsed
    assert parsed is not None, outcomes[name].error
    return parsed


def test_every_file_gives_stories_or_a_clear_error(outcomes: dict[str, Outcome]) -> None:
    assert len(outcomes) == 212
    parsed = [o.parsed for o in outcomes.values() if o.parsed]
    errors = [o.error for o in outcomes.values() if o.error]
    assert (len(parsed), len(errors)) == (162, 50)
    assert sum(len(p.stories) for p in parsed) == 3294
    assert all(e and "\n" not in e for e in errors)


def test_every_story_has_a_title_a_link_and_an_aware_utc_time(
    outcomes: dict[str, Outcome],
) -> None:
    for name, outcome in outcomes.items():
        for story in outcome.parsed.stories if outcome.parsed else ():
            assert story.title.strip() == story.title != "", name
            assert story.url.startswith(("http://", "https://")), name
            # undated entries keep no date (issue 15), but every story says when it was seen
            assert story.first_seen_at is not None, name
            when = story.published_at or story.first_seen_at
            assert when.utcoffset() == timedelta(0), name
            assert "\ufffd" not in story.title, name
            assert story.story_id.startswith("sha256:"), name


@pytest.mark.parametrize(
    ("name", "count", "title", "url"),
    [
        (  # RSS 0.91, ISO-8859-1
            "codehollow__FeedReader/Rss091Stadtfeuerwehr.xml",
            15,
            "[17.08.2018 - 20:35 Uhr] Technische Hilfeleistung",
            "http://www.stadtfeuerwehr-weiz.at/einsaetze/einsatz-detail/5218/",
        ),
        (  # RSS 1.0
            "codehollow__FeedReader/Rss10OrfAt.xml",
            50,
            "US-Band New Edition mit Stern auf „Walk of Fame“ geehrt",
            "http://orf.at/stories/2376368/",
        ),
        (  # RSS 2.0
            "danmactough__node-feedparser/rss2sample.xml",
            4,
            "Star City",
            "http://liftoff.msfc.nasa.gov/news/2003/news-starcity.asp",
        ),
        (  # Atom 1.0, relative links resolved against the feed's URL (xml:base is "#fragment")
            "danmactough__node-feedparser/tpm-with-fragment-base.atom",
            20,
            "Hannity Announces Fox Has Hired Sebastian Gorka As NatSec Strategist",
            "/livewire/hannity-announces-fox-hired-sebastian-gorka-national-security-strategist",
        ),
        (  # JSON Feed 1.0
            "Ranchero-Software__NetNewsWire/inessential.json",
            20,
            "James Dempsey and the Breakpoints Benefit App Camp for Girls",
            "http://inessential.com/2017/06/02/james_dempsey_and_the_breakpoints_benefi",
        ),
    ],
)
def test_exact_values_per_format(
    outcomes: dict[str, Outcome], corpus_url: str, name: str, count: int, title: str, url: str
) -> None:
    parsed = _stories(outcomes, name)
    url = url if url.startswith("http") else corpus_url + url
    assert len(parsed.stories) == count
    assert any(s.title == title and s.url == url for s in parsed.stories)


def test_rss_2_fields(outcomes: dict[str, Outcome]) -> None:
    star_city = _stories(outcomes, "danmactough__node-feedparser/rss2sample.xml").stories[0]
    assert star_city.published_at == datetime(2003, 6, 3, 9, 39, 21, tzinfo=UTC)
    assert star_city.text.startswith("How do Americans get ready to work with Russians")
    (orf, *_) = _stories(outcomes, "codehollow__FeedReader/Rss10OrfAt.xml").stories
    assert orf.categories == ("Kultur",)


def test_atom_0_3_files_have_no_entries_and_say_so(outcomes: dict[str, Outcome]) -> None:
    # The corpus's two Atom 0.3 files are feed-level fixtures; tests/test_parse.py reads
    # an Atom 0.3 feed with entries.
    for name in ("encoding/bozo_http_i18n.xml", "encoding/no_content_type_default.xml"):
        assert outcomes[f"kurtmckee__feedparser/{name}"].error == "the feed has no entries"


@pytest.mark.parametrize(
    ("name", "title", "warning"),
    [
        (
            "miniflux__v2/parser/testdata/encoding_WINDOWS-1251.xml",
            "Цитата #17703",
            None,
        ),
        ("miniflux__v2/xml/testdata/koi8r.xml", "Первая новость", None),
        (
            "spacecowboy__Feeder/model/golem-de.xml",
            "Apple: Jony Ive übernimmt wieder Apples Produktdesign",
            None,
        ),
        ("feed-rs__feed-rs/rss0/rss_0.91_encoding_1.xml", "bash - Expansão de Parâmetros", None),
        (  # gzip bytes as served, windows-1251 inside
            "danmactough__node-feedparser/compressed.xml",
            "В Бузулуке главные стройплощадки – детсад и Ледовый дворец",
            "the body was gzip-compressed without saying so (Content-Encoding)",
        ),
        (  # windows-1252 bytes and no declaration
            "rbren__rss-parser/uolNoticias.rss",
            "Ibope: Bolsonaro perde de Haddad, Ciro e Alckmin em simulações de 2º turno",
            "no encoding declared; the bytes read as cp1252",
        ),
        (  # UTF-8 bytes declared ISO-8859-1
            "laminas__laminas-feed/laut.de-rdf.xml",
            "Michael Jackson: Video der letzten Probe veröffentlicht",
            "declared ISO-8859-1, but the bytes are UTF-8",
        ),
        ("simplepie__simplepie/feed-utf16le.xml", "Test feed title 1", None),
        ("simplepie__simplepie/feed-utf16be.xml", "Test feed title 1", None),
        (  # double-encoded UTF-8 as captured, repaired
            "codehollow__FeedReader/Rss20LeMonde.xml",
            "La « bulle » Macron résiste et inquiète ses adversaires",
            None,
        ),
        (  # double-encoded as captured, repaired, and the feed's section label dropped
            "codehollow__FeedReader/Rss20JapanToday.xml",
            "Publisher ordered to suspend publication of book on Nippon Kaigi",
            None,
        ),
    ],
)
def test_exact_titles_per_encoding(
    outcomes: dict[str, Outcome], name: str, title: str, warning: str | None
) -> None:
    parsed = _stories(outcomes, name)
    assert title in [s.title for s in parsed.stories]
    assert (
        warning in parsed.warnings
        if warning
        else not any("encod" in w or "declared" in w for w in parsed.warnings)
    )


def test_double_encoded_text_is_repaired_and_clean_text_left_alone(
    outcomes: dict[str, Outcome],
) -> None:
    lemonde = _stories(outcomes, "codehollow__FeedReader/Rss20LeMonde.xml").stories
    assert not any("Ã" in s.text or "â€" in s.text for s in lemonde)
    pet = _stories(outcomes, "feedjira__feedjira/pet_atom.xml").stories
    assert any("pièce de ré·sis·tance" in s.text for s in pet)


def test_not_well_formed_feeds_keep_what_was_recovered_with_a_warning(
    outcomes: dict[str, Outcome],
) -> None:
    parsed = _stories(outcomes, "danmactough__node-feedparser/saxerror.xml")
    assert parsed.stories[0].title == "Good Item"
    assert parsed.warnings[0].startswith("not well-formed XML (")


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("codehollow__FeedReader/Rss20DailyMail.xml", "the feed has no entries"),
        (
            "Ranchero-Software__NetNewsWire/ScriptingNews.json",
            "JSON, but not a JSON Feed (no 'version': 'https://jsonfeed.org/version/1.x')",
        ),
        (
            "NicolasLM__atoma/rss/broken-missing-title.xml",
            "no usable entries: skipped 1 of 1 entries (1 without an http(s) link)",
        ),
        (
            "rbren__rss-parser/unrecognized.rss",
            "not a readable feed (<unknown>:3:0: junk after document element)",
        ),
    ],
)
def test_clear_per_feed_errors(outcomes: dict[str, Outcome], name: str, error: str) -> None:
    assert outcomes[name].error == error


@pytest.mark.corpus("feeds", "opml", "seed", "eval/news_summ_dev.jsonl")
def test_the_repositorys_sample_is_copied_byte_for_byte() -> None:
    """tests/fixtures/corpus holds corpus files under their own paths (the summarization
    sample: some of the dev set's lines, unchanged and in order); examples/feeds holds
    CodeHollow's and NetNewsWire's captures."""
    copies = [p for p in SAMPLE.rglob("*") if p.is_file() and p.name != "SOURCES.md"]
    assert len(copies) > 20
    for copy in copies:
        relative = copy.relative_to(SAMPLE)
        if copy.suffix == ".jsonl":
            dev_set = (SHARED_DATA / "eval" / "news_summ_dev.jsonl").read_bytes().splitlines()
            lines = iter(dev_set)
            assert all(line in lines for line in copy.read_bytes().splitlines()), relative
        else:
            assert copy.read_bytes() == (SHARED_DATA / relative).read_bytes(), relative
    for demo, original in [
        ("indianexpress.xml", "codehollow__FeedReader/Rss20IndianExpress.xml"),
        ("japantimes.xml", "codehollow__FeedReader/Rss20JapanTimes.xml"),
        ("japantoday.xml", "codehollow__FeedReader/Rss20JapanToday.xml"),
        ("inessential.json", "Ranchero-Software__NetNewsWire/inessential.json"),
    ]:
        assert (REPO / "examples" / "feeds" / demo).read_bytes() == (CORPUS / original).read_bytes()
