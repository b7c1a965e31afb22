from __future__ import annotations

import gzip
import tracemalloc
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from digest.errors import FeedError
from digest.models import FeedSource, FetchResult
from digest.normalise import html_to_text
from digest.parse import parse_feed, recent_stories
from digest.urls import canonical_url
from tests.conftest import FEEDS, SAMPLE

NOW = datetime(2024, 1, 1, 12, tzinfo=UTC)


def _result(name: str, url: str | None = None, content_type: str | None = None) -> FetchResult:
    source = FeedSource(url=url or str(FEEDS / name), name=None)
    return FetchResult(
        source=source, fetched_at=NOW, body=(FEEDS / name).read_bytes(), content_type=content_type
    )


def _from_bytes(body: bytes, url: str = "https://news.example.org/feed") -> FetchResult:
    return FetchResult(source=FeedSource(url=url), fetched_at=NOW, body=body)


def test_rss_entry_is_normalised() -> None:
    (story,) = parse_feed(_result("nasa.xml")).stories
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
    (story,) = parse_feed(_result("jsonfeed.json", content_type="application/feed+json")).stories
    assert story.title == "Announcing JSON Feed"
    assert story.url == "https://jsonfeed.org/2017/05/17/announcing_json_feed"
    assert story.published_at == datetime(2017, 5, 17, 15, 2, 12, tzinfo=UTC)
    assert story.source_name == "JSON Feed"
    assert story.text.splitlines()[1].startswith("So we developed JSON Feed")
    assert '<a href="http://cyber.harvard.edu/rss/rss.html"' in story.html


def test_entries_without_a_link_are_skipped_and_guid_permalinks_used() -> None:
    stories = parse_feed(_result("missing-link.xml")).stories
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
    (story,) = parse_feed(_from_bytes(body)).stories
    assert story.title == "Storm closes the harbour for a second day as winds reach 120…"


def test_feed_html_is_sanitised_and_titles_are_plain_text() -> None:
    body = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>
    <item><title>&lt;b&gt;Bold&lt;/b&gt; &amp;amp; &lt;script&gt;alert(1)&lt;/script&gt;news</title>
    <link>https://news.example.org/a?utm_source=rss&amp;id=7#top</link>
    <description>&lt;p onclick="x()"&gt;Hi &lt;a href="javascript:alert(1)"&gt;there&lt;/a&gt;&lt;/p&gt;&lt;script&gt;steal()&lt;/script&gt;</description></item>
    </channel></rss>"""
    (story,) = parse_feed(_from_bytes(body)).stories
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
    stories = parse_feed(_result("japantoday.xml")).stories
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


def test_a_story_on_an_ipv6_host_keeps_a_url_that_opens() -> None:
    body = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>
    <item><title>Local</title><link>http://[::1]:18082/story?utm_medium=rss</link></item>
    </channel></rss>"""
    (story,) = parse_feed(_from_bytes(body, url="http://[::1]:18082/feed")).stories
    assert story.url == "http://[::1]:18082/story"


def test_html_to_text_keeps_block_breaks_and_decodes_entities() -> None:
    assert html_to_text("<p>One &amp; two</p><p>Three<br>four</p>") == "One & two\nThree\nfour"
    # feedjira__feedjira/json_feed_with_escaped_uris.json: a caption, then a heading
    caption = (
        '<figure><img src="x.jpg"><figcaption>The US cover of the album, from 2002</figcaption>'
        "<h2>I Need to Post More About Music</h2>\n<p>Music is a large part of my life.</p>"
    )
    assert html_to_text(caption).splitlines() == [
        "The US cover of the album, from 2002",
        "I Need to Post More About Music",
        "Music is a large part of my life.",
    ]
    assert html_to_text("Intro text<p>A <b>bold</b> <a href='#'>link</a></p>") == (
        "Intro text\nA bold link"
    )


def test_max_age_drops_old_entries_unless_zero() -> None:
    stories = parse_feed(_result("nasa.xml")).stories
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
    (story,) = parse_feed(_from_bytes(body)).stories
    assert (story.title, story.url, story.author) == ("Fine", "https://news.example.org/ok", "Ann")


# Encodings: the bytes of the shared corpus (the repository's copies of a few files), with
# a link added where the fixture has none


@pytest.mark.parametrize(
    ("name", "count", "title", "warning"),
    [
        (  # RSS 0.91, ISO-8859-1 declared
            "codehollow__FeedReader/Rss091Stadtfeuerwehr.xml",
            15,
            "[17.08.2018 - 20:35 Uhr] Technische Hilfeleistung",
            None,
        ),
        ("miniflux__v2/xml/testdata/koi8r.xml", 2, "Первая новость", None),
        (
            "feed-rs__feed-rs/rss0/rss_0.91_encoding_1.xml",
            1,
            "bash - Expansão de Parâmetros",
            None,
        ),
        (  # gzip bytes, windows-1251 inside
            "danmactough__node-feedparser/compressed.xml",
            None,
            "В Бузулуке главные стройплощадки – детсад и Ледовый дворец",
            "the body was gzip-compressed without saying so (Content-Encoding)",
        ),
        (  # windows-1252 bytes and no declaration
            "rbren__rss-parser/uolNoticias.rss",
            None,
            "Ibope: Bolsonaro perde de Haddad, Ciro e Alckmin em simulações de 2º turno",
            "no encoding declared; the bytes read as cp1252",
        ),
        (  # RSS 1.0, UTF-8 bytes declared ISO-8859-1
            "laminas__laminas-feed/laut.de-rdf.xml",
            None,
            "Michael Jackson: Video der letzten Probe veröffentlicht",
            "declared ISO-8859-1, but the bytes are UTF-8",
        ),
        ("simplepie__simplepie/feed-utf16le.xml", None, "Test feed title 1", None),
        ("simplepie__simplepie/feed-utf16be.xml", None, "Test feed title 1", None),
    ],
)
def test_real_feeds_in_other_encodings_read_exactly(
    name: str, count: int | None, title: str, warning: str | None
) -> None:
    parsed = parse_feed(_from_bytes((SAMPLE / "feeds" / name).read_bytes()))
    assert count is None or len(parsed.stories) == count
    assert title in [s.title for s in parsed.stories]
    assert all("\ufffd" not in s.title for s in parsed.stories)
    assert (
        warning in parsed.warnings
        if warning
        else not any("encod" in w or "declared" in w for w in parsed.warnings)
    )


def _corpus_with_link(name: str) -> bytes:
    body = (SAMPLE / "feeds" / "kurtmckee__feedparser" / name).read_bytes()
    body = body.replace(b"<item>", b"<item><link>https://news.example.org/a</link>", 1)
    return body.replace(b"<entry>", b'<entry><link href="https://news.example.org/a"/>', 1)


@pytest.mark.parametrize(
    ("name", "title"),
    [
        ("illformed/chardet/gb2312.xml", "不归移民漫画系列：专业工作"),
        ("illformed/chardet/shiftjis.xml", "DrecomRSSに記事投稿が反映されない…"),
    ],
)
def test_undeclared_cjk_bytes_are_detected(name: str, title: str) -> None:
    parsed = parse_feed(_from_bytes(_corpus_with_link(name)))
    assert parsed.stories[0].title == title
    assert parsed.warnings[0].startswith("no encoding declared; the bytes read as ")


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("illformed/chardet/windows1255.xml", "האם תדפיס נייר של אתר אינטרנט"),
        ("illformed/chardet/tis620.xml", "สำนักงานส่งเสริมอุตสาหกรรมซอฟต์แวร์แห่งชาติ"),
    ],
)
def test_undeclared_hebrew_and_thai_bytes_are_detected(name: str, text: str) -> None:
    (story,) = parse_feed(_from_bytes(_corpus_with_link(name))).stories
    assert story.text.startswith(text)


def _rss(title: bytes, declaration: bytes = b'<?xml version="1.0"?>') -> bytes:
    return (
        declaration
        + b'<rss version="2.0"><channel><title>T</title><item><title>'
        + title
        + b"</title><link>https://news.example.org/a</link></item></channel></rss>"
    )


def test_utf8_with_a_stray_windows_1252_byte_stays_utf8() -> None:
    title = "Zürich: Café “Grün” öffnet wieder".encode() + b" \x96 Fr\xfchst\xfcck"
    (story,) = parse_feed(_from_bytes(_rss(title))).stories
    assert story.title == "Zürich: Café “Grün” öffnet wieder – Frühstück"


def test_declaration_wins_over_a_wrong_http_charset_that_cannot_decode() -> None:
    body = _rss(
        "Ещё одна новость".encode("cp1251"), b'<?xml version="1.0" encoding="windows-1251"?>'
    )
    result = replace(_from_bytes(body), content_type="application/rss+xml; charset=utf-8")
    (story,) = parse_feed(result).stories
    assert story.title == "Ещё одна новость"


def test_iso_8859_1_label_reads_windows_1252_quotes_and_c1_controls_are_repaired() -> None:
    declared = b'<?xml version="1.0" encoding="iso-8859-1"?>'
    (story,) = parse_feed(_from_bytes(_rss(b"\x93Caf\xe9\x94 \x96 na\xefve", declared))).stories
    assert story.title == "“Café” – naïve"
    # U+0092: a right single quote in windows-1252, read as Latin-1 and re-encoded
    (story,) = parse_feed(_from_bytes(_rss("don\u0092t".encode()))).stories
    assert story.title == "don’t"


def test_correct_text_that_looks_odd_is_left_alone() -> None:
    for title in ("SÃO PAULO: Ação «já»", "pièce de ré·sis·tance", "Ñandú ±5 °C ¿qué?"):
        (story,) = parse_feed(_from_bytes(_rss(title.encode()))).stories
        assert story.title == title


def test_utf16_and_utf32_with_and_without_bom() -> None:
    text = _rss("Grüße aus Köln".encode()).decode()
    for encoding in ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-be"):
        (story,) = parse_feed(_from_bytes(text.encode(encoding))).stories
        assert story.title == "Grüße aus Köln", encoding


# Not well-formed, compressed, hostile


def test_a_not_well_formed_feed_keeps_its_entries_and_warns() -> None:
    body = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>
    <item><title>One &nope; thing</title><link>https://news.example.org/1</link></item>
    <item><title>Two</title><link>https://news.example.org/2</link></item>
    </channel>"""
    parsed = parse_feed(_from_bytes(body))
    assert [s.title for s in parsed.stories] == ["One &nope; thing", "Two"]
    assert parsed.warnings[0].startswith("not well-formed XML (")


def test_gzip_body_without_content_encoding_is_unwrapped_and_capped() -> None:
    parsed = parse_feed(_from_bytes(gzip.compress(_rss(b"Zipped"))))
    assert [s.title for s in parsed.stories] == ["Zipped"]
    bomb = gzip.compress(b"<rss>" + b" " * 60_000_000)
    with pytest.raises(FeedError, match="inflates past"):
        parse_feed(_from_bytes(bomb))


def _billion_laughs(depth: int = 10) -> bytes:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, depth)
    ]
    doctype = "<!DOCTYPE rss [\n" + "\n".join(entities) + "\n]>"
    return _rss(f"&lol{depth - 1};".encode(), f'<?xml version="1.0"?>\n{doctype}'.encode())


def _quadratic_blowup(size: int = 20_000, refs: int = 5_000) -> bytes:
    doctype = f'<!DOCTYPE rss [\n<!ENTITY a "{"x" * size}">\n]>'
    return _rss(b"&a;" * refs, f'<?xml version="1.0"?>\n{doctype}'.encode())


@pytest.mark.parametrize(
    "body", [_billion_laughs(), _quadratic_blowup()], ids=["laughs", "quadratic"]
)
def test_entity_expansion_stays_bounded(body: bytes) -> None:
    # Unguarded, feedparser's lenient parser expands the quadratic case to 100 MB of title.
    tracemalloc.start()
    try:
        (story,) = parse_feed(_from_bytes(body)).stories
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * len(body) + 10_000_000
    assert len(story.title) <= len(body)
    assert "lollollol" not in story.title and "x" * 1000 not in story.title


def test_deeply_nested_json_is_an_error_not_a_crash() -> None:
    body = b'{"version": "https://jsonfeed.org/version/1.1", "items": ' + b"[" * 100_000
    with pytest.raises(FeedError, match="not valid JSON"):
        parse_feed(_from_bytes(body))


# Links, bodies, categories


def test_links_resolve_against_xml_base_then_the_feed_url() -> None:
    body = b"""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>T</title>
    <link href="https://site.example.org/blog/"/>
    <entry xml:base="https://cdn.example.org/posts/"><id>1</id><title>Based</title><link href="one"/>
      <content type="html">&lt;a href="two"&gt;x&lt;/a&gt;&lt;img src="/i.png"&gt;</content></entry>
    <entry><id>2</id><title>Feed URL</title><link href="three?utm_source=rss#top"/>
      <summary type="text">5 &lt; 6 &amp; "quoted"</summary></entry>
    </feed>"""
    based, plain = parse_feed(_from_bytes(body, url="https://news.example.org/x/feed")).stories
    assert based.url == "https://cdn.example.org/posts/one"
    assert '<a href="https://cdn.example.org/posts/two"' in based.html
    assert '<img src="https://cdn.example.org/i.png">' in based.html
    assert plain.url == "https://news.example.org/x/three"
    assert plain.text == '5 < 6 & "quoted"'


def test_a_local_feed_file_resolves_against_its_site_link() -> None:
    (story,) = parse_feed(_result("relative.atom")).stories
    assert story.url == "https://example.com/blog/2003/12/13/atom03"


def test_categories_author_and_times() -> None:
    body = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>
    <item><title>A</title><link>https://news.example.org/a</link><guid>urn:a</guid>
    <category>World</category><category>Europe &amp; Asia</category><category>World</category>
    <author>desk@example.org (News Desk)</author>
    <pubDate>Tue, 02 Jan 2024 10:00:00 +0200</pubDate></item></channel></rss>"""
    (story,) = parse_feed(_from_bytes(body)).stories
    assert story.categories == ("World", "Europe & Asia")
    assert story.author == "News Desk"
    assert story.published_at == datetime(2024, 1, 2, 8, tzinfo=UTC)
    json_body = b"""{"version": "https://jsonfeed.org/version/1.1", "items": [
      {"id": "1", "url": "https://news.example.org/j", "content_text": "No title here, only text",
       "tags": ["Science", 5, "Space"], "date_modified": "2024-01-02T10:00:00+02:00"}]}"""
    (story,) = parse_feed(_from_bytes(json_body)).stories
    assert (story.title, story.categories) == ("No title here, only text", ("Science", "Space"))
    assert story.published_at == datetime(2024, 1, 2, 8, tzinfo=UTC)


def test_undated_entries_keep_no_date_and_say_when_first_seen() -> None:
    # issue 15: never a made-up publication date (tests/test_true_dates.py: the edition)
    (story,) = parse_feed(_from_bytes(_rss(b"Undated"))).stories
    assert story.published_at is None and story.first_seen_at == NOW


def test_atom_0_3_feed() -> None:
    body = b"""<?xml version="1.0" encoding="utf-8"?>
    <feed version="0.3" xmlns="http://purl.org/atom/ns#"><title>Old Atom</title>
    <link rel="alternate" type="text/html" href="https://old.example.org/"/>
    <entry><title>Still here</title><link rel="alternate" type="text/html" href="/2004/still"/>
    <id>tag:old.example.org,2004:1</id><issued>2004-05-01T10:00:00+02:00</issued>
    <modified>2004-05-02T10:00:00Z</modified><summary>Atom 0.3 lives on.</summary></entry></feed>"""
    (story,) = parse_feed(_from_bytes(body)).stories
    assert (story.title, story.url) == ("Still here", "https://news.example.org/2004/still")
    assert story.published_at == datetime(2004, 5, 1, 8, tzinfo=UTC)
    assert (story.source_name, story.text) == ("Old Atom", "Atom 0.3 lives on.")


def test_a_section_label_the_feed_puts_before_its_headlines_is_dropped() -> None:
    items = "".join(
        f"<item><title>{title}</title><link>https://news.example.org/{n}</link></item>"
        for n, title in enumerate(
            [
                "World \u203a Five dead in airport shooting",
                "Business \u203a Toyota defends its Mexico plant",
                "World \u203a Russia scales back in Syria",
                "Tech \u00bb Apple shows a new phone",
            ]
        )
    )
    body = f'<rss version="2.0"><channel><title>T</title>{items}</channel></rss>'.encode()
    titles = [s.title for s in parse_feed(_from_bytes(body)).stories]
    assert titles == [
        "Five dead in airport shooting",
        "Toyota defends its Mexico plant",
        "Russia scales back in Syria",
        "Apple shows a new phone",
    ]


def test_a_few_titles_with_a_bar_keep_their_words() -> None:
    titles = ["Apple | Cook speaks", "Markets rise", "Rain tomorrow", "Vote count | Live", "Snow"]
    items = "".join(
        f"<item><title>{t}</title><link>https://news.example.org/{n}</link></item>"
        for n, t in enumerate(titles)
    )
    body = f'<rss version="2.0"><channel><title>T</title>{items}</channel></rss>'.encode()
    assert [s.title for s in parse_feed(_from_bytes(body)).stories] == titles


def test_a_huge_title_or_author_is_clipped_and_a_huge_link_refused() -> None:
    # Under the feed's size cap, one entry can still carry a 60,000-character title.
    title, author = "word " * 12_000, "A" * 5_000
    body = f"""<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>
<item><title>{title}</title><link>https://news.example.org/1</link>
<author>{author}</author><description>Text.</description></item>
<item><title>Fine</title><link>https://news.example.org/{"x" * 3000}</link></item>
</channel></rss>""".encode()
    (story,) = parse_feed(_from_bytes(body)).stories
    assert len(story.title) <= 500 and story.title.endswith("word…")
    assert story.author is not None and len(story.author) <= 200
