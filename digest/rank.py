"""Rank: an edition's clusters -> the ones it keeps, most important first, and its sections
in order. Pure. The one definition of a story's importance and of the edition's reading order.

A story's importance (``importance``) is, in this order:

1. how many outlets covered it: the distinct feeds (by feed URL) among its cluster's stories,
   so five items of one feed count once;
2. the highest ``priority`` among those feeds;
3. how fresh it is: the publication time of its newest dated report. A story none of whose
   reports carries a date is of unknown age: it ranks below every dated story equal to it on
   1 and 2, however old that one (it is never fresher than dated news of today), and such
   stories rank among themselves by when digest first saw them, the latest first (never
   seen: last).

Clusters equal on all three keep the order they come in (``cluster_stories``: first seen).

A story's section is its feed's category. Each section keeps its ``max_per_section`` most
important stories, then the edition its ``max_total``; the sections listed in ``order`` come
first, in that order, and the others follow by their most important story. The reading order
(``reading_order``) is section by section in that order, each section's stories most important
first: the edition's first story in it opens the edition and names it in the subject line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from digest.models import Cluster, Story

DEFAULT_SECTION = "Top stories"

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class SectionRules:
    """How clusters become sections: the order, the caps, and each feed's priority."""

    order: tuple[str, ...] = ()
    max_per_section: int | None = None
    max_total: int | None = None
    priorities: Mapping[str, int] = field(default_factory=dict)  # feed URL -> priority


class Importance(NamedTuple):
    """What ranks a story, compared field by field, greater first (see the module's doc)."""

    outlets: int  # distinct feeds covering it
    priority: int  # the best priority among them
    is_dated: bool  # does any report carry a publication date?
    freshness: float  # POSIX time: the newest report's date, else first seen, else 0


def other_outlets(cluster: Cluster) -> tuple[Story, ...]:
    """The cluster's reports from other outlets, one each: not the lead's feed or name, nor
    one named before (what "also in" lists)."""
    feeds, names = {cluster.lead.feed_url}, {cluster.lead.source_name}
    others = []
    for other in cluster.others:
        if other.feed_url in feeds or other.source_name in names:
            continue
        feeds.add(other.feed_url)
        names.add(other.source_name)
        others.append(other)
    return tuple(others)


def section_of(story: Story) -> str:
    """The section a story appears in: its feed's category."""
    return story.category or DEFAULT_SECTION


def importance(cluster: Cluster, priorities: Mapping[str, int]) -> Importance:
    """Outlets (distinct feeds) covering the story, its best feed priority, its freshness."""
    stories = (cluster.lead, *cluster.others)
    feeds = {s.feed_url for s in stories}
    dated = [s.published_at.timestamp() for s in stories if s.published_at]
    seen = [s.first_seen_at.timestamp() for s in stories if s.first_seen_at]
    return Importance(
        outlets=len(feeds),
        priority=max(priorities.get(url, 0) for url in feeds),
        is_dated=bool(dated),
        freshness=max(dated) if dated else max(seen, default=0.0),
    )


def in_sections(
    items: Sequence[T], section: Callable[[T], str], order: Sequence[str]
) -> list[tuple[str, list[T]]]:
    """The reading order: ``items`` (most important first) grouped by section, the sections
    in ``order`` first and the others as their first item comes, each section's items in the
    order given; no empty section. The first item of the first section opens the edition."""
    groups: dict[str, list[T]] = {name: [] for name in order}
    for item in items:
        groups.setdefault(section(item), []).append(item)
    return [(name, group) for name, group in groups.items() if group]


def reading_order(items: Sequence[T], section: Callable[[T], str], order: Sequence[str]) -> list[T]:
    """``items`` in the order a reader meets them (``in_sections``, flattened)."""
    return [item for _, group in in_sections(items, section, order) for item in group]


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
    sections = in_sections(kept, lambda c: section_of(c.lead), rules.order)
    return tuple(kept), tuple(name for name, _ in sections)
