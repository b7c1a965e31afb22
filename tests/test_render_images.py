"""The HTML part's lead images and each story's reading time: an image is referenced by its
address (never fetched), no wider than the column, its alt text the headline; none in the
plain-text part, none with ``[render].images = false``. A story whose text is its article's
shows how long that takes to read, in both parts."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import lxml.html
import pytest

from digest.config import load_settings
from digest.models import Cluster, Digest, DigestItem, RenderedDigest, Story, Summary
from digest.render import (
    IMAGE_WIDTH,
    RenderOptions,
    check_templates,
    make_environment,
    reading_minutes,
    render_digest,
)
from digest.render_settings import render_options
from tests.conftest import make_story, write_settings

UTC_ZONE = ZoneInfo("UTC")
PHOTO = "https://img.example.org/harbour/bridge.jpg?w=1200"


def _edition(*stories: Story, others: tuple[Story, ...] = ()) -> Digest:
    items = tuple(
        DigestItem(
            cluster=Cluster(cluster_id=f"c{n}", lead=story, others=others if n == 0 else ()),
            summary=Summary(cluster_id=f"c{n}", text=f"Summary {n}.", model_id="lead"),
        )
        for n, story in enumerate(stories)
    )
    moment = datetime(2024, 3, 1, 5, tzinfo=UTC)
    return Digest(edition_on=date(2024, 3, 1), generated_at=moment, items=items)


def _render(digest: Digest, *, images: bool = True) -> RenderedDigest:
    options = RenderOptions(images=images)
    return render_digest(digest, make_environment(), tz=UTC_ZONE, options=options)


def _images(rendered: RenderedDigest) -> list[lxml.html.HtmlElement]:
    return list(lxml.html.document_fromstring(rendered.html).iter("img"))


def test_a_lead_image_is_referenced_no_wider_than_the_column_with_the_headline_as_alt() -> None:
    story = make_story(1, title='Bridge "reopens" <today>', image_url=PHOTO)
    rendered = _render(_edition(story, make_story(2)))
    (image,) = _images(rendered)
    assert image.get("src") == PHOTO
    assert image.get("alt") == 'Bridge "reopens" <today>'
    assert image.get("width") == str(IMAGE_WIDTH) == "552"
    assert not image.get("height")  # a blocked image leaves its alt text, not an empty box
    style = image.get("style").replace(" ", "")
    assert "max-width:100%" in style and "height:auto" in style and "display:block" in style
    assert set(image.attrib) == {"src", "alt", "width", "style"}
    assert image.getparent().tag == "a" and image.getparent().get("href") == story.url
    assert PHOTO not in rendered.text and "bridge.jpg" not in rendered.text


def test_without_its_own_image_a_story_shows_another_outlets() -> None:
    other = make_story(9, source_name="Other", image_url="https://other.example/o.png")
    (image,) = _images(_render(_edition(make_story(1), others=(other,))))
    assert image.get("src") == "https://other.example/o.png"


def test_images_false_shows_none() -> None:
    rendered = _render(_edition(make_story(1, image_url=PHOTO)), images=False)
    assert _images(rendered) == [] and PHOTO not in rendered.html


def test_render_images_is_a_setting_on_by_default(tmp_path: Path) -> None:
    feeds = [{"url": "https://example.org/feed"}]
    assert render_options(load_settings(write_settings(tmp_path, feeds))).images is True
    off = write_settings(tmp_path, feeds, sections={"render": {"images": False}})
    assert render_options(load_settings(off)).images is False


@pytest.mark.parametrize(
    "image",
    [
        "javascript:alert(1)",
        "data:image/svg+xml,<svg onload=alert(1)>",
        "//evil.example/x.jpg",
        "https://img.example.org/" + "a" * 2100,
    ],
)
def test_an_image_address_that_could_run_anything_is_not_rendered(image: str) -> None:
    """Stories are normalised before they reach render; render checks again."""
    assert _images(_render(_edition(make_story(1, image_url=image)))) == []


# Reading time


def test_reading_time_for_article_text_in_both_parts() -> None:
    article = make_story(1, text=" ".join(["word"] * 461), text_source="article")
    teaser = make_story(2, text=" ".join(["word"] * 461))
    rendered = _render(_edition(article, teaser))
    tree = lxml.html.document_fromstring(rendered.html)
    metas = [p.text_content() for p in tree.xpath("//p[@class='meta']")]
    assert "· 3 min read" in metas[0] and "min read" not in metas[1]
    lines = rendered.text.splitlines()
    source_line = next(line for line in lines if line.strip().startswith("Example ·"))
    assert source_line.endswith("· 3 min read")
    assert rendered.text.count("min read") == 1


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("", 1),
        ("one word", 1),
        (" ".join(["w"] * 230), 1),
        (" ".join(["w"] * 231), 2),
        ("漢" * 500, 1),
        ("漢" * 1200, 3),  # Chinese: characters, ~500 a minute
        ("ひらがなカタカナ" * 100, 2),  # Japanese: 800 characters
        ("漢" * 500 + " " + " ".join(["w"] * 230), 2),  # mixed: both counted
    ],
)
def test_reading_minutes(text: str, minutes: int) -> None:
    assert reading_minutes(text) == minutes


def test_digest_check_tries_a_templates_image_and_reading_time(tmp_path: Path) -> None:
    """The sample edition `digest check` renders has both, so a template using them is
    checked where they are set, not only where they are None."""
    (tmp_path / "_story.html.j2").write_text(
        '<img src="{{ item.image.url }}" width="{{ item.image.width // 2 }}">'
        "{{ item.reading_minutes + 1 }} min"
    )
    assert check_templates(make_environment(tmp_path)) == []
    (tmp_path / "_story.html.j2").write_text("{{ item.image.height }}")
    (problem,) = check_templates(make_environment(tmp_path))
    assert "_story.html.j2, line 1" in problem and "height" in problem
