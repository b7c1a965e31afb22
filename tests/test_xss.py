"""An XSS corpus through the render: hostile feed titles, summaries, source and section names,
links and error messages. The rendered HTML is parsed (lxml's HTML parser, as a browser
would build the tree) and must hold nothing active: only the template's own elements, no
event handler, no script-capable URL, no feed text inside a style."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit
from xml.sax.saxutils import escape as xml_escape
from zoneinfo import ZoneInfo

import lxml.html
import pytest

from digest.models import (
    Cluster,
    Digest,
    DigestItem,
    FeedSource,
    FetchResult,
    RenderedDigest,
    Summary,
)
from digest.parse import parse_feed
from digest.render import RenderOptions, make_environment, render_digest
from tests.hostile import HOSTILE_TEXT, hostile_digest

# What the built-in templates use; anything else came from a feed.
TEMPLATE_TAGS = {
    "html", "head", "meta", "title", "style", "body", "div", "table", "tbody", "tr", "td",
    "h1", "h2", "p", "ul", "li", "a", "span",
}  # fmt: skip
LINK_SCHEMES = {"http", "https", "mailto"}


@pytest.fixture(scope="module")
def rendered() -> RenderedDigest:
    options = RenderOptions(
        title="<script>alert('title')</script>",
        archive_url="https://news.example/{date}",
        unsubscribe_url="javascript:alert('unsubscribe')",
    )
    return render_digest(hostile_digest(), make_environment(), tz=ZoneInfo("UTC"), options=options)


@pytest.fixture(scope="module")
def tree(rendered: RenderedDigest) -> lxml.html.HtmlElement:
    return lxml.html.document_fromstring(rendered.html)


def test_only_the_templates_own_elements_exist(tree: lxml.html.HtmlElement) -> None:
    tags = {element.tag for element in tree.iter() if isinstance(element.tag, str)}
    assert tags <= TEMPLATE_TAGS, tags - TEMPLATE_TAGS
    assert len(tree.xpath("//style")) == 1 and len(tree.xpath("//meta")) == 4


def test_no_event_handler_attribute(tree: lxml.html.HtmlElement) -> None:
    for element in tree.iter():
        if isinstance(element.tag, str):
            assert not [name for name in element.attrib if name.lower().startswith("on")]


def test_every_link_can_only_open_a_page(tree: lxml.html.HtmlElement) -> None:
    hrefs = [a.get("href") for a in tree.iter("a")]
    assert hrefs and all(hrefs)
    for href in hrefs:
        if not href.startswith("#"):
            assert urlsplit(href).scheme.lower() in LINK_SCHEMES, href
    assert not [e for e in tree.iter() if isinstance(e.tag, str) and e.get("src")]


def test_no_feed_text_reaches_a_style(tree: lxml.html.HtmlElement) -> None:
    styles = [e.get("style") for e in tree.iter() if isinstance(e.tag, str) and e.get("style")]
    styles.append(tree.xpath("//style")[0].text)
    for style in styles:
        lowered = style.lower()
        for marker in ("expression(", "javascript", "url(", "behavior", "binding", "alert"):
            assert marker not in lowered, style


def test_hostile_text_is_shown_as_text_in_its_own_element(tree: lxml.html.HtmlElement) -> None:
    # The HTML parser reads a CR LF in text as LF, as a browser does.
    expected = [text.replace("\r\n", "\n") for text in HOSTILE_TEXT]
    assert [h.text_content() for h in tree.iter("h2")] == expected
    assert tree.xpath("//h1")[0].text_content() == "<script>alert('title')</script>"
    summaries = tree.xpath("//p[@class='summary']")
    assert [p.text_content() for p in summaries] == [f"Summary: {t}" for t in expected]


def test_the_subject_is_one_header_line(rendered: RenderedDigest) -> None:
    assert "\r" not in rendered.subject and "\n" not in rendered.subject
    assert "49" not in rendered.subject  # feed text is never run as a template


# A feed whose image addresses are hostile: through parsing and render, nothing executable.
_HOSTILE_IMAGES = (
    'https://img.example/a.jpg"><script>alert(1)</script>',
    "https://img.example/b.jpg' onerror='alert(1)",
    "javascript:alert(1)",
    " JaVaScRiPt:alert(1)",
    "data:image/svg+xml,<svg onload=alert(1)>",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    'https://img.example/c.jpg" style="width:expression(alert(1))',
)


def _hostile_image_feed() -> bytes:
    items = "".join(
        f"<item><title>Story {n}</title><link>https://news.example/{n}</link>"
        f'<media:content url="{xml_escape(url, {chr(34): "&quot;"})}" medium="image"/></item>'
        for n, url in enumerate(_HOSTILE_IMAGES)
    )
    return (
        '<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel>'
        f"<title>Hostile</title>{items}</channel></rss>"
    ).encode()


def test_hostile_image_addresses_from_a_feed_reach_the_html_inert() -> None:
    source = FeedSource(url="https://news.example/feed")
    moment = datetime(2024, 3, 1, 4, tzinfo=UTC)
    result = FetchResult(source=source, fetched_at=moment, body=_hostile_image_feed())
    stories = parse_feed(result).stories
    items = tuple(
        DigestItem(
            cluster=Cluster(cluster_id=s.story_id, lead=s),
            summary=Summary(cluster_id=s.story_id, text="Summary.", model_id="lead"),
        )
        for s in stories
    )
    digest = Digest(edition_on=moment.date(), generated_at=moment, items=items)
    options = RenderOptions()
    html = render_digest(digest, make_environment(), tz=ZoneInfo("UTC"), options=options).html
    tree = lxml.html.document_fromstring(html)
    images = list(tree.iter("img"))
    assert len(images) == 3  # the three https addresses, percent-encoded; no other scheme
    tags = {element.tag for element in tree.iter() if isinstance(element.tag, str)}
    assert tags <= TEMPLATE_TAGS | {"img"}, tags - TEMPLATE_TAGS
    for image in images:
        assert set(image.attrib) == {"src", "alt", "width", "style"}
        assert urlsplit(image.get("src")).scheme == "https"
        assert not {'"', "'", "<", ">", " "} & set(image.get("src"))
        assert "expression" not in image.get("style") and "alert" not in image.get("style")
    assert not tree.xpath("//script") and "javascript:" not in html.lower()
    assert "data:" not in html
