"""Dedupe: stories -> clusters, one per real-world story, in first-seen order. Pure.

Stories join one cluster when they share a canonical link, when two outlets print the
same headline (case, punctuation and spacing ignored), or, given a sentence encoder, when
their headline and lead text mean the same thing. Only pairs from different feeds are
evidence of meaning: two items of one outlet are never compared, so they share a cluster
only when other outlets' coverage of the same event joins them. The semantic step is
average-linkage agglomeration with a cosine threshold, run inside each connected
component of the "some pair at least that similar" graph; average linkage, unlike single
linkage, does not chain A~B~C into one cluster when A and C are unrelated. A story from a
feed with ``dedupe = false`` is never merged with anything.

Three rules keep merges precise across languages and time (``digest.dedupe_rules``; each
can be switched off, which gives the behaviour before them, for benchmarks/dedupe.py):

* a window: stories published (or, undated, first seen) more than ``window_hours`` apart
  are never one story by headline or meaning; a cluster never spans more than the window;
* languages: only stories in a language the encoder declares (``Encoder.languages``; the
  bundled MiniLM reads English) are compared by meaning: to an encoder that cannot read
  them, two unrelated Slovak texts look alike. Others join by link and headline only;
* corroboration: a pair of stories vouches for a merge only if, besides the cosine, their
  headlines + leads share a word that is rare in the batch (a name, a place);
* one feed's items join by link only when they are one entry given twice (the same link
  and headline): some feeds link every item to their one news page.

Memory grows with the number of stories, not its square: similarities are computed a block
of rows at a time, each story keeps its 50 nearest candidates of other feeds, and only a
component's own stories are compared in full. A component of more than 2,000 stories (seen
only at thresholds far below the default) is merged over its candidate pairs alone, the
others counting as similarity 0, which can only merge less.

The lead is the story with the most text (the summary is written from it), then the
earliest. Results do not depend on the input order; ranking them is ``digest.rank``'s.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from digest.dedupe_rules import (
    DEFAULT_WINDOW_HOURS,
    Rows,
    Rules,
    Spans,
    UnionFind,
    group_spans,
    rare_words,
    story_times,
)
from digest.models import Cluster, Story

__all__ = ["DEFAULT_SIMILARITY", "DEFAULT_WINDOW_HOURS", "Encoder", "cluster_stories"]

_NON_WORD = re.compile(r"[\W_]+")
# Measured with benchmarks/dedupe.py on the CodeHollow captures of 2017-01-07 and on every
# feed of the corpus at once: the highest value at which each multi-outlet event of those
# captures is one cluster in both (0.55 splits the airport shooting); 0.52, the value
# before, also merged two posts of one blog and two different health-care stories.
DEFAULT_SIMILARITY = 0.54
_LEAD_WORDS = 60  # of the story text, after the headline: what a reader sees first
# Memory bounds, so that one feed of 20,000 entries cannot take the machine's memory:
_BLOCK_CELLS = 4_000_000  # similarities computed at once (16 MB of float32)
_NEIGHBOURS = 50  # candidate pairs kept per story: its most similar stories of other feeds
_DENSE_ROWS = 2_000  # the largest component given exact average linkage (32 MB a matrix)


class Encoder(Protocol):
    """Texts -> L2-normalised embeddings, one row each (``digest.encoder.SentenceEncoder``).

    ``languages``: the ISO 639-1 codes of the texts it is meant for; only stories in these
    are compared by meaning."""

    languages: frozenset[str]

    def encode(self, texts: Sequence[str], *, max_length: int = ...) -> npt.NDArray[np.float32]:
        """One unit vector per text."""
        ...


def cluster_stories(
    stories: Iterable[Story],
    *,
    encoder: Encoder | None = None,
    similarity: float = DEFAULT_SIMILARITY,
    window_hours: float | None = DEFAULT_WINDOW_HOURS,
    by_language: bool = True,
    corroborate: bool = True,
    one_feed_links: bool = False,
) -> tuple[Cluster, ...]:
    """Group the same story from several outlets into one cluster, in first-seen order.

    Without an encoder only exact links and headlines join stories; ``similarity`` is the
    cosine (0-1) that headline + lead of two outlets' stories must reach to count as one.
    ``window_hours`` (None: no window), ``by_language`` and ``corroborate``: the rules above;
    ``one_feed_links``: any items of one feed that share a link join (the rule before them).
    """
    given = list(stories)
    # A canonical order makes the result (and the encoder's batches) independent of input order.
    order = sorted(range(len(given)), key=lambda i: _sort_key(given[i]))
    items = [given[i] for i in order]
    rules = Rules(
        threshold=similarity,
        window_seconds=None if window_hours is None else window_hours * 3600,
        languages=encoder.languages if encoder is not None and by_language else None,
        corroborate=corroborate,
        one_feed_links=one_feed_links,
    )
    times = story_times(items)
    groups = _exact_groups(items, times, rules)
    if encoder is not None:
        groups = _semantic_groups(items, groups, encoder, times, rules)
    first_seen = {id(story): position for position, story in enumerate(given)}
    clusters = [[items[i] for i in group] for group in groups]
    clusters.sort(key=lambda members: min(first_seen[id(s)] for s in members))
    return tuple(_to_cluster(members) for members in clusters)


def _sort_key(story: Story) -> tuple[str, str, str]:
    return (story.story_id, story.feed_url, story.url)


def _headline_key(title: str) -> str | None:
    """The headline with case, punctuation and spacing ignored; None when too short to trust."""
    headline = _NON_WORD.sub(" ", title.casefold()).strip()
    # Short headlines ("Update", "Live", "NVIDIA Buy") are not evidence of the same story.
    return headline if len(headline.split()) >= 4 else None


def _exact_groups(
    items: Sequence[Story], times: npt.NDArray[np.float64], rules: Rules
) -> list[list[int]]:
    """Union stories of different feeds by identical canonical link or headline, and one
    feed's items given twice (the same link and headline), within the window."""
    groups = UnionFind(times)
    earlier_by_key: dict[str, list[int]] = {}
    for index, story in enumerate(items):
        if not story.is_deduped:
            continue
        keys = [f"url:{story.url}"]
        if (headline := _headline_key(story.title)) is not None:
            keys.append(f"title:{headline}")
        for key in keys:
            earlier = earlier_by_key.setdefault(key, [])
            for other in earlier:
                if _joins(items[other], story, by_link=key.startswith("url:"), rules=rules):
                    groups.union(other, index, within=rules.window_seconds)
            earlier.append(index)
    return groups.members()


def _joins(a: Story, b: Story, *, by_link: bool, rules: Rules) -> bool:
    """Whether a shared link or headline joins two stories, their time aside."""
    if a.feed_url != b.feed_url:
        return True
    # One feed's items join only as one entry given twice: a feed repeats a headline for a
    # recurring column, and may link every item to its one news page.
    if not by_link:
        return False
    same_headline = _NON_WORD.sub(" ", a.title.casefold()) == _NON_WORD.sub(" ", b.title.casefold())
    return same_headline or rules.one_feed_links  # the latter: the rule before issue 15


def _semantic_groups(
    items: Sequence[Story],
    groups: list[list[int]],
    encoder: Encoder,
    times: npt.NDArray[np.float64],
    rules: Rules,
) -> list[list[int]]:
    """Merge groups whose stories from different feeds mean the same, by average linkage."""
    open_groups = [g for g in groups if all(rules.compares(items[i], times[i]) for i in g)]
    closed = [g for g in groups if not all(rules.compares(items[i], times[i]) for i in g)]
    if len(open_groups) < 2:
        return groups
    rows = [i for group in open_groups for i in group]
    texts = [_headline_and_lead(items[i]) for i in rows]
    vectors = encoder.encode(texts)
    stories = Rows(
        feed_ids=np.unique([items[i].feed_url for i in rows], return_inverse=True)[1],
        times=times[rows],
        words=rare_words(texts) if rules.corroborate else None,
    )
    sizes = np.array([len(group) for group in open_groups])
    starts = np.concatenate(([0], np.cumsum(sizes[:-1])))
    group_of = np.repeat(np.arange(len(open_groups)), sizes)
    pairs = _similar_pairs(vectors, stories, rules)
    components = UnionFind(np.zeros(len(open_groups)))
    for i, j in zip(group_of[pairs.first], group_of[pairs.second], strict=True):
        components.union(int(i), int(j))
    merged: list[list[int]] = []
    # Two clusters can only average the threshold if some pair of their stories reaches it,
    # so average linkage never needs to look across these components.
    for component in components.members():
        if len(component) == 1:
            merged.append(open_groups[component[0]])
            continue
        component_rows = np.concatenate(
            [np.arange(starts[g], starts[g] + sizes[g]) for g in component]
        )
        if len(component_rows) <= _DENSE_ROWS:
            links = _dense_links(
                vectors[component_rows], stories.take(component_rows), sizes[component], rules
            )
            clusters = links.average_linkage(rules.threshold)
        else:
            sparse = _SparseLinks(pairs, group_of, component, stories.times, rules)
            clusters = sparse.average_linkage(rules.threshold)
        for cluster in clusters:
            merged.append(sorted(i for g in cluster for i in open_groups[component[g]]))
    return sorted(merged, key=min) + closed


@dataclass(frozen=True, slots=True)
class _Pairs:
    """Pairs of stories of different feeds that reach the threshold (rows, first < second)."""

    first: npt.NDArray[np.intp]
    second: npt.NDArray[np.intp]
    similarity: npt.NDArray[np.float32]


def _similar_pairs(vectors: npt.NDArray[np.float32], stories: Rows, rules: Rules) -> _Pairs:
    """Each story's most similar stories of other feeds that reach the threshold, within the
    window, sharing a rare word (as the rules ask).

    Computed a block of rows at a time, and at most ``_NEIGHBOURS`` per story, so memory
    grows with the number of stories rather than its square."""
    count = len(vectors)
    block = max(1, _BLOCK_CELLS // count)
    found: list[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float32]]] = []
    feed_ids = stories.feed_ids
    for start in range(0, count, block):
        similarity = vectors[start : start + block] @ vectors.T
        similarity[feed_ids[start : start + block, None] == feed_ids[None, :]] = -np.inf
        # The rules judge only the pairs that reach the threshold: few, so little memory.
        rows, columns = np.nonzero(similarity >= rules.threshold)
        unrelated = stories.unrelated(rows + start, columns, rules)
        similarity[rows[unrelated], columns[unrelated]] = -np.inf
        found.append(_nearest(similarity, rules.threshold, offset=start))
    first = np.concatenate([f[0] for f in found])
    second = np.concatenate([f[1] for f in found])
    similarity = np.concatenate([f[2] for f in found])
    low, high = np.minimum(first, second), np.maximum(first, second)
    # A pair found from both of its stories is kept once.
    _, once = np.unique(low * count + high, return_index=True)
    return _Pairs(first=low[once], second=high[once], similarity=similarity[once])


def _nearest(
    similarity: npt.NDArray[np.float32], threshold: float, *, offset: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float32]]:
    """(row, column, similarity) of each row's best ``_NEIGHBOURS`` cells at the threshold."""
    rows, columns = np.nonzero(similarity >= threshold)
    values = similarity[rows, columns]
    by_row_best_first = np.lexsort((-values, rows))
    rows, columns, values = (
        rows[by_row_best_first],
        columns[by_row_best_first],
        values[by_row_best_first],
    )
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows)
    keep = rank < _NEIGHBOURS
    return rows[keep] + offset, columns[keep], values[keep]


def _dense_links(
    vectors: npt.NDArray[np.float32], stories: Rows, sizes: npt.NDArray[np.intp], rules: Rules
) -> _Links:
    """Exact average-linkage state of one component's groups (their rows contiguous, in order)."""
    similarity = (vectors @ vectors.T).astype(np.float64)
    feed_ids = stories.feed_ids
    cross = (feed_ids[:, None] != feed_ids[None, :]).astype(np.float64)
    if stories.words is not None:
        # A pair that would vouch for a merge without a rare word in common counts as
        # unrelated (0), as a pair that is no candidate does in _SparseLinks.
        first, second = np.nonzero((similarity >= rules.threshold) & (cross > 0))
        unrelated = stories.uncorroborated(first, second)
        similarity[first[unrelated], second[unrelated]] = 0.0
    # Each group's rows are contiguous: their block sums are the groups' pair sums.
    starts = np.concatenate(([0], np.cumsum(sizes[:-1]))).astype(np.intp)
    return _Links(
        sums=_block_sums(similarity, starts),
        cross_sums=_block_sums(similarity * cross, starts),
        cross_pairs=_block_sums(cross, starts),
        sizes=sizes.astype(np.float64),
        spans=group_spans(stories.times, starts, rules),
    )


def _block_sums(
    matrix: npt.NDArray[np.float64], starts: npt.NDArray[np.intp]
) -> npt.NDArray[np.float64]:
    """Sums of the blocks that ``starts`` cuts a square matrix into, along both axes."""
    # O(n^2); the membership-matrix products this replaces were O(n^3), 0.1 s at 750 stories.
    return np.add.reduceat(np.add.reduceat(matrix, starts, axis=0), starts, axis=1)


def _headline_and_lead(story: Story) -> str:
    lead = " ".join(story.text.split()[:_LEAD_WORDS])
    return f"{story.title}. {lead}" if lead else story.title


class _Links:
    """Average linkage's state between clusters: similarity sums over all and cross-feed pairs."""

    def __init__(
        self,
        *,
        sums: npt.NDArray[np.float64],
        cross_sums: npt.NDArray[np.float64],
        cross_pairs: npt.NDArray[np.float64],
        sizes: npt.NDArray[np.float64],
        spans: Spans | None,
    ) -> None:
        self.sums, self.cross_sums, self.cross_pairs = sums, cross_sums, cross_pairs
        self.sizes, self.spans = sizes, spans

    def average_linkage(self, threshold: float) -> list[list[int]]:
        """Merge the closest two clusters until no two reach ``threshold``."""
        count = len(self.sizes)
        members = [[g] for g in range(count)]
        alive = np.ones(count, dtype=bool)
        linkage = np.stack([self._linkage_row(g, alive) for g in range(count)])
        best = linkage.argmax(axis=1)  # each row's first best column, kept up to date
        everyone = np.arange(count)
        while True:
            best_values = linkage[everyone, best]
            a = int(np.argmax(best_values))
            if best_values[a] < threshold:
                break
            a, b = sorted((a, int(best[a])))
            for matrix in (self.sums, self.cross_sums, self.cross_pairs):
                matrix[a] += matrix[b]
                matrix[:, a] += matrix[:, b]
            self.sizes[a] += self.sizes[b]
            if self.spans is not None:
                self.spans.merge(a, b)
            members[a] += members[b]
            alive[b] = False
            linkage[b], linkage[:, b] = -np.inf, -np.inf
            linkage[a] = linkage[:, a] = self._linkage_row(a, alive)
            best = self._updated_best(linkage, best, a, b)
        return [members[g] for g in range(count) if alive[g]]

    def _linkage_row(self, a: int, alive: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
        """Cluster a's linkage to each cluster: the lower of the cross-feed and overall mean.

        Only other outlets' stories can vouch for a merge; an outlet's own unrelated items
        can veto it, which stops one story from gluing an outlet's whole feed together.
        """
        usable = (self.cross_pairs[a] > 0) & alive
        usable[a] = False
        cross_mean = np.full(len(self.sizes), -np.inf)
        np.divide(self.cross_sums[a], self.cross_pairs[a], out=cross_mean, where=usable)
        overall_mean: npt.NDArray[np.float64] = self.sums[a] / (self.sizes[a] * self.sizes)
        linkage: npt.NDArray[np.float64] = np.minimum(cross_mean, overall_mean)
        if self.spans is not None:
            linkage[self.spans.too_long(a)] = -np.inf
        return linkage

    @staticmethod
    def _updated_best(
        linkage: npt.NDArray[np.float64], best: npt.NDArray[np.intp], a: int, b: int
    ) -> npt.NDArray[np.intp]:
        """Each row's first best column after a merge changed column a and removed b: the
        same pair as an argmax over the whole matrix, at O(rows) a merge, not O(rows^2)."""
        stale = (best == a) | (best == b)
        stale[a] = True
        best[stale] = linkage[stale].argmax(axis=1)
        column, current = linkage[:, a], linkage[np.arange(len(best)), best]
        best[(column > current) | ((column == current) & (a < best))] = a
        return best


class _SparseLinks:
    """Average linkage over the candidate pairs only, for a component too big for matrices.

    A pair that is not a candidate counts as similarity 0 (it is below the threshold, and
    same-feed pairs are not computed at all), which can only make a merge rarer."""

    def __init__(
        self,
        pairs: _Pairs,
        group_of: npt.NDArray[np.intp],
        component: Sequence[int],
        times: npt.NDArray[np.float64],
        rules: Rules,
    ) -> None:
        local = {group: position for position, group in enumerate(component)}
        self.sizes = [float(np.count_nonzero(group_of == g)) for g in component]
        self.spans = None
        if rules.window_seconds is not None:
            group_times = [times[group_of == g] for g in component]
            self.spans = Spans(
                first=np.array([t.min() for t in group_times]),
                last=np.array([t.max() for t in group_times]),
                window=rules.window_seconds,
            )
        self.sums: list[dict[int, float]] = [{} for _ in component]
        for i, j, value in zip(
            group_of[pairs.first], group_of[pairs.second], pairs.similarity, strict=True
        ):
            a, b = local.get(int(i)), local.get(int(j))
            if a is None or b is None or a == b:
                continue
            self.sums[a][b] = self.sums[a].get(b, 0.0) + float(value)
            self.sums[b][a] = self.sums[a][b]

    def average_linkage(self, threshold: float) -> list[list[int]]:
        """Merge the closest two clusters until no two reach ``threshold``."""
        members: dict[int, list[int]] = {g: [g] for g in range(len(self.sizes))}
        version = [0] * len(self.sizes)
        heap = [(-self._linkage(a, b), a, b, 0, 0) for a in members for b in self.sums[a] if a < b]
        heapq.heapify(heap)
        while heap:
            negative, a, b, version_a, version_b = heapq.heappop(heap)
            if -negative < threshold:
                break
            if (
                a not in members
                or b not in members
                or (version[a], version[b]) != (version_a, version_b)
            ):
                continue  # an entry from before one of them merged
            members[a] += members.pop(b)
            self._merge(a, b)
            version[a] += 1
            for c in self.sums[a]:
                low, high = min(a, c), max(a, c)
                heapq.heappush(heap, (-self._linkage(a, c), low, high, version[low], version[high]))
        return list(members.values())

    def _linkage(self, a: int, b: int) -> float:
        if self.spans is not None and self.spans.too_long(a)[b]:
            return -np.inf
        return self.sums[a][b] / (self.sizes[a] * self.sizes[b])

    def _merge(self, a: int, b: int) -> None:
        self.sizes[a] += self.sizes[b]
        if self.spans is not None:
            self.spans.merge(a, b)
        del self.sums[a][b]
        for c, value in self.sums[b].items():
            if c == a:
                continue
            del self.sums[c][b]
            self.sums[a][c] = self.sums[a].get(c, 0.0) + value
            self.sums[c][a] = self.sums[a][c]
        self.sums[b] = {}


def _to_cluster(group: Sequence[Story]) -> Cluster:
    ordered = sorted(group, key=_lead_first)
    lead = ordered[0]
    return Cluster(cluster_id=lead.story_id, lead=lead, others=tuple(ordered[1:]))


def _lead_first(story: Story) -> tuple[int, bool, float, str]:
    """Most text first (the summary is written from the lead), then earliest, then id."""
    published = story.published_at.timestamp() if story.published_at else 0.0
    return (-len(story.text.split()), story.published_at is None, published, story.story_id)
