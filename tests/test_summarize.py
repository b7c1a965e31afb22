from __future__ import annotations

import pytest

from digest.config import SummarizeSettings
from digest.encoder import bundled_model_dir, load_encoder
from digest.errors import SummarizerError
from digest.plugins import make_plugin_manager, summarizer_factories
from digest.summarize import (
    ExtractiveSummarizer,
    LeadSummarizer,
    SummaryRequest,
    fit_to_budget,
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


def _dev_stories(per_source: int) -> list[dict[str, str]]:
    """The first stories of each source in the summary dev set, cleaned as the digest does."""
    import json

    from digest.clean import clean_text

    rows = [json.loads(line) for line in DEV.read_text(encoding="utf-8").splitlines()]
    picked: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        kept = picked.setdefault(row["source"], [])
        if len(kept) < per_source:
            text = clean_text(row["text"], title=row["title"] or None)
            kept.append({"title": row["title"], "text": text})
    return [story for stories in picked.values() for story in stories]


DEV = SHARED_DATA / "eval" / "news_summ_dev.jsonl"


def test_fit_to_budget_fills_in_rank_order_and_prints_in_reading_order() -> None:
    sentences = ["One two three.", "Four five.", "Six seven eight nine.", "Ten."]
    assert fit_to_budget(sentences, [2, 0, 1, 3], 7) == "One two three. Six seven eight nine."
    assert fit_to_budget(sentences, [2, 3], 5) == "Six seven eight nine. Ten."
    # The top-ranked sentence always leads: cut, never skipped, when it alone is too long.
    assert fit_to_budget(sentences, [2, 0], 3) == "Six seven eight…"
    assert fit_to_budget(sentences, [], 3) == ""


def test_encoder_output_is_the_mean_pooled_minilm_embedding_padding_aside() -> None:
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = bundled_model_dir()
    texts = [s for story in _dev_stories(2) for s in split_sentences(story["text"])[:3]]
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1).numpy()
    ours = load_encoder(bf16=False).encode(texts)
    assert float(np.min(np.sum(ours * expected, axis=1))) > 0.99999


def test_bf16_similarities_agree_with_fp32_on_real_sentences() -> None:
    import numpy as np

    texts = [s for story in _dev_stories(3) for s in split_sentences(story["text"])[:6]]
    fp32 = load_encoder(bf16=False).encode(texts)
    bf16 = load_encoder(bf16=True).encode(texts)
    assert load_encoder(bf16=True).bf16 and not load_encoder(bf16=False).bf16
    error = np.abs(bf16 @ bf16.T - fp32 @ fp32.T)
    assert float(np.percentile(error, 99)) < 0.005
    assert float(error.max()) < 0.02


def test_extractive_summaries_of_the_dev_set_keep_budget_order_and_story(
    extractive: ExtractiveSummarizer,
) -> None:
    stories = _dev_stories(4)
    requests = [SummaryRequest(title=s["title"], text=s["text"]) for s in stories]
    summaries = extractive.summarize(requests)
    assert summaries[:3] == extractive.summarize(requests[:3])  # batching changes nothing
    for story, summary in zip(stories, summaries, strict=True):
        assert 0 < word_count(summary) <= 60
        assert "<" not in summary and ">" not in summary
        assert _positions_in(story["text"], summary) is not None


def _positions_in(story: str, summary: str) -> list[int] | None:
    """Indices of the story's sentences the summary is made of, in order (the last one
    possibly cut with "…"); None if it is not made of them in reading order."""
    sentences = split_sentences(story)
    rest, positions = summary.removesuffix("…"), []
    for index, sentence in enumerate(sentences):
        if rest.startswith(sentence):
            positions.append(index)
            rest = rest[len(sentence) :].lstrip()
    if rest and not (summary.endswith("…") and any(s.startswith(rest) for s in sentences)):
        return None
    return positions


def test_extractive_never_picks_a_sentence_it_did_not_embed(
    extractive: ExtractiveSummarizer,
) -> None:
    title, text = _seed_article()
    plan = extractive.plan(SummaryRequest(title=title, text=text))
    assert all(i < extractive.MAX_POSITION for i in plan.candidates)
    assert all(word_count(plan.sentences[i]) >= extractive.MIN_WORDS for i in plan.candidates)
    assert plan.texts() == [title, *(plan.sentences[i] for i in plan.candidates)]
