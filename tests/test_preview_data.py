"""`digest preview` end to end, on a settings file with local feed files: it says what each
keyword filter removed, and `--json` prints the edition as data, JSON alone on stdout."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine
from click.testing import CliRunner

from digest.cli import cli
from digest.config import Settings, load_settings
from digest.models import Digest, RenderedDigest
from digest.preview import preview_report
from digest.rank import importance, other_outlets
from digest.runtime import Runtime
from tests.conftest import write_settings

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)

# (headline, link, description, pubDate or None)
Item = tuple[str, str, str, str | None]
RHEIN: list[Item] = [
    (
        "Bahnstreik in Köln legt den Verkehr lahm",
        "https://rhein.example.org/1",
        "Die Bahn streikt.",
        "06:00",
    ),
    ("KÖLNER KARNEVAL beginnt", "https://rhein.example.org/2", "Alaaf in Köln.", "06:10"),
    ("Anzeige: Köln-Sofa zum halben Preis", "https://rhein.example.org/3", "Nur heute.", "06:20"),
    ("Regen in Bonn", "https://rhein.example.org/4", "Es wird nass.", "06:30"),
]
WIRE: list[Item] = [
    ("Storm hits the coast", "https://news.example.org/storm", "Winds of 150 km/h.", "05:00"),
    ("Carnival season opens in Rio", "https://wire.example.org/rio", "Samba all night.", None),
]
OTHER: list[Item] = [
    ("Storm hits the coast", "https://other.example.org/s", "Winds of 150 km/h.", "05:30")
]


def _rss(title: str, items: list[Item]) -> str:
    entries = "".join(
        f"<item><title>{headline}</title><link>{link}</link><description>{text}</description>"
        + (f"<pubDate>Wed, 02 Dec 2026 {at}:00 GMT</pubDate>" if at else "")
        + "</item>"
        for headline, link, text, at in items
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{title}</title><link>https://example.org/</link><description>d</description>"
        f"{entries}</channel></rss>"
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    for name, items in (("rhein.xml", RHEIN), ("wire.xml", WIRE), ("other.xml", OTHER)):
        (tmp_path / name).write_text(_rss(name, items), encoding="utf-8")
    feeds: list[dict[str, Any]] = [
        {
            "url": "rhein.xml",
            "name": "Rhein Post",
            "category": "Regional",
            "include": ["köln", "bahn"],
            "exclude": ["anzeige"],
            "fields": ["headline"],
        },
        {"url": "wire.xml", "name": "World Wire", "category": "World"},
        {"url": "other.xml", "name": "Other Wire", "category": "World"},
    ]
    sections = {"filters": {"exclude": ["karneval", "sponsored content"]}}
    sections["render"] = {"sections": ["World", "Regional"]}
    return write_settings(tmp_path, feeds, sections=sections)


@pytest.fixture
def at_now() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


def _preview(config: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--config", str(config), "preview", *args])


COUNTS = (
    "filters: global exclude removed 1; feed Rhein Post include removed 1; "
    "feed Rhein Post exclude removed 1"
)


@pytest.mark.usefixtures("at_now")
def test_preview_says_how_many_stories_each_filter_removed(config: Path, tmp_path: Path) -> None:
    result = _preview(config, "--out", str(tmp_path / "x.html"))
    assert result.exit_code == 0, result.output
    assert COUNTS in result.stdout.splitlines()
    html = (tmp_path / "x.html").read_text(encoding="utf-8")
    assert "Bahnstreik in Köln" in html and "Carnival season opens in Rio" in html
    for removed in ("KARNEVAL", "Köln-Sofa", "Regen in Bonn"):
        assert removed not in html
    text = _preview(config, "--text")
    assert COUNTS in text.stderr and "filters:" not in text.stdout  # stdout: the text part alone


def _built(settings: Settings) -> tuple[Digest, RenderedDigest]:
    with Runtime.open(settings, access="read", clock=lambda: NOW) as runtime:
        found = preview_report(runtime, collect=True)
    assert found.edition is not None
    return found.edition, found.rendered


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


@pytest.mark.usefixtures("at_now")
def test_preview_json_is_the_edition_as_data(config: Path) -> None:
    result = _preview(config, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)  # nothing but the JSON on stdout
    settings = load_settings(config)
    digest, rendered = _built(settings)
    assert data["title"] == "Daily Digest" == settings.render.title
    assert data["date"] == "2026-12-02"
    assert data["subject"] == rendered.subject and "Storm" in data["subject"]
    assert data["generated_at"] == "2026-12-02T08:00:00+00:00"
    assert data["story_count"] == len(digest.items) == 3 and data["trimmed_stories"] == 0
    assert [s["name"] for s in data["sections"]] == ["World", "Regional"]
    stories = [story for section in data["sections"] for story in section["stories"]]
    assert [s["headline"] for s in stories] == [
        "Storm hits the coast",
        "Carnival season opens in Rio",
        "Bahnstreik in Köln legt den Verkehr lahm",
    ]
    by_headline = {item.cluster.lead.title: item for item in digest.items}
    priorities = {feed.url: feed.priority for feed in settings.feed_sources}
    for story in stories:
        item = by_headline[story["headline"]]
        lead = item.cluster.lead
        rank = importance(item.cluster, priorities)
        known_at = _iso(datetime.fromtimestamp(rank.freshness, UTC)) if rank.freshness else None
        assert story == {
            "headline": lead.title,
            "url": lead.url,
            "source": lead.source_name,
            "feed_url": lead.feed_url,
            "also_in": [
                {"source": s.source_name, "url": s.url} for s in other_outlets(item.cluster)
            ],
            "published": _iso(lead.published_at),
            "summary": item.summary.text,
            "image": lead.image_url,
            "importance": {
                "outlets": rank.outlets,
                "priority": rank.priority,
                "newest_published": known_at if rank.is_dated else None,
                "first_seen": None if rank.is_dated else known_at,
            },
        }
    storm = stories[0]  # two outlets, whichever leads
    outlets_named = {
        (storm["source"], storm["url"]),
        *((a["source"], a["url"]) for a in storm["also_in"]),
    }
    assert outlets_named == {
        ("World Wire", "https://news.example.org/storm"),
        ("Other Wire", "https://other.example.org/s"),
    }
    assert storm["published"] in ("2026-12-02T05:00:00+00:00", "2026-12-02T05:30:00+00:00")
    assert storm["importance"] == {
        "outlets": 2,
        "priority": 0,
        "newest_published": "2026-12-02T05:30:00+00:00",
        "first_seen": None,
    }
    assert stories[2]["summary"] == "Die Bahn streikt."
    assert data["filters"] == [
        {"filter": "global exclude", "rule": "exclude", "feed_url": None, "removed": 1},
        {
            "filter": "feed Rhein Post include",
            "rule": "include",
            "feed_url": settings.feed_sources[0].url,
            "removed": 1,
        },
        {
            "filter": "feed Rhein Post exclude",
            "rule": "exclude",
            "feed_url": settings.feed_sources[0].url,
            "removed": 1,
        },
    ]
    assert data["failed_feeds"] == []


def test_preview_json_goes_with_no_other_output_option(config: Path) -> None:
    for args in (["--text"], ["--date", "2026-12-01"], ["--serve"], ["--out", "x.html"]):
        result = _preview(config, "--json", *args)
        assert result.exit_code == 2
        assert "--json prints today's edition alone" in result.output


@pytest.mark.usefixtures("at_now")
def test_preview_json_of_an_edition_already_sent_says_it_is_not_kept_as_data(
    config: Path,
) -> None:
    sent = CliRunner().invoke(cli, ["--config", str(config), "send"])
    assert sent.exit_code == 0, sent.output
    result = _preview(config, "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "today's edition (2026-12-02) was sent already" in result.stderr
