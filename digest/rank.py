"""Rank: an edition's clusters -> the ones it keeps, most important first, and its sections
in order. Pure.

A story's importance is, in this order: how many outlets covered it (its cluster's distinct
sources), the highest ``priority`` among their feeds, and how recent its newest report is
(a story with no date at all counts as published at the Unix epoch, older than any news).
Clusters equal on all three keep the order they come in (``cluster_stories``: first seen).

A story's section is its feed's category. Each section keeps its ``max_per_section`` most
important stories, then the edition its ``max_total``; the sections listed in ``order`` come
first, in that order, and the others follow by their most important story.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from digest.models import Cluster, Story

DEFAULT_SECTION = "Top stories"


@dataclass(frozen=True, slots=True, kw_only=True)
class SectionRules:
    """How clusters become sections: the order, the caps, and each feed's priority."""

    order: tuple[str, ...] = ()
    max_per_section: int | None = None
    max_total: int | None = None
    priorities: Mapping[str, int] = field(default_factory=dict)  # feed URL -> priority


def section_of(story: Story) -> str:
    """The section a story appears in: its feed's category."""
    return story.category or DEFAULT_SECTION


def importance(cluster: Cluster, priorities: Mapping[str, int]) -> tuple[int, int, float]:
    """Outlets covering the story, then its best feed priority, then how recent it is."""
    stories = (cluster.lead, *cluster.others)
    priority = max(priorities.get(s.feed_url, 0) for s in stories)
    times = [s.published_at.timestamp() for s in stories if s.published_at]
    return (len(cluster.source_names), priority, max(times, default=0.0))


def arrange_clusters(
    clusters: Sequence[Cluster], rules: SectionRules
) -> tuple[tuple[Cluster, ...], tuple[str, ...]]:
    """The clusters an edition keeps, most important first, and its sections in order."""
    ranked = sorted(clusters, key=lambda c: importance(c, rules.priorities), reverse=True)
    per_section: dict[str, int] = {}
    kept = []
    for cluster in ranked:
        name = section_of(cluster.lead)
        per_section[name] = per_section.get(name, 0) + 1
        if rules.max_per_section is None or per_section[name] <= rules.max_per_section:
            kept.append(cluster)
    kept = kept[: rules.max_total]
    present = list(dict.fromkeys(section_of(c.lead) for c in kept))
    order = [s for s in rules.order if s in present] + [s for s in present if s not in rules.order]
    return tuple(kept), tuple(order)
