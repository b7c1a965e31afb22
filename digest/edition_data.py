"""Edition data: a built edition -> plain data (dicts, lists, text, numbers, null) for
``digest preview --json``. Pure.

It holds the stories the email holds (the ones the size cap left out are counted, not
listed), in reading order: by section, as ``Digest.section_order`` sets them, each section
most important first. Times are ISO 8601 in UTC; a story without a publication date has
``"published": null``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from digest.models import Cluster, Digest, DigestItem, FeedFailure, FilterCount, RenderedDigest
from digest.rank import importance, other_outlets, section_of


def edition_data(
    digest: Digest, rendered: RenderedDigest, *, title: str, priorities: Mapping[str, int]
) -> dict[str, Any]:
    """The edition as data: what it is, its sections and stories, and what was left out."""
    shown = digest.items[: len(digest.items) - rendered.trimmed_stories]
    return {
        "title": title,
        "date": digest.edition_on.isoformat(),
        "subject": rendered.subject,
        "generated_at": _iso(digest.generated_at),
        "story_count": len(shown),
        "trimmed_stories": rendered.trimmed_stories,
        "sections": _sections(shown, digest.section_order, priorities),
        "filters": [_filter_count(count) for count in digest.filter_counts],
        "failed_feeds": [_failure(failure) for failure in digest.failed_feeds],
    }


def _sections(
    items: Sequence[DigestItem], order: Sequence[str], priorities: Mapping[str, int]
) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {name: [] for name in order}
    for item in items:
        groups.setdefault(section_of(item.cluster.lead), []).append(_story(item, priorities))
    return [{"name": name, "stories": stories} for name, stories in groups.items() if stories]


def _story(item: DigestItem, priorities: Mapping[str, int]) -> dict[str, Any]:
    lead = item.cluster.lead
    return {
        "headline": lead.title,
        "url": lead.url,
        "source": lead.source_name,
        "feed_url": lead.feed_url,
        "also_in": _also_in(item.cluster),
        "published": _iso(lead.published_at),
        "summary": item.summary.text,
        "image": lead.image_url,
        "importance": _importance(item.cluster, priorities),
    }


def _also_in(cluster: Cluster) -> list[dict[str, str]]:
    """The other outlets, once each, as the email names them after "also in"."""
    return [{"source": other.source_name, "url": other.url} for other in other_outlets(cluster)]


def _importance(cluster: Cluster, priorities: Mapping[str, int]) -> dict[str, Any]:
    """``digest.rank.importance``, each part named."""
    rank = importance(cluster, priorities)
    known_at = datetime.fromtimestamp(rank.freshness, UTC) if rank.freshness else None
    return {
        "outlets": rank.outlets,
        "priority": rank.priority,
        # An undated story ranks by when it was first seen, never as if published then.
        "newest_published": _iso(known_at) if rank.is_dated else None,
        "first_seen": None if rank.is_dated else _iso(known_at),
    }


def _filter_count(count: FilterCount) -> dict[str, Any]:
    return {
        "filter": count.label,
        "rule": count.rule,
        "feed_url": count.feed_url,
        "removed": count.removed,
    }


def _failure(failure: FeedFailure) -> dict[str, str]:
    return {"name": failure.name, "url": failure.feed_url, "error": failure.error}


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None
