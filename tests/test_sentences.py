"""Sentences and summaries by the story's language (issue 16): sentencex's rules for the
language, Chinese and Japanese split at every sentence end, budgets in characters for CJK,
and the English encoder only for English stories.

The texts are excerpts of stories in ../shared/data/feeds, copied here (the feed each is from
is named beside it) so these tests run without the corpus.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.editions import build_digest, summary_key
from digest.encoder import Vectors
from digest.errors import SummarizerError
from digest.models import Story
from digest.sentences import budget_length, split_sentences, text_length, truncate
from digest.summarize import (
    ExtractiveSummarizer,
    LeadSummarizer,
    SummaryRequest,
    lexical_centrality,
)

# Ranchero-Software__NetNewsWire/3960.json, "VFR ohne technischen Schnickschnack".
GERMAN = (
    "Das Prinzip der Auffanglinie ist vielseitig nutzbar. So können Streckenabschnitte ohne "
    "Leitlinie auskommen, solange das Ende des Abschnitts von einem quer zur Flugrichtung "
    "verlaufenden Geländemerkmal begrenzt wird. Dabei ist es dann auch nicht so wichtig, auf "
    "welchem Punkt das eigene Flugzeug genau auf die Auffanglinie trifft, solange man sich "
    "sicher ist, ob der Linie dann nach links oder rechts gefolgt werden muss. Hier hilft ggf. "
    "der Trick, weiter nach links zu zielen, wenn man an der Auffanglinie nach rechts fliegen "
    "muss bzw. umgekehrt."
)
# spacecowboy__Feeder/model/rss_anime2you.xml, "Weitere Blu-ray-Volumes von »Kanon« vorbestellbar".
GERMAN_DATE = "Das dritte Volume erscheint voraussichtlich am 9. Februar 2024 als DVD und Blu-ray."
# Ranchero-Software__NetNewsWire/aktuality.rss, "Koronavírus: Slovensko čaká 9-dňové plošné …".
SLOVAK = (
    "Celoslovenské plošné testovanie začne od zajtra a potrvá do 26. januára. Povinnosť mať "
    "certifikát o negatívnom teste na Covid-19 začne platiť od 27 januára. Otestovať sa budete "
    "môcť v mobilných odberných miestach."
)
# spacecowboy__Feeder/model/rss_geekpark.xml, a story on charging stations.
CHINESE = (
    "大背景下，作为电动汽车的配套设施——充电桩也成为资本关注的目标。2014 年 7 月，特锐德发布公告称"
    "公司将斥资 6 亿元打造无桩充电「智能汽车群充电系统」。其中汽车充电云平台建设拟投资 1 亿元、充电终端"
    "建设拟投资 4 亿元、运营用充电汽车拟投资 1 亿元，可以看出充电桩硬件设施仍旧占据大头。"
)
# The same feed, a story on product names.
CHINESE_QUESTIONS = (
    "回过头再说说索尼，索尼耳机的命名也一直是被吐槽很多。比如最新的索尼 WH-1000XM4，WH 是什么？"
    "1000X 是什么？M4 又是什么？为什么要搞这么长...... 其实只要搞清楚它们各自代表的含义，就全都明白了。"
)
# The same feed, a story on group buying: a quotation of two sentences.
CHINESE_QUOTE = (
    "「我妈竟然跟我说，她打算在我爸退休之后，两人在小区整个摊位。别人买了东西就送到这儿来，一兜一兜的，"
    "没事儿还能和老太太唠唠嗑儿。」父母口中的新业务便是「当团长」。"
)
# The same feed, a story on Pop Mart's listing: its first paragraphs.
CHINESE_STORY = "\n".join(
    [
        "12 月 11 日，泡泡玛特在港交所挂牌上市，定价每股 38.50 港元。开盘后，其股价迅速拉升到 77 港元，"
        "市值一度突破了 1000 亿港元。",
        "在不少人印象中，这似乎是一家年轻的公司。它甚至还曾被评选为中国新零售的十大新物种。实际上，"
        "泡泡玛特已经十岁了。",
        "创始人王宁大学就开始创业，2010 年成立泡泡玛特，最早的定位是销售家具、文具、视频等生活创意产品的杂货铺。",
        "开设第一家门店，作为老板，王宁得自己刷墙搞装修，骑着三轮车到批发市场进货，当时，连最初级的店员都很难招到。",
        "如今，泡泡玛特在中国开设了 100 多家零售门店，在 62 个城市安置了一千多家机器人商店，推出了 Molly "
        "等爆款盲盒产品，今年双十一还在天猫创造了 1.42 亿的销售业绩。",
        "十年间，是什么推动了泡泡玛特的持续发展？而在外界质疑盲盒生意泡沫多的当下，又是什么撑起了泡泡玛特的千亿市值？",
    ]
)
ENGLISH = (
    "The city council approved the new bridge on Tuesday after a long debate about its cost. "
    "The bridge will connect the northern districts with the harbour and carry trams and "
    "bicycles. Construction starts next spring and should take about three years to finish. "
    "Opponents said the money would be better spent on repairing the existing roads first."
)
CJK_ENDS = ("。", "？", "！")


@pytest.mark.parametrize(
    ("text", "language", "sentences"),
    [
        (
            GERMAN,
            "de",
            [
                "Das Prinzip der Auffanglinie ist vielseitig nutzbar.",
                "So können Streckenabschnitte ohne Leitlinie auskommen, solange das Ende des "
                "Abschnitts von einem quer zur Flugrichtung verlaufenden Geländemerkmal begrenzt "
                "wird.",
                "Dabei ist es dann auch nicht so wichtig, auf welchem Punkt das eigene Flugzeug "
                "genau auf die Auffanglinie trifft, solange man sich sicher ist, ob der Linie dann "
                "nach links oder rechts gefolgt werden muss.",
                "Hier hilft ggf. der Trick, weiter nach links zu zielen, wenn man an der "
                "Auffanglinie nach rechts fliegen muss bzw. umgekehrt.",
            ],
        ),
        (GERMAN_DATE, "de", [GERMAN_DATE]),
        (
            SLOVAK,
            "sk",
            [
                "Celoslovenské plošné testovanie začne od zajtra a potrvá do 26. januára.",
                "Povinnosť mať certifikát o negatívnom teste na Covid-19 začne platiť od 27 januára.",
                "Otestovať sa budete môcť v mobilných odberných miestach.",
            ],
        ),
    ],
    ids=["de-ggf-bzw", "de-date", "sk-date"],
)
def test_abbreviations_and_dates_of_the_language_do_not_end_a_sentence(
    text: str, language: str, sentences: list[str]
) -> None:
    assert split_sentences(text, language) == sentences


def test_an_ellipsis_ends_a_sentence_only_at_the_end_of_its_paragraph() -> None:
    # codehollow__FeedReader/Rss20LeFil.xml: the author's pause, then the feed's cut.
    paused = (
        "VIDEOS - Elle \u00e9tait un peu plus que la princesse Le\u00efa de Star Wars... Carrie"
        " Fisher est d\u00e9c\u00e9d\u00e9e mardi des suites de la crise cardiaque qui..."
    )
    assert split_sentences(paused, "fr") == [paused]
    # One paragraph cut at its end is followed by another: two sentences, as before.
    assert split_sentences("The new iMac...\nIt ships in May.") == [
        "The new iMac...",
        "It ships in May.",
    ]


def test_unknown_languages_are_split_by_english_rules() -> None:
    text = "Dr. Smith arrived at 9 a.m. on Monday. He left on Friday."
    assert split_sentences(text) == split_sentences(text, "xx") == split_sentences(text, "en")
    assert split_sentences(text) == ["Dr. Smith arrived at 9 a.m. on Monday.", "He left on Friday."]


def test_chinese_is_split_at_every_full_stop_even_before_a_digit() -> None:
    # sentencex keeps "目标。2014 年" together, in Chinese rules as in English ones.
    assert split_sentences(CHINESE, "zh") == [
        "大背景下，作为电动汽车的配套设施——充电桩也成为资本关注的目标。",
        "2014 年 7 月，特锐德发布公告称公司将斥资 6 亿元打造无桩充电「智能汽车群充电系统」。",
        CHINESE[CHINESE.index("其中") :],
    ]


def test_chinese_questions_end_sentences_and_quotations_stay_whole() -> None:
    assert split_sentences(CHINESE_QUESTIONS, "zh") == [
        "回过头再说说索尼，索尼耳机的命名也一直是被吐槽很多。",
        "比如最新的索尼 WH-1000XM4，WH 是什么？",
        "1000X 是什么？",
        "M4 又是什么？",
        "为什么要搞这么长...... 其实只要搞清楚它们各自代表的含义，就全都明白了。",
    ]
    quote_ends = CHINESE_QUOTE.index("」") + 1
    assert split_sentences(CHINESE_QUOTE, "zh") == [
        CHINESE_QUOTE[:quote_ends],
        CHINESE_QUOTE[quote_ends:],
    ]


def test_a_japanese_quotation_followed_by_its_verb_is_one_sentence() -> None:
    text = "彼は「明日は晴れるでしょう。」と言った。本当にそうなるのか？"
    assert split_sentences(text, "ja") == [
        "彼は「明日は晴れるでしょう。」と言った。",
        "本当にそうなるのか？",
    ]


def test_budgets_are_characters_for_chinese_japanese_and_korean() -> None:
    assert [budget_length(60, lang) for lang in ("en", "de", None, "zh", "ja", "ko")] == [
        60,
        60,
        60,
        120,
        150,
        150,
    ]
    assert text_length("在 2020 年，泡泡玛特上市。", "zh") == 14  # spaces do not count
    cut = truncate(CHINESE, 10, "zh")
    assert cut.endswith("…") and text_length(cut, "zh") == 20
    assert text_length("在 2020 年，泡泡玛特上市。", "de") == 3  # words


@pytest.mark.parametrize("summarizer", [LeadSummarizer(60), ExtractiveSummarizer(60)])
def test_a_chinese_summary_keeps_to_the_character_budget_in_whole_sentences(
    summarizer: LeadSummarizer | ExtractiveSummarizer,
) -> None:
    request = SummaryRequest(
        title="泡泡玛特市值千亿，做的其实不是盲盒", text=CHINESE_STORY, language="zh"
    )
    (summary,) = summarizer.summarize([request])
    sentences = split_sentences(CHINESE_STORY, "zh")
    assert 60 <= text_length(summary, "zh") <= 120, summary
    assert summary.endswith(CJK_ENDS)
    assert all(s in sentences for s in split_sentences(summary, "zh"))


def test_word_overlap_centrality_reads_chinese_by_character_bigrams() -> None:
    sentences = split_sentences(CHINESE_STORY, "zh")
    scores = lexical_centrality(sentences)
    # Without bigrams every clause is one long "word" that no other sentence shares.
    assert len(set(scores.round(4).tolist())) > 3
    assert int(scores.argmax()) != 0 or scores.min() < 0.9


class _RecordingExtractive(ExtractiveSummarizer):
    """The extractive summarizer, keeping every batch of texts it embeds."""

    def __init__(self, words: int, model_dir: str | None = None) -> None:
        super().__init__(words, model_dir)
        self.embedded: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.embedded.append(list(texts))
        return super().embed(texts)


@pytest.mark.parametrize(
    ("text", "language", "words"),
    [(GERMAN, "de", 40), (SLOVAK, "sk", 20), (CHINESE_STORY, "zh", 30)],
)
def test_a_story_in_another_language_is_summarised_without_the_encoder(
    tmp_path: Path, text: str, language: str, words: int
) -> None:
    # An encoder folder that does not exist: loading it would raise SummarizerError.
    summarizer = _RecordingExtractive(words, model_dir=str(tmp_path / "no-encoder"))
    (summary,) = summarizer.summarize([SummaryRequest(title="", text=text, language=language)])
    assert summarizer.embedded == []
    assert summary and text_length(summary, language) <= budget_length(words, language)
    assert all(s in split_sentences(text, language) for s in split_sentences(summary, language))


@pytest.mark.parametrize("language", ["en", None])
def test_an_english_story_is_still_scored_with_the_encoder(
    tmp_path: Path, language: str | None
) -> None:
    request = SummaryRequest(title="Council approves bridge", text=ENGLISH, language=language)
    missing = _RecordingExtractive(30, model_dir=str(tmp_path / "no-encoder"))
    with pytest.raises(SummarizerError, match="no such folder"):
        missing.summarize([request])
    summarizer = _RecordingExtractive(30)
    german = SummaryRequest(title="Auffanglinie", text=GERMAN, language="de")
    summaries = summarizer.summarize([request, german])
    (texts,) = summarizer.embedded
    assert texts[0] == "Council approves bridge"
    assert set(texts[1:]) <= set(split_sentences(ENGLISH)) and len(texts) > 2
    assert not any("Auffanglinie" in t for t in texts)  # the German story is not embedded
    assert all(summaries)


def test_the_summary_cache_key_includes_a_known_language() -> None:
    plain = SummaryRequest(title="T", text="Text.")
    assert summary_key(plain) == summary_key(SummaryRequest(title="T", text="Text.", language=None))
    assert summary_key(plain) != summary_key(SummaryRequest(title="T", text="Text.", language="de"))


def test_batch_summaries_detect_the_language(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)  # no settings file here: the defaults apply
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [
        {"id": "zh", "title": "泡泡玛特市值千亿，做的其实不是盲盒", "text": CHINESE_STORY},
        {"id": "de", "title": "Auffanglinie", "text": GERMAN, "language": "de-DE"},
    ]
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    command = ["summarize", "--input", str(source), "--output", str(target)]
    result = CliRunner().invoke(cli, [*command, "--summarizer", "lead", "--words", "20"])
    assert result.exit_code == 0, result.output
    out = {item["id"]: item["summary"] for item in map(json.loads, target.read_text().splitlines())}
    assert 20 <= text_length(out["zh"], "zh") <= 40 and out["zh"].endswith(CJK_ENDS)
    assert out["de"] == "Das Prinzip der Auffanglinie ist vielseitig nutzbar."


def test_an_edition_summarises_each_story_in_its_own_language() -> None:
    now = datetime(2020, 12, 12, tzinfo=UTC)
    story = Story(
        story_id="sha256:1",
        feed_url="https://www.geekpark.net/rss",
        source_name="极客公园",
        category=None,
        url="https://www.geekpark.net/news/1",
        title="泡泡玛特市值千亿，做的其实不是盲盒",
        published_at=now,
        text=CHINESE_STORY,
        language="zh",
    )
    digest = build_digest(
        [story], [], LeadSummarizer(20), edition_on=now.date(), now=now, max_stories=5
    )
    (item,) = digest.items
    assert item.summary.text == "12 月 11 日，泡泡玛特在港交所挂牌上市，定价每股 38.50 港元。"
