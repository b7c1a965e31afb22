"""Keyword filters: an edition's stories -> the ones its filters keep, and how many each
keyword list removed. Pure; applied before dedupe, so a removed story never joins a cluster.

A plain term is a word or phrase matched whole and without regard to case, in any script:
``"köln"`` matches "KÖLN" and "Köln's", not "Kölner"; ``"climate change"`` matches across
any run of spaces or a line break. In a script written without spaces (Chinese, Japanese,
Thai) words cannot be told apart, so there a term matches anywhere. Both sides are compared
in Unicode NFKC form, case-folded (so "STRASSE" matches "Straße", and a decomposed "u" +
diaeresis matches "ü"). A regular expression (``is_regex``) is searched for anywhere,
case-insensitively, in the NFKC text.

A story is kept when it passes every filter that applies to it, the global one and its
feed's: for each, some ``include`` term is found (or the list is empty) and no ``exclude``
term is.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from digest.models import FeedSource, FilterCount, KeywordRules, Story

Rule = Literal["include", "exclude"]


def term_problem(term: str, *, is_regex: bool) -> str | None:
    """Why a term cannot be a filter (an empty one, a bad or empty-matching regular
    expression), or None."""
    if not term.strip():
        return "an empty term would match every story: remove it"
    if not is_regex:
        return None
    try:
        pattern = re.compile(term, re.IGNORECASE)
    except re.error as exc:
        return (
            f"{term!r} is not a valid regular expression ({exc}): fix it, or set regex = false "
            "to match it as plain words"
        )
    if pattern.fullmatch(""):
        return f"{term!r} matches an empty text, so it would match every story"
    return None


@dataclass(frozen=True, slots=True)
class _Compiled:
    include: tuple[re.Pattern[str], ...]
    exclude: tuple[re.Pattern[str], ...]
    fields: tuple[str, ...]
    is_regex: bool


@functools.lru_cache(maxsize=256)
def _compile(rules: KeywordRules) -> _Compiled:
    return _Compiled(
        include=_patterns(rules.include, is_regex=rules.is_regex),
        exclude=_patterns(rules.exclude, is_regex=rules.is_regex),
        fields=rules.fields,
        is_regex=rules.is_regex,
    )


def _patterns(terms: tuple[str, ...], *, is_regex: bool) -> tuple[re.Pattern[str], ...]:
    """Plain terms as one alternation (one pass over a text, not one per term); each regular
    expression on its own, as its inline flags may only stand at its start."""
    if is_regex:
        return tuple(re.compile(term, re.IGNORECASE) for term in terms)
    return (re.compile("|".join(_plain(term) for term in terms)),) if terms else ()


# Scripts written without spaces between words (Chinese, Japanese kana, Thai, Lao, Khmer,
# Myanmar): there a term cannot be told apart as a word, so it matches anywhere.
_UNSPACED = re.compile(
    "[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff]"
)

_WORD = re.compile(r"\w")


def _plain(term: str) -> str:
    """The term's words in a row, not followed by a word character (where words are spaced;
    not a word boundary, as a term may end with a non-word character: "C++"). What comes
    before is checked by ``_starts_word``: a leading lookbehind would make the engine try
    every position of a text."""
    words = _fold(term).split()
    body = r"\s+".join(re.escape(word) for word in words)
    return body if _UNSPACED.match(words[-1][-1]) else rf"{body}(?!\w)"


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def _texts(story: Story, rules: _Compiled) -> tuple[str, ...]:
    raw = [story.title if field == "headline" else story.text for field in rules.fields]
    if rules.is_regex:
        return tuple(unicodedata.normalize("NFKC", text) for text in raw)
    return tuple(_fold(text) for text in raw)


def _found(patterns: Iterable[re.Pattern[str]], texts: tuple[str, ...], *, is_regex: bool) -> bool:
    if is_regex:
        return any(p.search(text) for p in patterns for text in texts)
    return any(_starts_word(p, text) for p in patterns for text in texts)


def _starts_word(pattern: re.Pattern[str], text: str) -> bool:
    """Is there a match of ``pattern`` not preceded by a word character (or in a script
    written without spaces)? Every term matching at one place starts with the same character,
    so one that does not start a word rules out the place for them all."""
    start = 0
    while (match := pattern.search(text, start)) is not None:
        at = match.start()
        if at == 0 or _UNSPACED.match(text, at) or not _WORD.match(text, at - 1):
            return True
        start = at + 1
    return False


def _failed_rule(story: Story, rules: _Compiled) -> Rule | None:
    """Which of a filter's lists removes the story; None: the filter keeps it."""
    if not rules.include and not rules.exclude:
        return None
    texts = _texts(story, rules)
    if rules.include and not _found(rules.include, texts, is_regex=rules.is_regex):
        return "include"
    if _found(rules.exclude, texts, is_regex=rules.is_regex):
        return "exclude"
    return None


def filter_stories(
    stories: Sequence[Story], rules: KeywordRules, feeds: Sequence[FeedSource] = ()
) -> tuple[tuple[Story, ...], tuple[FilterCount, ...]]:
    """The stories the global filter (``rules``) and their feed's keep, in order, and a count
    for each keyword list set: the global ones first, then the feeds' in their order."""
    by_feed = {feed.url: feed for feed in feeds if feed.keywords.include or feed.keywords.exclude}
    counts = dict.fromkeys(_lists(None, rules), 0)
    for url, feed in by_feed.items():
        counts |= dict.fromkeys(_lists(url, feed.keywords), 0)
    kept = []
    for story in stories:
        removed_by = _removed_by(story, rules, by_feed.get(story.feed_url))
        if removed_by is None:
            kept.append(story)
        else:
            counts[removed_by] += 1
    return tuple(kept), tuple(
        FilterCount(
            rule=rule,
            feed_url=url,
            feed_name=by_feed[url].title if url is not None else None,
            removed=removed,
        )
        for (url, rule), removed in counts.items()
    )


def _lists(url: str | None, rules: KeywordRules) -> list[tuple[str | None, Rule]]:
    named: tuple[tuple[Rule, tuple[str, ...]], ...] = (
        ("include", rules.include),
        ("exclude", rules.exclude),
    )
    return [(url, name) for name, terms in named if terms]


def _removed_by(
    story: Story, rules: KeywordRules, feed: FeedSource | None
) -> tuple[str | None, Rule] | None:
    """Which list removed the story (the feed's URL, None for the global one), or None."""
    if (rule := _failed_rule(story, _compile(rules))) is not None:
        return (None, rule)
    if feed is not None and (rule := _failed_rule(story, _compile(feed.keywords))):
        return (feed.url, rule)
    return None
