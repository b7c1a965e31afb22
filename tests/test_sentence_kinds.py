"""Which sentences may stand in a summary: real sentences from the corpus (the file each one
comes from is named beside it), and real sentences beside them that must stay candidates."""

from __future__ import annotations

import pytest

from digest.sentence_kinds import (
    ends_like_sentence,
    is_citation,
    is_cut,
    is_fragment,
    opens_with_reference,
    without_cut_mark,
)

# The seed page (tests/fixtures/corpus/seed/article-page-2021-01-14.txt).
SEED_FIRST = (
    'Turkish Defence Minister Hulusi Akar said it would be "very problematic" for Ankara to turn'
    " back on its purchase of Russian S-400 defence systems but expressed hope that a dispute with"
    " the United States on the issue could be resolved through dialogue."
)
SEED_THREAT = (
    "Washington says the S-400s pose a threat to its F-35 fighter jets and to NATO's broader"
    " defence systems."
)
SEED_REJECTS = "Turkey rejects this and says S-400s will not be integrated into NATO."


@pytest.mark.parametrize(
    "teaser",
    [
        # ../shared/data/feeds: cut teasers as the issue quotes them
        "A man was questioned by the FBI and homicide detectives over\u2026",
        "The report comes weeks after U.S. intelligence agencies declared ...",
        "Provincial governments must be cautious to protect public trust [\u2026]",
        "Adults with seborrheic dermatitis appear more likely to have other diseases. Read more",
    ],
)
def test_a_teaser_cut_by_its_publisher_is_cut(teaser: str) -> None:
    assert is_cut(teaser)
    assert not is_cut(without_cut_mark(teaser))


@pytest.mark.parametrize("sentence", [SEED_FIRST, SEED_THREAT, "Biden said: \u201cWe will.\u201d"])
def test_a_whole_sentence_is_not_cut(sentence: str) -> None:
    assert not is_cut(sentence)


def test_a_reading_list_entry_is_a_citation() -> None:
    # spacecowboy__Feeder/model/rss_morningpaper.xml
    entry = (
        "Practical black-box attacks against deep learning systems using adversarial examples,"
        " Papernot et al., 2016"
    )
    assert is_citation(entry)
    assert not is_citation(SEED_FIRST)


@pytest.mark.parametrize(
    "line",
    [
        # feedjira__feedjira/json_feed.json: a lyric sung over and over
        "B & L: Teenage wasteland, oh yeah, only teenage wasteland [repeated]",
        # rss2email__rss2email/nodejs/feed2.xml: an advisory's heading
        "HTTP request smuggling using malformed Transfer-Encoding header (Critical) (CVE-2019-15605)",
        # Ranchero-Software__NetNewsWire/medscape.rss: the outlet label under each teaser
        "Medscape News Canada",
        "Reuters Health Information",
        "Read more",
        # spacecowboy__Feeder/model/rss_nixers_newsletter.xml: the links under an entry's title
        "https://github.com/retrohun/blog/tree/master/dt/xenixtales",
        "http://perldoc.perl.org/a2p.html http://perldoc.perl.org/index-utilities.html",
        "<http://manpages.ubuntu.com/manpages/zesty/man7/casper.7.html>",
    ],
)
def test_headings_labels_lyrics_advisory_ids_and_bare_links_are_fragments(line: str) -> None:
    assert is_fragment(line)


@pytest.mark.parametrize(
    "sentence",
    [
        SEED_FIRST,
        SEED_REJECTS,
        # Ranchero-Software__NetNewsWire/medscape.rss
        "Dr Kaitlin Sanzone discusses which specialties are becoming increasingly more"
        " competitive.",
        # a language without letter case is never judged by capitals
        "\u4eca\u5929\u5929\u6c14\u5f88\u597d\uff0c\u6211\u4eec\u53bb\u516c\u56ed\u6563\u6b65\u3002",
    ],
)
def test_real_sentences_are_not_fragments(sentence: str) -> None:
    assert not is_fragment(sentence)


@pytest.mark.parametrize(
    "sentence",
    [
        SEED_REJECTS,
        "However, the ministry did not say when the talks would resume.",
        "He said the sanctions were imposed at a challenging time.",
        "The company said the outage was caused by a ransomware attack.",
        "But Washington says the S-400s pose a threat.",
    ],
)
def test_sentences_leaning_on_the_one_before_open_with_a_reference(sentence: str) -> None:
    assert opens_with_reference(sentence)


@pytest.mark.parametrize(
    "sentence",
    [SEED_FIRST, SEED_THREAT, "Theresa May said she would stay.", "Thisbe is a play."],
)
def test_sentences_that_stand_alone_open_with_no_reference(sentence: str) -> None:
    assert not opens_with_reference(sentence)


def test_references_are_english_words_so_another_language_has_none() -> None:
    # A German story quoting "But ..." or opening "Die ..." leans on nothing we can tell.
    assert opens_with_reference("But Washington says the S-400s pose a threat.", "en")
    assert not opens_with_reference("But Washington says the S-400s pose a threat.", "de")
    assert not opens_with_reference("Die Firma sagte, der Ausfall sei behoben.", "de")


@pytest.mark.parametrize(
    "sentence",
    [
        SEED_THREAT,
        'Biden said: "We will."',
        # ../shared/data/eval/news_summ_dev.jsonl: tokenised news spaces its closing quotes
        'The Iraqi business people will do business at all times. "',
        "Paul added : ' it has been such an emotional day and i \u2019 m overjoyed . '",
        "\u4eca\u5929\u5929\u6c14\u5f88\u597d\u3002",
    ],
)
def test_a_sentence_closed_by_its_mark_ends_like_one(sentence: str) -> None:
    assert ends_like_sentence(sentence)


@pytest.mark.parametrize(
    "line",
    [
        # spacecowboy__Feeder/model/rss_nixers_newsletter.xml: an entry's title
        "Explaining what is FreeBSD without shooting yourself in the foot",
        # spacecowboy__Feeder/model/rss_lawnchair.xml: a line that leads into a link
        "Check the full changelog here:",
    ],
)
def test_a_title_or_a_lead_in_does_not_end_like_a_sentence(line: str) -> None:
    assert not ends_like_sentence(line)
