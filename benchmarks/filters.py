"""Keyword filter benchmark: filter_stories over every story of shared/data/feeds.

Parses every feed file under shared/data/feeds (news, blogs, many languages and years) with
digest's own parse_feed, then applies a few filters as `[filters]` would configure them and
prints, for each, the stories kept, what each list removed, and the time per 1,000 stories
(best of 5; the patterns are compiled once, on first use).

    .venv/bin/python benchmarks/filters.py
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from digest.errors import FeedError  # noqa: E402
from digest.filters import filter_stories  # noqa: E402
from digest.models import FeedSource, FetchResult, KeywordRules, Story  # noqa: E402
from digest.parse import parse_feed  # noqa: E402

FEEDS = REPO.parent / "shared" / "data" / "feeds"
WORDS = ("trump", "apple", "fußball", "köln", "brexit", "bitcoin", "iphone", "google")
CASES = {
    "exclude 8 words": KeywordRules(exclude=WORDS),
    "exclude 8 words, headline": KeywordRules(exclude=WORDS, fields=("headline",)),
    "include 2 phrases": KeywordRules(include=("climate change", "open source")),
    "exclude 3 regexes": KeywordRules(
        exclude=(r"\bcovid(-19)?\b", r"^\W*ad\b", "sponsor"), is_regex=True
    ),
}


def load_stories() -> list[Story]:
    stories: list[Story] = []
    for path in sorted(p for p in FEEDS.rglob("*") if p.is_file()):
        source = FeedSource(url=str(path), name=path.stem)
        fetched = datetime(2026, 1, 1, tzinfo=UTC)
        result = FetchResult(source=source, fetched_at=fetched, status=200, body=path.read_bytes())
        try:
            stories.extend(parse_feed(result).stories)
        except FeedError:
            continue  # not a feed (a test's HTML page, a broken capture): the parser says so
    return stories


def main() -> None:
    stories = load_stories()
    feeds = {story.feed_url for story in stories}
    print(f"{len(stories)} stories from {len(feeds)} feed files under {FEEDS}\n")
    print(f"{'filter':<28} {'kept':>6}  {'removed':<24} {'ms/1000 stories':>15}")
    for name, rules in CASES.items():
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            kept, counts = filter_stories(stories, rules)
            best = min(best, time.perf_counter() - started)
        removed = ", ".join(f"{c.rule} {c.removed}" for c in counts)
        per_thousand = 1000 * best / len(stories) * 1000
        print(f"{name:<28} {len(kept):>6}  {removed:<24} {per_thousand:>15.1f}")


if __name__ == "__main__":
    main()
