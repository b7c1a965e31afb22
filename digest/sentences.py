"""Sentences: a story's text -> its sentences and their lengths, by the story's language. Pure.

The language is the story's ISO 639-1 code (``Story.language``: py3langid's detection with
the feed's declaration as prior); None (unknown) means English rules.

* Splitting: sentencex with the language's own rules (German "am 09. Januar", Slovak "do 26.
  januára" stay whole); a code sentencex does not know falls back to its English rules.
  Chinese and Japanese are split here instead: sentencex leaves "。" unsplit before a digit
  or a Latin letter ("…的目标。2014 年 7 月…"), common in Chinese news.
* Length: words for languages written with spaces; characters (whitespace not counted) for
  Chinese, Japanese and Korean. ``[summarize].words`` stays the one budget setting: it is
  converted with ``CHARACTERS_PER_WORD`` (zh 2, ja 2.5, ko 2.5: 60 words -> 120, 150 and 150
  characters), roughly the characters a translation takes per English word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sentencex import segment

from digest.sentence_kinds import is_cut

# Characters of a summary per word of the budget, for the languages measured in characters.
CHARACTERS_PER_WORD = {"zh": 2.0, "ja": 2.5, "ko": 2.5}

_WORD = re.compile(r"\S+")
_SPACE = re.compile(r"\s+")
# A word (letters or digits, an apostrophe inside it kept), for word-overlap centrality.
_TERM = re.compile("[^\\W_]+(?:['\u2019][^\\W_]+)*")
# Han, kana and Hangul: terms of these scripts are character bigrams, words of others kept.
_CJK_RUN = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")

# Chinese and Japanese sentence ends: the full-width full stop, exclamation and question
# marks (U+3002, U+FF01, U+FF1F, U+FF0E), or "!?" before a space or the paragraph's end, with
# any closing quotes or brackets after them.
_CLOSERS = "\u300d\u300f\u201d\uff09)\u3011\u300b"
_OPENERS = "\u300c\u300e\u201c\uff08(\u3010\u300a"
_CJK_END = re.compile(f"(?:[\u3002\uff01\uff1f\uff0e]+|[!?]+(?=\\s|$))[{_CLOSERS}\u2019\"']*")
# Japanese quotative particles: 「…。」と言った is one sentence.
_QUOTATIVE = re.compile("[\u3068\u3063]")


def is_measured_in_characters(language: str | None) -> bool:
    """Whether summaries in ``language`` are measured in characters (Chinese, Japanese,
    Korean) rather than words."""
    return language in CHARACTERS_PER_WORD


def text_length(text: str, language: str | None = None) -> int:
    """The length of ``text`` in its language's budget unit: characters (whitespace not
    counted) for Chinese, Japanese and Korean, else words."""
    if is_measured_in_characters(language):
        return len(_SPACE.sub("", text))
    return len(_WORD.findall(text))


def word_count(text: str) -> int:
    """Runs of non-space characters: words, in a language written with spaces."""
    return len(_WORD.findall(text))


def budget_length(words: int, language: str | None = None) -> int:
    """A budget of ``words`` words in ``language``'s unit (see ``CHARACTERS_PER_WORD``)."""
    return round(words * CHARACTERS_PER_WORD.get(language or "", 1.0))


def truncate(sentence: str, words: int, language: str | None = None) -> str:
    """``sentence`` cut to a budget of ``words`` words (in its language's unit), "…" included."""
    limit = budget_length(words, language)
    if text_length(sentence, language) <= limit:
        return sentence
    if not is_measured_in_characters(language):
        return " ".join(sentence.split()[:limit]) + "…"
    kept = 0
    for end, char in enumerate(sentence):
        kept += not char.isspace()
        if kept == limit - 1:
            return sentence[: end + 1].rstrip() + "…"
    return sentence


def join_sentences(sentences: Iterable[str], language: str | None = None) -> str:
    """Sentences run together as text: without spaces in Chinese and Japanese."""
    return ("" if language in ("zh", "ja") else " ").join(sentences)


def split_sentences(text: str, language: str | None = None) -> list[str]:
    """Sentences of a text, paragraph by paragraph, by the rules of its language
    (abbreviations, ordinals, decimals, quotes kept); English rules when it is unknown."""
    sentences: list[str] = []
    for paragraph in text.splitlines():
        if language in ("zh", "ja"):
            pieces = _split_cjk(paragraph, is_japanese=language == "ja")
        else:
            pieces = _run_on_past_ellipses(list(segment(language or "en", paragraph)))
        sentences.extend(s.strip() for s in pieces if s.strip())
    return sentences


def _run_on_past_ellipses(pieces: list[str]) -> list[str]:
    """A paragraph's sentences, each one that ends on an ellipsis (or another cut mark) run
    on into the next: a publisher cuts a teaser only at its end, so a "..." with more of the
    paragraph after it is the author's pause ("...de Star Wars... Carrie Fisher est
    décédée..."), not the end of a sentence that could be shown alone."""
    merged: list[str] = []
    for piece in pieces:
        if merged and is_cut(merged[-1]):
            merged[-1] += piece
        else:
            merged.append(piece)
    return merged


def _split_cjk(paragraph: str, *, is_japanese: bool) -> list[str]:
    """A Chinese or Japanese paragraph cut after each sentence end that is not inside a
    quotation closed later in the paragraph."""
    pieces: list[str] = []
    start = 0
    for end in _CJK_END.finditer(paragraph):
        if _is_inside_quote(paragraph, start, end.end()):
            continue
        if is_japanese and end[0][-1] in _CLOSERS and _QUOTATIVE.match(paragraph, end.end()):
            continue
        pieces.append(paragraph[start : end.end()])
        start = end.end()
    return [*pieces, paragraph[start:]]


def _is_inside_quote(paragraph: str, start: int, end: int) -> bool:
    depth = sum((c in _OPENERS) - (c in _CLOSERS) for c in paragraph[start:end])
    # An opener never closed (a cut teaser) must not swallow the rest of the paragraph.
    return depth > 0 and any(c in _CLOSERS for c in paragraph[end:])


def content_terms(sentence: str) -> set[str]:
    """The terms word-overlap centrality compares: words of four characters or more (content
    words, without a stop-word list) and, in Han, kana and Hangul (no spaces between words,
    or short words), character bigrams; by script, so a mixed sentence gets both."""
    lowered = sentence.lower()
    terms = {w for w in _TERM.findall(_CJK_RUN.sub(" ", lowered)) if len(w) >= 4}
    for run in _CJK_RUN.findall(lowered):
        terms.update(run[i : i + 2] for i in range(len(run) - 1))
    return terms
