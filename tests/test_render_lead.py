"""The edition's first story (issue 15): the subject line names it, a lead block at the top
shows it (HTML and plain text, email-safe: styles inlined, fluid at 375 px), and both follow
the one reading order (digest.rank.in_sections); outlets are named once in "also in"."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import lxml.html

from digest.models import Cluster, Digest, DigestItem, Story, Summary
from digest.render import RenderOptions, make_environment, render_digest
from tests.conftest import make_story

NOW = datetime(2024, 3, 1, 5, 0, tzinfo=UTC)
UTC_ZONE = ZoneInfo("UTC")
D = RenderOptions(title="D")


def _story(n: int, outlet: str, section: str, *, feed: str | None = None) -> Story:
    host = outlet.lower().replace(" ", "")
    return make_story(
        n,
        feed_url=feed or f"https://{host}.example/feed",
        source_name=outlet,
        category=section,
        url=f"https://{host}.example/{n}",
        title=f"{section} story {n}",
        published_at=NOW - timedelta(hours=n),
    )


def _item(lead: Story, *others: Story) -> DigestItem:
    cluster = Cluster(cluster_id=lead.story_id, lead=lead, others=others)
    summary = Summary(cluster_id=lead.story_id, text=f"Summary of {lead.title}.", model_id="x")
    return DigestItem(cluster=cluster, summary=summary)


def _edition(*items: DigestItem, order: tuple[str, ...] = ()) -> Digest:
    return Digest(edition_on=date(2024, 3, 1), generated_at=NOW, items=items, section_order=order)


def _render(digest: Digest) -> tuple[str, lxml.html.HtmlElement, str]:
    rendered = render_digest(digest, make_environment(), tz=UTC_ZONE, options=D)
    return rendered.subject, lxml.html.document_fromstring(rendered.html), rendered.text


def _lead_headline(tree: lxml.html.HtmlElement) -> str:
    (block,) = tree.xpath("//td[contains(concat(' ', @class, ' '), ' lead ')]")
    return str(block.find("h2").text_content())


def test_the_subject_and_the_lead_block_name_the_first_story_in_reading_order() -> None:
    # issue 15: the subject named the globally top story (#21 in the edition, in a section
    # listed last) instead of the first one the reader sees
    world = _item(_story(1, "Reuters", "World"), _story(2, "BBC", "World"))
    tech = _item(_story(3, "Blog", "Tech"))
    subject, tree, text = _render(_edition(world, tech, order=("Tech", "World")))
    assert subject == "D, Friday, 1 March 2024: Tech story 3"
    assert _lead_headline(tree) == "Tech story 3"
    assert text.index("Tech story 3") < text.index("World story 1")
    # without a section order, the most important story opens the edition
    subject, tree, _ = _render(_edition(world, tech))
    assert subject.endswith(": World story 1") and _lead_headline(tree) == "World story 1"


def test_the_lead_block_opens_the_edition_and_its_story_is_shown_once() -> None:
    world = _item(_story(1, "Reuters", "World"), _story(2, "BBC", "World"))
    tech = _item(_story(3, "Blog", "Tech"))
    more_world = _item(_story(4, "AP", "World"))
    _, tree, text = _render(_edition(world, tech, more_world))
    html = lxml.html.tostring(tree, encoding="unicode")
    assert html.index("World story 1") < html.index("In this edition")  # before the contents
    headlines = [h.text_content() for h in tree.iter("h2")]
    assert headlines == ["World story 1", "World story 4", "Tech story 3"]
    # every link of the contents lands somewhere, the lead's section's included
    for link in tree.xpath("//td[contains(@class, 'toc')]//a"):
        assert tree.get_element_by_id(link.get("href")[1:]) is not None
    # a section whose only story is the lead shows no empty heading
    _, tree, text = _render(_edition(tech, world, more_world))
    titles = [p.text_content() for p in tree.xpath("//p[@class='section-title']")]
    assert titles == ["World"] and _lead_headline(tree) == "Tech story 3"
    assert text.count("Tech story 3\n") == 1 and "== Tech ==" not in text
    assert re.search(r"^TOP STORY · TECH\n\n1\. Tech story 3$", text, re.M)


def test_the_lead_block_stands_out_without_a_style_sheet() -> None:
    # Gmail's apps and many clients drop <style>: the look must be in the inlined styles
    _, tree, _ = _render(
        _edition(_item(_story(1, "Reuters", "World")), _item(_story(2, "AP", "World")))
    )
    lead = tree.xpath("//td[contains(concat(' ', @class, ' '), ' lead ')]")[0]
    other = tree.get_element_by_id("story-2")
    assert "font-size:24px" in lead.find("h2").get("style").replace(" ", "")
    assert "font-size:20px" in other.find("h2").get("style").replace(" ", "")
    assert "max-width" not in (lead.get("style") or "")  # fluid: the container sets the width


def test_also_in_names_each_other_outlet_once() -> None:
    lead = _story(1, "Indian Express", "World")
    more_express = [_story(n, "Indian Express", "World") for n in range(2, 6)]
    japan = _story(6, "Japan Times", "World")
    japan_again = _story(7, "Japan Times", "World", feed="https://japantimes.example/asia")
    _, tree, text = _render(_edition(_item(lead, *more_express, japan, japan_again)))
    meta = tree.xpath("//td[contains(concat(' ', @class, ' '), ' lead ')]//p[@class='meta']")
    assert [a.text_content() for a in meta[0].iter("a")] == ["Japan Times"]
    assert text.count("Also in") == 1
