"""True dates (issue 15): an undated entry is never given a publication date. It keeps
``published_at=None`` and ``first_seen_at`` (when digest first read it) from parsing through
the store to the edition, ranks as of unknown age, and is shown without a date."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import lxml.html

from digest.collecting import collect_once
from digest.config import load_settings
from digest.models import FeedSource, FetchResult
from digest.parse import parse_feed
from digest.preview import preview_edition
from digest.runtime import Runtime
from tests.conftest import write_settings

NOW = datetime(2026, 12, 2, 9, tzinfo=UTC)

_RSS = """<?xml version="1.0"?>
<rss version="2.0"><channel><title>{title}</title><link>https://{host}/</link>
{items}
</channel></rss>"""
_ITEM = "<item><title>{title}</title><link>https://{host}/{n}</link>{date}<description>{title}, in detail.</description></item>"


def _feed(folder: Path, host: str, entries: list[tuple[str, str | None]]) -> Path:
    items = "\n".join(
        _ITEM.format(title=title, host=host, n=n, date=f"<pubDate>{date}</pubDate>" if date else "")
        for n, (title, date) in enumerate(entries)
    )
    path = folder / f"{host}.xml"
    path.write_text(_RSS.format(title=host, host=host, items=items), encoding="utf-8")
    return path


def test_an_undated_entry_has_no_publication_date_but_a_first_seen_time(tmp_path: Path) -> None:
    path = _feed(tmp_path, "notes.example", [("Undated note", None)])
    source = FeedSource(url=str(path))
    result = FetchResult(source=source, fetched_at=NOW, body=path.read_bytes())
    (story,) = parse_feed(result).stories
    assert story.published_at is None and story.first_seen_at == NOW


def test_undated_stories_neither_win_on_recency_nor_show_a_made_up_date(tmp_path: Path) -> None:
    # issue 15: nine undated analyst notes took Business from 25 dated Livemint stories,
    # and 2017 stories showed "2 Dec 2026", the day they were first seen
    notes = _feed(tmp_path, "notes.example", [(f"Analyst note {n}", None) for n in range(3)])
    mint = _feed(
        tmp_path,
        "mint.example",
        [(f"Dated story {n}", f"Wed, 02 Dec 2026 0{n}:00:00 GMT") for n in range(3)],
    )
    feeds = [
        {"url": str(notes), "name": "Notes", "category": "Business"},
        {"url": str(mint), "name": "Mint", "category": "Business"},
    ]
    settings = load_settings(
        write_settings(tmp_path, feeds, sections={"render": {"max_per_section": 3}})
    )
    with Runtime.open(settings, access="write", clock=lambda: NOW) as runtime:
        collect_once(runtime)
        stored = runtime.store.stories_for_edition(NOW.date())
    undated = [s for s in stored if s.source_name == "Notes"]
    assert {(s.published_at, s.first_seen_at) for s in undated} == {(None, NOW)}
    later = NOW + timedelta(hours=1)
    with Runtime.open(settings, access="read", clock=lambda: later) as runtime:
        rendered = preview_edition(runtime, collect=False)
    tree = lxml.html.document_fromstring(rendered.html)
    headlines = [h.text_content() for h in tree.xpath("//td[contains(@class, 'story')]//h2")]
    assert headlines == ["Dated story 2", "Dated story 1", "Dated story 0"]
    assert "2 Dec 2026" in rendered.text  # the dated stories show their dates ...
    assert "Analyst note" not in rendered.text


def test_an_undated_story_is_shown_without_a_date(tmp_path: Path) -> None:
    notes = _feed(tmp_path, "notes.example", [("Undated note", None)])
    settings = load_settings(write_settings(tmp_path, [{"url": str(notes), "name": "Notes"}]))
    with Runtime.open(settings, access="read", clock=lambda: NOW) as runtime:
        rendered = preview_edition(runtime, collect=True)  # fetched in memory only
    lines = rendered.text.splitlines()
    assert lines[lines.index("1. Undated note") + 1].strip() == "Notes"  # no date after it
    tree = lxml.html.document_fromstring(rendered.html)
    meta = tree.xpath("//td[contains(@class, 'story')]//p[contains(@class, 'meta')]")
    assert [m.text_content().strip() for m in meta] == ["Notes"]
