"""OPML in and out, on the real exports in shared/data/opml (some of them not valid XML).

Most cases read the repository's byte-for-byte copies of those files (tests/fixtures/corpus);
the ones marked ``corpus`` read the corpus beside the clone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.models import FeedSource
from digest.opml import read_opml, write_opml
from tests.conftest import SAMPLE, SHARED_DATA, corpus_files, in_corpus

OPML = SHARED_DATA / "opml"
SAMPLE_OPML = SAMPLE / "opml"
ALL_FILES = sorted(p for p in OPML.rglob("*") if p.is_file())


def _read(
    relative: str, root: Path = SAMPLE_OPML
) -> tuple[tuple[FeedSource, ...], tuple[str, ...]]:
    found = read_opml((root / relative).read_bytes(), relative)
    return found.feeds, found.problems


def _in_corpus(*values: object) -> object:
    """A parameter set whose file is only in the corpus (its first value, under opml/)."""
    return in_corpus(f"opml/{values[0]}", *values)


@pytest.mark.corpus("opml")
def test_the_shared_data_is_there() -> None:
    assert len(ALL_FILES) >= 30


@pytest.mark.parametrize(
    "path",
    [
        *corpus_files("opml"),
        *(
            pytest.param(p, id=f"sample/{p.relative_to(SAMPLE_OPML)}")
            for p in sorted(SAMPLE_OPML.rglob("*"))
            if p.is_file()
        ),
    ],
)
def test_every_file_gives_feeds_or_a_clear_problem(path: Path) -> None:
    found = read_opml(path.read_bytes(), str(path))
    assert found.feeds or found.problems
    if not found.feeds:
        assert any("no feeds found" in p for p in found.problems)
    assert all(f.url.startswith(("http://", "https://")) for f in found.feeds)
    assert len({f.url for f in found.feeds}) == len(found.feeds)
    if not found.is_well_formed:
        assert found.problems[0].startswith(("not valid XML", "declares XML entities"))


@pytest.mark.parametrize(
    ("relative", "feeds", "problems"),
    [
        ("newsboat__newsboat/example.opml", 7, 0),
        ("stringer-rss__stringer/support/files/subscriptions.xml", 7, 1),
        _in_corpus("kilimchoi__engineering-blogs/engineering_blogs.opml", 420, 2),
        _in_corpus(
            "Ranchero-Software__NetNewsWire/Modules/RSParser/Tests/RSParserTests/Resources/Subs.opml",
            206,
            1,
        ),
        _in_corpus("spacecowboy__Feeder/rssguard_1.opml", 30, 0),
        ("rometools__rome/opml_1.0_links.xml", 0, 41),
    ],
)
def test_exact_counts(relative: str, feeds: int, problems: int) -> None:
    root = SAMPLE_OPML if (SAMPLE_OPML / relative).is_file() else OPML
    found, trouble = _read(relative, root)
    assert (len(found), len(trouble)) == (feeds, problems), trouble


def test_names_and_categories_come_from_the_outlines() -> None:
    feeds, problems = _read("newsboat__newsboat/example.opml")
    by_url = {f.url: f for f in feeds}
    assert by_url["https://example.com/feed.xml"] == FeedSource(
        url="https://example.com/feed.xml", name="example.com website"
    )
    # The innermost folder is the category; a folder's displayed text wins over its title.
    assert by_url["https://blogs.example.com/~john/posts.rss"].category == "Blogs"
    assert by_url["https://blogs.example.com/~mike/.rss"].category == "friends"
    assert by_url["https://fred.example.com/writing/index.php?type=rss"].category == "eloquent"
    assert problems == ()


def test_feeds_without_titles_have_no_name() -> None:
    feeds, _ = _read("NicolasLM__atoma/broken-no-title.xml")
    assert [(f.url, f.name, f.category) for f in feeds] == [
        ("https://xkcd.com/rss.xml", None, None),
        ("http://antirez.com/rss", None, None),
        ("https://what-if.xkcd.com/feed.atom", None, "The Old Reader Picks"),
    ]


def test_each_unusable_outline_is_reported_with_its_line() -> None:
    _, problems = _read("stringer-rss__stringer/fixtures/feeds.opml")
    assert problems == ("line 26: outline 'Empty Group': no xmlUrl and no feeds inside; skipped",)
    feeds, problems = _read("newsboat__newsboat/piped.opml")
    assert [f.url for f in feeds] == ["https://example.com/feed.atom"]
    assert problems == (
        "line 8: outline 'Birdsite search': '|~/fetch_tweets.py' is not an http(s) URL",
    )
    feeds, problems = _read("feedbin__feedbin/subscriptions.xml")
    assert [(f.url, f.category) for f in feeds] == [("http://example.com/atom.xml", "Tag One")]
    assert "listed twice (first on line 8)" in problems[0]


def test_a_file_that_is_not_opml_says_so() -> None:
    feeds, problems = _read("stringer-rss__stringer/fixtures/invalid.opml")
    assert feeds == ()
    assert problems[0].startswith("not valid XML (syntax error at line 1, column 0)")
    _, problems = _read("newsboat__newsboat/body-element-missing.opml")
    assert "no <body> element: the file lists no outlines" in problems
    feeds, problems = _read("newsboat__newsboat/opml-element-missing.opml")
    assert len(feeds) == 2 and "the root element is <not-opml>, not <opml>" in problems


def test_invalid_xml_still_yields_every_feed_it_lists() -> None:
    # A bare "&" in a title: strict parsers give up at line 12.
    feeds, problems = _read("plenaryapp__awesome-rss-feeds/countries/with_category/Canada.opml")
    assert len(feeds) == 10 and {f.category for f in feeds} == {"Canada"}
    assert problems[0].startswith("not valid XML (not well-formed (invalid token) at line 12")
    assert (
        FeedSource(
            url="https://business.financialpost.com/feed/", name="Financial Post", category="Canada"
        )
        in feeds
    )
    assert FeedSource(url="https://globalnews.ca/feed/", category="Canada") in feeds  # text=""


@pytest.mark.corpus("opml/spacecowboy__Feeder/Programming.opml")
def test_a_broken_attribute_loses_only_itself() -> None:
    # Line 42 has raw quotes and markup inside a description attribute.
    feeds, _ = _read("spacecowboy__Feeder/Programming.opml", OPML)
    assert len(feeds) == 50
    assert FeedSource(url="https://m.signalvnoise.com/feed/", name="Signal v. Noise") in feeds
    assert (
        FeedSource(
            url="https://www.thirtythreeforty.net/posts/index.xml", name="Posts on &> /dev/null"
        )
        in feeds
    )


@pytest.mark.parametrize(
    "declaration",
    [
        '<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">',
        '<!ENTITY b SYSTEM "file:///etc/passwd">',
    ],
)
def test_entities_are_never_expanded(declaration: str) -> None:
    data = (
        f'<?xml version="1.0"?><!DOCTYPE opml [{declaration}]><opml version="2.0"><body>'
        '<outline text="&b;" xmlUrl="https://feeds.example.org/rss"/></body></opml>'
    ).encode()
    found = read_opml(data, "entities.opml")
    assert found.feeds == (FeedSource(url="https://feeds.example.org/rss", name="&b;"),)
    assert not found.is_well_formed
    assert found.problems == (
        "declares XML entities, which are refused; read what could be read, tag by tag: check the result",
    )


def test_a_latin1_export() -> None:
    feeds, _ = _read("NicolasLM__atoma/subscription-list.xml")  # ISO-8859-1
    assert [f.name for f in feeds] == ["CNET News.com", "washingtonpost.com - Politics"]


@pytest.mark.corpus("opml/spacecowboy__Feeder/Flym_auto_backup.opml")
def test_a_single_quoted_export() -> None:
    feeds, _ = _read("spacecowboy__Feeder/Flym_auto_backup.opml", OPML)
    assert {f.category for f in feeds} == {"black humor", "comics", "Tech", "Political humour"}


SOURCES = (
    FeedSource(url="https://a.example.org/rss", name='A & "B" <c>', category="Tech"),
    FeedSource(url="https://b.example.org/feed.json"),
    FeedSource(url="https://c.example.org/atom", name="Ç — ünïcode", category="Tech"),
    FeedSource(url="https://d.example.org/rss?x=1&y=2", name="D", category="News"),
)


def test_write_then_read_round_trips() -> None:
    data = write_opml(SOURCES, "My feeds")
    found = read_opml(data, "export.opml")
    assert found.problems == () and found.is_well_formed
    assert sorted(found.feeds, key=lambda f: f.url) == sorted(SOURCES, key=lambda f: f.url)


def test_written_opml_is_opml_2_with_one_folder_per_category() -> None:
    text = write_opml(SOURCES, "My feeds").decode("utf-8")
    assert text.startswith("<?xml version='1.0' encoding='utf-8'?>\n<opml version=\"2.0\">")
    assert "<title>My feeds</title>" in text
    assert text.count('<outline text="Tech" title="Tech">') == 1
    assert 'xmlUrl="https://d.example.org/rss?x=1&amp;y=2"' in text
    # OPML requires text: a feed without a name shows its URL, and reads back without one.
    assert 'text="https://b.example.org/feed.json"' in text


@pytest.mark.parametrize(
    ("relative", "root"),
    [
        ("stringer-rss__stringer/sample_data/subscriptions.xml", SAMPLE_OPML),
        _in_corpus("kilimchoi__engineering-blogs/engineering_blogs.opml", OPML),
    ],
)
def test_a_real_export_survives_write_and_read(relative: str, root: Path) -> None:
    feeds, _ = _read(relative, root)
    assert len(feeds) > 5
    again = read_opml(write_opml(feeds, "again"), "again").feeds
    assert sorted(again, key=lambda f: f.url) == sorted(feeds, key=lambda f: f.url)
