"""The footer's failed feeds (issue 15): those of the feeds configured now whose latest fetch
failed since the previous edition was archived (this edition's collects), never an old
failure of a feed since removed, fixed, or not fetched for this edition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from digest.collecting import collect_once
from digest.config import Settings, load_settings
from digest.preview import preview_edition
from digest.runtime import Runtime
from digest.sending import plan_edition, send_edition
from tests.conftest import FEEDS, write_settings

DAY_ONE = datetime(2024, 3, 1, 5, tzinfo=UTC)
DAY_TWO = DAY_ONE + timedelta(days=1)
FOOTER = "Feeds that could not be read for this edition"


def _settings(folder: Path, *feeds: tuple[str, str]) -> Settings:
    listed = [{"url": url, "name": name} for url, name in feeds]
    sections = {"render": {"empty_edition": "send"}}  # a footer even without news
    return load_settings(write_settings(folder, listed, sections=sections))


def _footer(text: str) -> list[str]:
    if FOOTER not in text:
        return []
    lines = text[text.index(FOOTER) :].splitlines()[1:]
    return [line[2:] for line in lines if line.startswith("- ")]


def test_a_fixed_feed_leaves_the_footer_once_every_feed_reads_fine(tmp_path: Path) -> None:
    # issue 15: the URL was fixed, every feed read fine, and the old failure stayed
    broken = str(tmp_path / "moved.xml")
    nasa = (str(FEEDS / "nasa.xml"), "NASA")
    before = _settings(tmp_path, (broken, "Typo"), nasa)
    with Runtime.open(before, clock=lambda: DAY_ONE) as runtime:
        sent = send_edition(runtime, collect=True).rendered
    assert sent is not None and [f.split(":")[0] for f in _footer(sent.text)] == ["Typo"]
    fixed = _settings(tmp_path, (str(FEEDS / "jsonfeed.json"), "Fixed"), nasa)
    with Runtime.open(fixed, clock=lambda: DAY_TWO) as runtime:
        collect_once(runtime)
    with Runtime.open(fixed, access="read", clock=lambda: DAY_TWO) as runtime:
        assert _footer(preview_edition(runtime, collect=False).text) == []
        planned = plan_edition(runtime).rendered
    assert planned is not None and _footer(planned.text) == []


def test_only_failures_since_the_previous_edition_are_this_editions(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.xml")
    settings = _settings(tmp_path, (missing, "Missing"), (str(FEEDS / "nasa.xml"), "NASA"))
    with Runtime.open(settings, clock=lambda: DAY_ONE) as runtime:
        send_edition(runtime, collect=True)
    # not fetched again for the second edition: its failure was the first edition's
    with Runtime.open(settings, access="read", clock=lambda: DAY_TWO) as runtime:
        assert _footer(preview_edition(runtime, collect=False).text) == []
        fetched_now = preview_edition(runtime, collect=True).text  # fetched, in memory
    assert [f.split(":")[0] for f in _footer(fetched_now)] == ["Missing"]
    renamed = _settings(tmp_path, (missing, "Still missing"), (str(FEEDS / "nasa.xml"), "NASA"))
    with Runtime.open(renamed, clock=lambda: DAY_TWO) as runtime:
        collect_once(runtime)
        sent = send_edition(runtime, collect=False).rendered
    assert sent is not None and [f.split(":")[0] for f in _footer(sent.text)] == ["Still missing"]
