from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digest.errors import TemplateError
from digest.models import Cluster, Digest, DigestItem, FeedFailure, Story, Summary
from digest.render import bundled_template_dir, check_templates, make_environment, render_digest
from tests.conftest import REPO

GOLDEN = Path(__file__).parent / "golden"
ISTANBUL = ZoneInfo("Europe/Istanbul")
# Read at import: the autouse clean_environ fixture clears DIGEST_* before each test.
UPDATE_GOLDEN = os.environ.get("DIGEST_UPDATE_GOLDEN") == "1"


def _story(n: int, *, title: str, source: str, category: str | None = "World") -> Story:
    return Story(
        story_id=f"sha256:{n}",
        feed_url=f"https://{source.lower()}.example/feed",
        source_name=source,
        category=category,
        url=f"https://{source.lower()}.example/story/{n}",
        title=title,
        published_at=datetime(2024, 3, 1, 5, 30, tzinfo=UTC),
        text="",
    )


def _digest(title: str = "Airport gunman kills five in Fort Lauderdale") -> Digest:
    shooting = Cluster(
        cluster_id="sha256:1",
        lead=_story(1, title=title, source="Reuters"),
        others=(
            _story(2, title="Florida airport shooting", source="BBC"),
            _story(3, title="Five dead at airport", source="AP"),
        ),
    )
    tech = Cluster(
        cluster_id="sha256:4",
        lead=_story(4, title="A new JSON Feed version", source="Blog", category="Tech"),
    )
    items = (
        DigestItem(
            cluster=shooting,
            summary=Summary(
                cluster_id="sha256:1",
                text="A gunman opened fire in the baggage claim area. Five people were killed.",
                model_id="lead",
            ),
        ),
        DigestItem(
            cluster=tech,
            summary=Summary(
                cluster_id="sha256:4",
                text="Version 1.1 adds authors & languages.",
                model_id="lead",
                is_from_full_text=True,
            ),
        ),
    )
    failure = FeedFailure(
        feed_url="https://broken.example/rss",
        name="Broken Feed",
        error="HTTP 500 Internal Server Error",
    )
    return Digest(
        edition_on=date(2024, 3, 1),
        generated_at=datetime(2024, 3, 1, 4, 0, tzinfo=UTC),
        items=items,
        failed_feeds=(failure,),
    )


def _check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.write_text(actual, encoding="utf-8")
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"{name} differs; rerun with DIGEST_UPDATE_GOLDEN=1 if intended"


def test_rendered_digest_matches_the_golden_files() -> None:
    rendered = render_digest(_digest(), make_environment(), title="Morning Digest", tz=ISTANBUL)
    assert (
        rendered.subject
        == "Morning Digest, Friday, 1 March 2024: Airport gunman kills five in Fort Lauderdale"
    )
    _check_golden("digest.html", rendered.html)
    _check_golden("digest.txt", rendered.text)


def test_html_is_email_ready() -> None:
    html = render_digest(_digest(), make_environment(), title="Morning Digest", tz=ISTANBUL).html
    assert 'style="' in html  # CSS inlined onto the elements
    assert '<meta name="color-scheme" content="light dark">' in html
    assert "also in" in html and ">BBC</a>" in html and ">AP</a>" in html
    assert "1 Mar 2024, 08:30 +03" in html  # published time in the readers' timezone
    assert "summarised from the full article" in html
    assert "Broken Feed: HTTP 500" in html
    assert html.index(">World<") < html.index(">Tech<")


def test_feed_text_cannot_break_out_of_its_element() -> None:
    hostile = '</a><script>alert(1)</script><img src=x onerror="steal()">'
    html = render_digest(_digest(title=hostile), make_environment(), title="D", tz=ISTANBUL).html
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;" in html


def test_empty_edition_says_so_honestly() -> None:
    empty = Digest(
        edition_on=date(2024, 3, 1), generated_at=datetime(2024, 3, 1, tzinfo=UTC), items=()
    )
    rendered = render_digest(empty, make_environment(), title="D", tz=ISTANBUL)
    assert "Nothing new today" in rendered.html and "Nothing new today" in rendered.text
    assert rendered.subject == "D, Friday, 1 March 2024: nothing new today"


def test_user_template_can_extend_the_built_in_one(tmp_path: Path) -> None:
    (tmp_path / "digest.html.j2").write_text(
        '{% extends "default:digest.html.j2" %}{% block masthead %}<tr><td>MY OWN MASTHEAD</td></tr>{% endblock %}'
    )
    html = render_digest(_digest(), make_environment(tmp_path), title="D", tz=ISTANBUL).html
    assert "MY OWN MASTHEAD" in html
    assert "Airport gunman kills five" in html


def test_broken_or_missing_user_templates_name_the_template_line_and_folders(
    tmp_path: Path,
) -> None:
    (tmp_path / "_story.html.j2").write_text("line one\n{% if %}\n")
    with pytest.raises(TemplateError, match=r"_story.html.j2, line 2"):
        render_digest(_digest(), make_environment(tmp_path), title="D", tz=ISTANBUL)
    (tmp_path / "_story.html.j2").write_text('{% include "_nope.html.j2" %}')
    with pytest.raises(TemplateError) as caught:
        render_digest(_digest(), make_environment(tmp_path), title="D", tz=ISTANBUL)
    assert "'_nope.html.j2' not found" in str(caught.value)
    assert str(tmp_path) in str(caught.value) and str(bundled_template_dir()) in str(caught.value)
    assert check_templates(make_environment(tmp_path))


def test_undefined_variables_fail_loudly(tmp_path: Path) -> None:
    (tmp_path / "digest.txt.j2").write_text("{{ titel }}")
    with pytest.raises(TemplateError, match="'titel' is undefined"):
        render_digest(_digest(), make_environment(tmp_path), title="D", tz=ISTANBUL)


def test_built_in_templates_are_the_repository_ones_in_an_editable_install() -> None:
    assert bundled_template_dir() == REPO / "templates"
    assert check_templates(make_environment()) == []
