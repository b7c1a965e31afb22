"""The pipeline's own duties: the summary cache (collect warms it, preview reads it and never
writes), the full-text flag on summaries, and the batch summarize command."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.clean import is_call_to_action
from digest.cli import cli
from digest.collecting import collect_once
from digest.config import SummarizeSettings, load_settings
from digest.editions import CachedSummarizer, build_digest, summary_key
from digest.errors import FeedError
from digest.models import CachedSummary, FeedSource, FetchResult, Story
from digest.parse import parse_feed
from digest.plugins import make_plugin_manager, summarizer_factories
from digest.preview import preview_edition
from digest.runtime import Runtime
from digest.sqlite_store import SQLiteStore
from digest.summarize import LeadSummarizer, SummaryRequest, load_summarizer, split_sentences
from tests.conftest import REPO, SAMPLE, SHARED_DATA, FeedServer, in_corpus, write_settings

NOW = datetime(2024, 1, 1, 12, tzinfo=UTC)
SEED = SAMPLE / "seed" / "article-page-2021-01-14.txt"
EXAMPLES = REPO / "examples" / "feeds"


class CountingSummarizer:
    """The real lead summarizer, counting the stories it is asked to summarise."""

    def __init__(self) -> None:
        self.inner = LeadSummarizer(40)
        self.model_id = self.inner.model_id
        self.calls = 0

    def summarize(self, requests: Sequence[SummaryRequest]) -> list[str]:
        self.calls += len(requests)
        return self.inner.summarize(requests)


def _requests(n: int) -> list[SummaryRequest]:
    return [
        SummaryRequest(title=f"Story {i}", text=f"Sentence one of story {i}. " * 30)
        for i in range(n)
    ]


def test_a_text_is_summarised_once_per_model(tmp_path: Path) -> None:
    counting = CountingSummarizer()
    with SQLiteStore.open(tmp_path / "digest.db") as store:
        first = CachedSummarizer(counting, store, lambda: NOW).summarize(_requests(3))
        again = CachedSummarizer(counting, store, lambda: NOW).summarize(_requests(4))
    assert counting.calls == 4  # three, then only the new fourth
    assert again[:3] == first
    other = CountingSummarizer()
    other.model_id = "lead/words=99"
    with SQLiteStore.open(tmp_path / "digest.db") as store:
        CachedSummarizer(other, store, lambda: NOW).summarize(_requests(3))
    assert other.calls == 3  # another model (or setting) is another cache


def test_a_summary_cached_under_earlier_sentence_rules_is_made_again(tmp_path: Path) -> None:
    counting = CountingSummarizer()
    request = _requests(1)[0]
    before = "lead/words=40"  # the model_id lead had before its rules were versioned
    with SQLiteStore.open(tmp_path / "digest.db") as store:
        store.save_summaries(
            [CachedSummary(model_id=before, text_hash=summary_key(request), text="Stale.")], NOW
        )
        made = CachedSummarizer(counting, store, lambda: NOW).summarize([request])
    assert counting.calls == 1 and made == counting.inner.summarize([request]) != ["Stale."]


def test_a_read_only_store_is_read_but_never_written(tmp_path: Path) -> None:
    path = tmp_path / "digest.db"
    with SQLiteStore.open(path) as store:
        CachedSummarizer(CountingSummarizer(), store, lambda: NOW).summarize(_requests(2))
    before = path.read_bytes()
    counting = CountingSummarizer()
    reader = SQLiteStore.open_read_only(path)
    assert reader is not None
    with reader:
        CachedSummarizer(counting, reader, lambda: NOW).summarize(_requests(3))
    assert counting.calls == 1
    assert path.read_bytes() == before


def test_collect_summarises_the_edition_so_preview_computes_nothing(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feeds = [
        {"url": feed_server.url("feeds/nasa.xml")},
        {"url": feed_server.url("feeds/jsonfeed.json")},
    ]
    settings = load_settings(write_settings(tmp_path, feeds))
    with Runtime.open(settings, clock=lambda: NOW) as runtime:
        collect_once(runtime)
    counting = CountingSummarizer()
    with Runtime.open(settings, access="read", clock=lambda: NOW, summarizer=counting) as runtime:
        rendered = preview_edition(runtime, collect=False)
    assert counting.calls == 0
    assert "NASA" in rendered.html


def test_a_summary_says_whether_it_came_from_the_article_page() -> None:
    story = Story(
        story_id="sha256:1",
        feed_url="https://news.example.org/feed",
        source_name="News",
        category=None,
        url="https://news.example.org/1",
        title="Bridge reopens",
        published_at=NOW,
        text="The bridge reopened on Monday. " * 10,
        text_source="article",
    )
    other = replace(
        story,
        story_id="sha256:2",
        url="https://news.example.org/2",
        title="Rain",
        text_source="feed",
    )
    digest = build_digest(
        [story, other], [], LeadSummarizer(20), edition_on=NOW.date(), now=NOW, max_stories=5
    )
    flags = {item.cluster.lead.title: item.summary.is_from_full_text for item in digest.items}
    assert flags == {"Bridge reopens": True, "Rain": False}


def _summarize(tmp_path: Path, lines: list[object], *args: str) -> list[dict[str, object]]:
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["summarize", "--input", str(source), "--output", str(target), *args]
    )
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]


def test_batch_summaries_clean_a_raw_page_like_the_digest_does(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)  # no settings file here: the defaults apply
    page = SEED.read_text(encoding="utf-8")
    lines = [
        {"id": "seed", "title": "", "text": page},
        {"id": 2, "title": "Short", "text": "<p>Only <b>one</b> line.</p>"},
    ]
    out = _summarize(tmp_path, lines, "--summarizer", "lead", "--words", "60")
    assert [item["id"] for item in out] == ["seed", 2]
    seed = str(out[0]["summary"])
    assert seed.startswith("Turkish Defence Minister Hulusi Akar said")
    for unwanted in ("newsletter", "Enter your email", "Navalny", "<"):
        assert unwanted not in seed
    assert out[1]["summary"] == "Only one line."  # too short to summarise: as it is


def test_batch_input_errors_name_the_file_and_line(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"id": 1, "text": "fine"}\n{"id": 2, "title": "no text"}\n', encoding="utf-8"
    )
    result = CliRunner().invoke(
        cli, ["summarize", "--input", str(source), "--output", str(tmp_path / "out.jsonl")]
    )
    assert result.exit_code == 1
    assert f'{source}:2: needs an object with a "text" string' in result.output
    assert not (tmp_path / "out.jsonl").exists()


def _day_files(day: str) -> list[Path]:
    """The CodeHollow news captures of the corpus, or the demo's copies of three of them with
    inessential's JSON Feed; the seed article's feed either way."""
    if day == "demo":
        return sorted(EXAMPLES.iterdir())
    folder = SHARED_DATA / "feeds" / "codehollow__FeedReader"
    return [*sorted(folder.glob("Rss20*.xml")), EXAMPLES / "seed-article.xml"]


def _corpus_stories(day: str) -> list[Story]:
    stories: list[Story] = []
    for path in _day_files(day):
        result = FetchResult(
            source=FeedSource(url=str(path)), fetched_at=NOW, body=path.read_bytes()
        )
        with contextlib.suppress(FeedError):
            stories += parse_feed(result).stories
    return stories


@pytest.mark.parametrize(
    "day",
    ["demo", in_corpus("feeds/codehollow__FeedReader", "codehollow")],
)
@pytest.mark.parametrize("name", ["lead", "extractive"])
def test_no_summary_has_markup_a_prompt_or_another_storys_text(name: str, day: str) -> None:
    summarizer = load_summarizer(
        SummarizeSettings(summarizer=name, words=60),
        summarizer_factories(make_plugin_manager()),
    )
    stories = _corpus_stories(day)
    digest = build_digest(stories, [], summarizer, edition_on=NOW.date(), now=NOW, max_stories=60)
    assert len(digest.items) == 60
    for item in digest.items:
        summary, source = item.summary.text, " ".join(item.cluster.lead.text.split())
        assert not re.search(r"</?[a-zA-Z][^>]*>", summary), summary
        for sentence in split_sentences(summary):
            assert not is_call_to_action(sentence), sentence
        # The lead story's own sentences in reading order, some left out (fragments, a cut
        # one), so the summary is checked against the story's sentences, not split again;
        # a story of a single cut sentence may end in "…".
        rest = summary.removesuffix("…")
        for sentence in split_sentences(item.cluster.lead.text):
            if rest.startswith(sentence):
                rest = rest[len(sentence) :].lstrip()
        assert not rest or (summary.endswith("…") and rest in source), (summary, source)
