"""Dedupe's rules besides the cosine: the time window, the encoder's languages and the rare
words that corroborate a pair (``digest.dedupe`` applies them). Pure.

Measured over every feed in ../shared/data/feeds with benchmarks/dedupe.py (see README).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from digest.models import Story

DEFAULT_WINDOW_HOURS = 48.0  # one news cycle and the next day's follow-ups
# A word is rare when at most this share of the batch's stories use it, or this many: a big
# event's own words ("airport") are in a dozen stories of a day's edition. Measured on the
# CodeHollow captures: with 2% (or 2 stories), or with 2 words to share, the airport
# shooting and the hacking report split; as here, they stay whole and "Will Washington and
# Beijing's cool war heat up?" (sharing only "China") parts from a climate story.
RARE_SHARE = 0.05
RARE_AT_LEAST = 10
SHARED_RARE_WORDS = 1  # that two stories must share to vouch for each other
_WORD = re.compile(r"[^\W\d_]{2,}")  # letters only: "2017" is in every story of the year


@dataclass(frozen=True, slots=True, kw_only=True)
class Rules:
    """What may merge: the cosine to reach, the window, the languages compared by meaning."""

    threshold: float
    window_seconds: float | None  # None: any time apart
    languages: frozenset[str] | None  # None: every story, whatever its language
    corroborate: bool  # a pair must share a rare word to vouch for a merge
    one_feed_links: bool = False  # any items of one feed sharing a link join (the old rule)

    def compares(self, story: Story, time: float) -> bool:
        """Whether the story may be merged by meaning: in a language the encoder reads, of a
        known time (when there is a window), from a feed that has not opted out."""
        known_time = self.window_seconds is None or not math.isnan(time)
        readable = self.languages is None or story.language in self.languages
        return story.is_deduped and known_time and readable


def story_times(stories: Sequence[Story]) -> npt.NDArray[np.float64]:
    """Each story's time in seconds: published, else first seen, else NaN (unknown)."""
    moments = (s.published_at or s.first_seen_at for s in stories)
    return np.array([m.timestamp() if m else math.nan for m in moments], dtype=np.float64)


def rare_words(texts: Sequence[str]) -> list[frozenset[str]]:
    """Each text's words (case ignored) that few texts of the batch use: names, places,
    numbers, the event's own terms; common words are no evidence of one story."""
    words = [frozenset(_WORD.findall(text.casefold())) for text in texts]
    counts = Counter(word for text_words in words for word in text_words)
    most = max(RARE_AT_LEAST, int(RARE_SHARE * len(texts)))
    return [frozenset(w for w in text_words if counts[w] <= most) for text_words in words]


@dataclass(frozen=True, slots=True)
class Rows:
    """What the rules need of the stories compared, one row each."""

    feed_ids: npt.NDArray[np.intp]
    times: npt.NDArray[np.float64]  # seconds, NaN where unknown
    words: list[frozenset[str]] | None  # the batch's rare words of each; None: not asked

    def take(self, rows: npt.NDArray[np.intp]) -> Rows:
        words = None if self.words is None else [self.words[r] for r in rows]
        return Rows(feed_ids=self.feed_ids[rows], times=self.times[rows], words=words)

    def unrelated(
        self, first: npt.NDArray[np.intp], second: npt.NDArray[np.intp], rules: Rules
    ) -> npt.NDArray[np.bool_]:
        """Which pairs cannot vouch for a merge: one feed, apart in time, or no shared rare word."""
        apart: npt.NDArray[np.bool_] = self.feed_ids[first] == self.feed_ids[second]
        if rules.window_seconds is not None:
            apart |= ~(np.abs(self.times[first] - self.times[second]) <= rules.window_seconds)
        return apart | self.uncorroborated(first, second)

    def uncorroborated(
        self, first: npt.NDArray[np.intp], second: npt.NDArray[np.intp]
    ) -> npt.NDArray[np.bool_]:
        """Which pairs share too few rare words (none, when corroboration is not asked)."""
        if self.words is None:
            return np.zeros(len(first), dtype=bool)
        words = self.words
        shared = [len(words[i] & words[j]) for i, j in zip(first, second, strict=True)]
        too_few: npt.NDArray[np.bool_] = np.array(shared, dtype=np.intp) < SHARED_RARE_WORDS
        return too_few


@dataclass(slots=True)
class Spans:
    """Each cluster's earliest and latest story time: no merge may span more than ``window``."""

    first: npt.NDArray[np.float64]
    last: npt.NDArray[np.float64]
    window: float

    def too_long(self, a: int) -> npt.NDArray[np.bool_]:
        """Which clusters cluster a may not merge with: together they would span too long."""
        span = np.maximum(self.last, self.last[a]) - np.minimum(self.first, self.first[a])
        too_long: npt.NDArray[np.bool_] = ~(span <= self.window)
        return too_long

    def merge(self, a: int, b: int) -> None:
        self.first[a] = np.minimum(self.first[a], self.first[b])
        self.last[a] = np.maximum(self.last[a], self.last[b])


def group_spans(
    times: npt.NDArray[np.float64], starts: npt.NDArray[np.intp], rules: Rules
) -> Spans | None:
    if rules.window_seconds is None:
        return None
    return Spans(
        first=np.minimum.reduceat(times, starts),
        last=np.maximum.reduceat(times, starts),
        window=rules.window_seconds,
    )


class UnionFind:
    """Disjoint sets over the stories, with each set's earliest and latest time; the smallest
    index is each set's root."""

    def __init__(self, times: npt.NDArray[np.float64]) -> None:
        self.parent = list(range(len(times)))
        self.first = times.copy()
        self.last = times.copy()

    def find(self, index: int) -> int:
        while self.parent[index] != index:
            self.parent[index] = self.parent[self.parent[index]]
            index = self.parent[index]
        return index

    def union(self, a: int, b: int, *, within: float | None = None) -> None:
        """Join the sets of a and b; given ``within`` (seconds), only if the joined set would
        span no longer (a set of an unknown time then never joins)."""
        root_a, root_b = sorted((self.find(a), self.find(b)))
        if root_a == root_b:
            return
        # NaN (an unknown time) propagates: such a set never joins within a window.
        first = float(np.minimum(self.first[root_a], self.first[root_b]))
        last = float(np.maximum(self.last[root_a], self.last[root_b]))
        if within is not None and not last - first <= within:
            return
        self.parent[root_b] = root_a
        self.first[root_a], self.last[root_a] = first, last

    def members(self) -> list[list[int]]:
        by_root: dict[int, list[int]] = {}
        for index in range(len(self.parent)):
            by_root.setdefault(self.find(index), []).append(index)
        return list(by_root.values())
