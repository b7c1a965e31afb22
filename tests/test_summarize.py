from __future__ import annotations

import pytest

from digest.config import SummarizeSettings
from digest.errors import SummarizerError
from digest.plugins import make_plugin_manager, summarizer_factories
from digest.summarize import (
    ExtractiveSummarizer,
    LeadSummarizer,
    SummaryRequest,
    load_summarizer,
    split_sentences,
    word_count,
)
from tests.conftest import SHARED_DATA

SEED = SHARED_DATA / "seed" / "article-page-2021-01-14.txt"
ARTICLE_END = "will not be integrated into NATO."


def _seed_article() -> tuple[str, str]:
    """The seed page's headline and its article paragraphs (the page's boilerplate cut off)."""
    first, *lines = SEED.read_text(encoding="utf-8").splitlines()
    body = []
    for line in lines:
        body.append(line)
        if line.endswith(ARTICLE_END):
            break
    return first.split(" ", 2)[2], "\n".join(body)


def test_sentence_splitting_keeps_abbreviations_decimals_and_quotes() -> None:
    text = 'Dr. J. R. Smith paid $3.50 for it. He said "It is fine." Then U.S. officials left.'
    assert split_sentences(text) == [
        "Dr. J. R. Smith paid $3.50 for it.",
        'He said "It is fine."',
        "Then U.S. officials left.",
    ]


def test_lead_takes_whole_sentences_within_the_budget() -> None:
    title, text = _seed_article()
    (summary,) = LeadSummarizer(words=60).summarize([SummaryRequest(title=title, text=text)])
    assert summary.startswith("Turkish Defence Minister Hulusi Akar said")
    assert word_count(summary) <= 60
    assert summary.endswith(".")


def test_short_text_is_shown_as_is_and_an_overlong_sentence_is_cut() -> None:
    lead = LeadSummarizer(words=5)
    short, long = lead.summarize(
        [
            SummaryRequest(title="t", text="Two  words."),
            SummaryRequest(title="t", text="One two three four five six seven. Eight."),
        ]
    )
    assert short == "Two words."
    assert long == "One two three four five…"


@pytest.fixture(scope="module")
def extractive() -> ExtractiveSummarizer:
    return ExtractiveSummarizer(words=60)


def test_extractive_picks_sentences_of_the_story_in_reading_order(
    extractive: ExtractiveSummarizer,
) -> None:
    title, text = _seed_article()
    (summary,) = extractive.summarize([SummaryRequest(title=title, text=text)])
    sentences = split_sentences(text)
    picked = split_sentences(summary)
    assert 1 <= len(picked) < len(sentences)
    assert word_count(summary) <= 60
    positions = [sentences.index(s) for s in picked]
    assert positions == sorted(positions)
    assert "S-400" in summary


def test_extractive_encoder_is_the_bundled_minilm(extractive: ExtractiveSummarizer) -> None:
    vectors = extractive.embed(
        ["Turkey buys Russian missiles.", "Ankara acquires S-400s.", "Cats sleep a lot."]
    )
    assert tuple(vectors.shape) == (3, 384)
    related, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert related > unrelated + 0.2


def test_summarizers_are_found_through_the_plugin_hook() -> None:
    factories = summarizer_factories(make_plugin_manager(load_entry_points=False))
    assert {"lead", "extractive"} <= set(factories)
    summarizer = load_summarizer(SummarizeSettings(summarizer="lead", words=30), factories)
    assert summarizer.model_id == "lead/words=30"
    with pytest.raises(SummarizerError, match="no such summarizer") as caught:
        load_summarizer(SummarizeSettings(summarizer="nonesuch"), factories)
    assert "extractive, lead" in str(caught.value)
