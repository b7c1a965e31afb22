"""Dedupe and rank: stories -> clusters (one per real-world story), best first. Pure.

Stories join one cluster when they share a canonical link, when two outlets print the
same headline (case, punctuation and spacing ignored), or, given a sentence encoder, when
their headline and lead text mean the same thing. Only pairs from different feeds are
evidence of meaning: two items of one outlet are never compared, so they share a cluster
only when other outlets' coverage of the same event joins them. The semantic step is
average-linkage agglomeration with a cosine threshold, run inside each connected
component of the "some pair at least that similar" graph; average linkage, unlike single
linkage, does not chain A~B~C into one cluster when A and C are unrelated. A story from a
feed with ``dedupe = false`` is never merged with anything.

The lead is the story with the most text (the summary is written from it), then the
earliest. Results do not depend on the input order. Ranking favours stories covered by
more outlets, then recency.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol

import numpy as np
import numpy.typing as npt

from digest.models import Cluster, Story

_NON_WORD = re.compile(r"[\W_]+")
# Measured on the CodeHollow captures of 2017-01-07 (benchmarks/dedupe.py): the highest
# round value at which each multi-outlet event there is one cluster; see README.
DEFAULT_SIMILARITY = 0.52
_LEAD_WORDS = 60  # of the story text, after the headline: what a reader sees first


class Encoder(Protocol):
    """Texts -> L2-normalised embeddings, one row each (``digest.encoder.SentenceEncoder``)."""

    def encode(self, texts: Sequence[str], *, max_length: int = ...) -> npt.NDArray[np.float32]:
        """One unit vector per text."""
        ...


def cluster_stories(
    stories: Iterable[Story],
    *,
    encoder: Encoder | None = None,
    similarity: float = DEFAULT_SIMILARITY,
) -> tuple[Cluster, ...]:
    """Group the same story from several outlets into one cluster, in first-seen order.

    Without an encoder only exact links and headlines join stories; ``similarity`` is the
    cosine (0-1) that headline + lead of two outlets' stories must reach to count as one.
    """
    given = list(stories)
    # A canonical order makes the result (and the encoder's batches) independent of input order.
    order = sorted(range(len(given)), key=lambda i: _sort_key(given[i]))
    items = [given[i] for i in order]
    groups = _exact_groups(items)
    if encoder is not None:
        groups = _semantic_groups(items, groups, encoder, similarity)
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


def _exact_groups(items: Sequence[Story]) -> list[list[int]]:
    """Union stories by identical canonical link (any feeds) or headline (different feeds)."""
    groups = _UnionFind(len(items))
    first_by_key: dict[str, int] = {}
    for index, story in enumerate(items):
        if not story.is_deduped:
            continue
        keys = [f"url:{story.url}"]
        if (headline := _headline_key(story.title)) is not None:
            keys.append(f"title:{headline}")
        for key in keys:
            first = first_by_key.setdefault(key, index)
            # A feed repeating its own headline is a recurring column, not a duplicate.
            if key.startswith("url:") or items[first].feed_url != story.feed_url:
                groups.union(first, index)
    return groups.members()


class _UnionFind:
    """Disjoint sets over 0..count-1; the smallest index is each set's root."""

    def __init__(self, count: int) -> None:
        self.parent = list(range(count))

    def find(self, index: int) -> int:
        while self.parent[index] != index:
            self.parent[index] = self.parent[self.parent[index]]
            index = self.parent[index]
        return index

    def union(self, a: int, b: int) -> None:
        root_a, root_b = sorted((self.find(a), self.find(b)))
        self.parent[root_b] = root_a

    def members(self) -> list[list[int]]:
        by_root: dict[int, list[int]] = {}
        for index in range(len(self.parent)):
            by_root.setdefault(self.find(index), []).append(index)
        return list(by_root.values())


def _semantic_groups(
    items: Sequence[Story], groups: list[list[int]], encoder: Encoder, threshold: float
) -> list[list[int]]:
    """Merge groups whose stories from different feeds mean the same, by average linkage."""
    open_groups = [g for g in groups if items[g[0]].is_deduped]
    closed = [g for g in groups if not items[g[0]].is_deduped]
    if len(open_groups) < 2:
        return groups
    rows = [i for group in open_groups for i in group]
    vectors = encoder.encode([_headline_and_lead(items[i]) for i in rows])
    feed_of = np.array([items[i].feed_url for i in rows])
    cross_feed = feed_of[:, None] != feed_of[None, :]
    similarity = (vectors @ vectors.T).astype(np.float64)
    group_of = np.array([g for g, group in enumerate(open_groups) for _ in group])
    sizes = np.array([len(group) for group in open_groups], dtype=np.float64)
    # Each group's rows are contiguous: their block sums are the groups' pair sums.
    starts = np.concatenate(([0], np.cumsum(sizes[:-1]).astype(np.intp)))
    cross = cross_feed.astype(np.float64)
    links = _Links(
        sums=_block_sums(similarity, starts),
        cross_sums=_block_sums(similarity * cross, starts),
        cross_pairs=_block_sums(cross, starts),
        sizes=sizes,
    )
    edges = np.argwhere(np.triu(cross_feed & (similarity >= threshold), k=1))
    components = _UnionFind(len(open_groups))
    for i, j in edges:
        components.union(int(group_of[i]), int(group_of[j]))
    merged: list[list[int]] = []
    # Two clusters can only average the threshold if some pair of their stories reaches it,
    # so average linkage never needs to look across these components.
    for component in components.members():
        for cluster in links.subset(component).average_linkage(threshold):
            merged.append(sorted(i for g in cluster for i in open_groups[component[g]]))
    return sorted(merged, key=min) + closed


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
    ) -> None:
        self.sums, self.cross_sums, self.cross_pairs = sums, cross_sums, cross_pairs
        self.sizes = sizes

    def subset(self, indices: Sequence[int]) -> _Links:
        pick = np.ix_(indices, indices)
        return _Links(
            sums=self.sums[pick].copy(),
            cross_sums=self.cross_sums[pick].copy(),
            cross_pairs=self.cross_pairs[pick].copy(),
            sizes=self.sizes[list(indices)].copy(),
        )

    def average_linkage(self, threshold: float) -> list[list[int]]:
        """Merge the closest two clusters until no two reach ``threshold``."""
        count = len(self.sizes)
        members = [[g] for g in range(count)]
        alive = np.ones(count, dtype=bool)
        while (pair := self._closest(alive, threshold)) is not None:
            a, b = pair
            for matrix in (self.sums, self.cross_sums, self.cross_pairs):
                matrix[a] += matrix[b]
                matrix[:, a] += matrix[:, b]
            self.sizes[a] += self.sizes[b]
            members[a] += members[b]
            alive[b] = False
        return [members[g] for g in range(count) if alive[g]]

    def _closest(self, alive: npt.NDArray[np.bool_], threshold: float) -> tuple[int, int] | None:
        """The pair with the best linkage: the lower of the cross-feed and the overall mean.

        Only other outlets' stories can vouch for a merge; an outlet's own unrelated items
        can veto it, which stops one story from gluing an outlet's whole feed together.
        """
        usable = (self.cross_pairs > 0) & np.outer(alive, alive)
        np.fill_diagonal(usable, False)
        cross_mean = np.full_like(self.sums, -np.inf)
        np.divide(self.cross_sums, self.cross_pairs, out=cross_mean, where=usable)
        linkage = np.minimum(cross_mean, self.sums / np.outer(self.sizes, self.sizes))
        a, b = np.unravel_index(int(np.argmax(linkage)), linkage.shape)
        if linkage[a, b] < threshold:
            return None
        return (int(min(a, b)), int(max(a, b)))


def _to_cluster(group: Sequence[Story]) -> Cluster:
    ordered = sorted(group, key=_lead_first)
    lead = ordered[0]
    return Cluster(cluster_id=lead.story_id, lead=lead, others=tuple(ordered[1:]))


def _lead_first(story: Story) -> tuple[int, bool, float, str]:
    """Most text first (the summary is written from the lead), then earliest, then id."""
    published = story.published_at.timestamp() if story.published_at else 0.0
    return (-len(story.text.split()), story.published_at is None, published, story.story_id)


def rank_clusters(
    clusters: Iterable[Cluster], now: datetime, limit: int | None = None
) -> tuple[Cluster, ...]:
    """Score clusters (outlets covering the story, then recency) and return the best first."""
    scored = [_with_score(cluster, now) for cluster in clusters]
    scored.sort(key=lambda c: c.score, reverse=True)
    return tuple(scored[:limit] if limit is not None else scored)


def _with_score(cluster: Cluster, now: datetime) -> Cluster:
    outlets = len(cluster.source_names)
    published = cluster.lead.published_at
    age_hours = max(0.0, (now - published).total_seconds() / 3600) if published else 24.0
    freshness = 1.0 / (1.0 + age_hours / 24.0)  # 1 now, 0.5 a day old
    return Cluster(
        cluster_id=cluster.cluster_id,
        lead=cluster.lead,
        others=cluster.others,
        score=round(outlets + freshness, 6),
    )
