"""The lxml fast path for RSS/Atom against the feedparser path, over the whole corpus.

Wherever the fast path accepts a document, both paths must give the same stories (every
field) and the same warnings, for a feed fetched over HTTP and for a local file (whose
links resolve against the feed's own site link). The repository's own feed fixtures are
compared as well, so a clone without the corpus still checks both paths.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.decode import xml_text
from digest.errors import FeedError
from digest.feeds_xml_fast import read_xml_fast
from digest.models import FeedSource, FetchResult, ParsedFeed
from digest.parse import _parse_with
from tests.conftest import FEEDS, FIXTURES, SAMPLE, SHARED_DATA, corpus_files

CORPUS = SHARED_DATA / "feeds"
FILES = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix != ".json")
FIXTURE_FILES = sorted(
    p
    for root in (FEEDS, SAMPLE / "feeds")
    for p in root.rglob("*")
    if p.is_file() and p.suffix not in (".json", ".md")
)
NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)


def _parse(body: bytes, url: str, *, fast: bool) -> ParsedFeed | str:
    result = FetchResult(source=FeedSource(url=url), fetched_at=NOW, body=body)
    try:
        return _parse_with(result, fast=fast)
    except FeedError as exc:
        return exc.message


def _is_fast(body: bytes, url: str) -> bool:
    return read_xml_fast(xml_text(body, None, []), url) is not None


@pytest.mark.parametrize(
    "path",
    [
        *corpus_files("feeds", keep=lambda p: p.suffix != ".json"),
        *(pytest.param(p, id=f"fixtures/{p.relative_to(FIXTURES)}") for p in FIXTURE_FILES),
    ],
)
def test_fast_path_gives_what_feedparser_gives(path: Path) -> None:
    body = path.read_bytes()
    for url in ("https://feeds.example.org/feed", str(path)):
        if _is_fast(body, url):
            assert _parse(body, url, fast=True) == _parse(body, url, fast=False)


@pytest.mark.corpus("feeds")
def test_half_the_corpus_takes_the_fast_path() -> None:
    fast = [p for p in FILES if _is_fast(p.read_bytes(), "https://feeds.example.org/feed")]
    assert len(fast) >= len(FILES) // 2  # 108 of 203 when written


_ATOM = """<feed xmlns="http://www.w3.org/2005/Atom"><title type="html">A &amp;amp; B</title>
<link href="https://example.org/"/><entry><title>X</title><id>/posts/1</id>
<updated>2024-03-01T10:00:00.5+02:00</updated><author><name> Ann </name><email>a@b.org</email>
</author><category term="t1" label="Label"/><category term="t2"/>
<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p class="A" TYPE="Text/X">
1 &lt; 2<br/>cafÃ©</p></div></content></entry>
<entry><title>Y</title><link rel="alternate" href="https://example.org/y"/><id>tag:y</id>
<published>Sat, 02 Mar 2024 10:00:00 EST</published><summary>a &lt;b&gt;
c</summary></entry></feed>"""
_RSS = """<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"
xmlns:itunes="http://www.itunes.com/DTDs/PodCast-1.0.dtd"><channel><title>T</title>
<item><title>One</title><link>https://example.org/1?a=1&amp;amp;b=2</link>
<author>joe@example.org (Joe Bloggs)</author><pubDate>Fri, 01 Mar 2024 10:00:00 +0100</pubDate>
<category domain="d">C</category><dc:subject>C</dc:subject><dc:subject>D</dc:subject>
<description>&lt;p&gt;Hellos&lt;/p&gt;</description></item>
<item><title>Two</title><guid>https://example.org/2</guid><itunes:author>Ann</itunes:author>
<dc:date>2024-03-01</dc:date><description>d</description><content:encoded
xmlns:content="http://purl.org/rss/1.0/modules/content/">&lt;b&gt;full&lt;/b&gt;</content:encoded>
</item></channel></rss>"""


@pytest.mark.parametrize("body", [_ATOM, _RSS], ids=["atom", "rss"])
def test_each_mapped_field_matches_feedparser(body: str) -> None:
    data = body.encode("utf-8")
    assert _is_fast(data, "https://example.org/feed")
    fast = _parse(data, "https://example.org/feed", fast=True)
    assert fast == _parse(data, "https://example.org/feed", fast=False)
    assert isinstance(fast, ParsedFeed) and len(fast.stories) == 2


@pytest.mark.parametrize(
    "body",
    [
        b'<!DOCTYPE rss [<!ENTITY a "aaaa">]><rss><channel><item><title>&a;</title></item>'
        b"</channel></rss>",
        b"<rss><channel><item><title>&nbsp;</title></item></channel></rss>",
        b"<rss><channel><item><title>x</title></channel></rss>",
        b'<feed xmlns="http://purl.org/atom/ns#"><entry><title>x</title></entry></feed>',
        b"<rss><channel><item><title>x</title><media:title xmlns:media="
        b'"http://search.yahoo.com/mrss/">y</media:title></item></channel></rss>',
    ],
    ids=["entity", "undefined-entity", "not-well-formed", "atom-0.3", "unmapped-element"],
)
def test_what_the_fast_path_cannot_read_exactly_goes_to_feedparser(body: bytes) -> None:
    assert not _is_fast(body, "https://example.org/feed")
