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
        b'<rss xmlns:media="http://search.yahoo.com/mrss/"><channel><item><title>x</title>'
        b"<media:thumbnail>https://example.org/t.jpg</media:thumbnail></item></channel></rss>",
        b'<rss xmlns:media="http://search.yahoo.com/mrss/"><channel><item><title>x</title>'
        b'<media:content url="https://example.org/i.jpg"><media:title>y</media:title>'
        b"</media:content></item></channel></rss>",
    ],
    ids=[
        "entity",
        "undefined-entity",
        "not-well-formed",
        "atom-0.3",
        "unmapped-element",
        "thumbnail-text",
        "title-in-media",
    ],
)
def test_what_the_fast_path_cannot_read_exactly_goes_to_feedparser(body: bytes) -> None:
    assert not _is_fast(body, "https://example.org/feed")


_MEDIA_RSS = """<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel><title>T</title>
<item><title>Group</title><link>https://example.org/1</link><media:group>
<media:content url="https://img.example.org/small.jpg" medium="image" width="300"/>
<media:content url="https://img.example.org/large.jpg" type="IMAGE/JPEG" width="1200">
<media:thumbnail url="https://img.example.org/thumb.jpg"/></media:content>
<media:content url="https://img.example.org/clip.mp4" medium="video" width="1920"/>
</media:group></item>
<item><title>Thumbnail</title><link>https://example.org/2</link>
<media:content url="http://1.gravatar.com/avatar/abc?s=96&amp;d=identicon" medium="image"/>
<media:thumbnail url="https://img.example.org/icon.png" width="30"/>
<media:thumbnail url="https://img.example.org/t.jpg?w=640&amp;h=360"/></item>
<item><title>Enclosure</title><link>https://example.org/3</link>
<enclosure url="https://cdn.example.org/episode.mp3" type="audio/mpeg" length="1"/>
<enclosure url="/images/3.png" type="image/png" length="1"/></item>
<item><title>Podcast</title><link>https://example.org/4</link>
<enclosure url="https://cdn.example.org/episode.mp3" type="audio/mpeg" length="1"/></item>
</channel></rss>"""
_MEDIA_ATOM = """<feed xmlns="http://www.w3.org/2005/Atom"><title>A</title>
<entry><title>X</title><id>tag:x</id><link href="https://example.org/x"/>
<link rel="enclosure" type="audio/ogg" href="https://example.org/x.ogg"/>
<link rel="enclosure" type="image/webp" href="pictures/x.webp"/></entry></feed>"""


@pytest.mark.parametrize(
    ("body", "images"),
    [
        (
            _MEDIA_RSS,
            [
                "https://img.example.org/large.jpg",
                "https://img.example.org/t.jpg?w=640&h=360",
                "https://example.org/images/3.png",
                None,
            ],
        ),
        (_MEDIA_ATOM, ["https://example.org/pictures/x.webp"]),
    ],
    ids=["media-rss", "atom-enclosure"],
)
def test_both_paths_read_the_same_lead_image(body: str, images: list[str | None]) -> None:
    """The widest image media:content (in a group too), else the widest thumbnail that is no
    icon or avatar, else an image enclosure, made absolute against the feed's URL."""
    data = body.encode("utf-8")
    assert _is_fast(data, "https://example.org/feed")
    fast = _parse(data, "https://example.org/feed", fast=True)
    assert fast == _parse(data, "https://example.org/feed", fast=False)
    assert isinstance(fast, ParsedFeed)
    assert [s.image_url for s in fast.stories] == images


# Real feeds that name their images with media:content, media:thumbnail or an enclosure.
_IMAGE_FEEDS = {
    "codehollow__FeedReader/Rss20LeMonde.xml": "http://s1.lemde.fr/image/2017/01/07/644x322/",
    "codehollow__FeedReader/Rss20IndianExpress.xml": "http://images.indianexpress.com/2016/12/",
    "feedjira__feedjira/TechCrunch.xml": "http://tctechcrunch2011.files.wordpress.com/2011/11/",
    "feed-rs__feed-rs/atom/atom_mediarss_youtube_1.xml": "https://i1.ytimg.com/vi/0A1ouV7iD8o/",
    "feed-rs__feed-rs/rss2/rss_2.0_cloudflare.xml": "https://blog.cloudflare.com/content/images/",
    "spacecowboy__Feeder/model/rss_morningpaper.xml": "http://adriancolyer.files.wordpress.com/",
}


@pytest.mark.corpus("feeds")
@pytest.mark.parametrize(("name", "prefix"), _IMAGE_FEEDS.items(), ids=list(_IMAGE_FEEDS))
def test_real_feeds_give_their_lead_images_on_both_paths(name: str, prefix: str) -> None:
    body = (CORPUS / name).read_bytes()
    url = "https://feeds.example.org/feed"
    slow = _parse(body, url, fast=False)
    assert isinstance(slow, ParsedFeed)
    assert slow.stories[0].image_url and slow.stories[0].image_url.startswith(prefix)
    assert all("gravatar.com/avatar" not in (s.image_url or "") for s in slow.stories)
    if _is_fast(body, url):
        assert _parse(body, url, fast=True) == slow
