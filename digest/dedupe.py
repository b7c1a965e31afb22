"""Dedupe and rank: stories -> clusters (one per real-world story), best first. Pure.

This first version joins stories that share a canonical link or the same headline (case,
punctuation and spacing ignored) from different outlets; the lead is the earliest
published. Ranking favours stories covered by more outlets, then recency.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime

from digest.models import Cluster, Story

_NON_WORD = re.compile(r"[\W_]+")


def cluster_stories(stories: Iterable[Story]) -> tuple[Cluster, ...]:
    """Group the same story from several outlets into one cluster, in first-seen order."""
    groups: list[list[Story]] = []
    by_key: dict[str, int] = {}
    for story in stories:
        keys = [f"url:{story.url}"]
        headline = _NON_WORD.sub(" ", story.title.casefold()).strip()
        if len(headline.split()) >= 4:  # short headlines ("Update", "Live") are not evidence
            keys.append(f"title:{headline}")
        index = next((by_key[k] for k in keys if k in by_key), None)
        if index is None:
            index = len(groups)
            groups.append([])
        groups[index].append(story)
        for key in keys:
            by_key.setdefault(key, index)
    return tuple(_to_cluster(group) for group in groups)


def _to_cluster(group: Sequence[Story]) -> Cluster:
    ordered = sorted(group, key=lambda s: (s.published_at is None, s.published_at or 0))
    lead = ordered[0]
    return Cluster(cluster_id=lead.story_id, lead=lead, others=tuple(ordered[1:]))


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
