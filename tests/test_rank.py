"""Rank: which clusters an edition keeps, most important first, and its sections in order."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from digest.models import Cluster, Story
from digest.rank import SectionRules, arrange_clusters, importance
from tests.conftest import make_story

NOW = datetime(2024, 3, 1, 5, 30, tzinfo=UTC)


def _story(n: int, *, source: str, category: str | None, hours_ago: float) -> Story:
    return make_story(
        n,
        feed_url=f"https://{source.lower()}.example/feed",
        source_name=source,
        category=category,
        url=f"https://{source.lower()}.example/story/{n}",
        published_at=NOW - timedelta(hours=hours_ago),
        text="",
        html="",
    )


def _cluster(n: int, section: str | None, outlets: int = 1, hours_ago: float = 0) -> Cluster:
    stories = [
        _story(n * 10 + i, source=f"Outlet{n}x{i}", category=section, hours_ago=hours_ago)
        for i in range(outlets)
    ]
    return Cluster(cluster_id=f"c{n}", lead=stories[0], others=tuple(stories[1:]))


def test_ranking_puts_stories_covered_by_more_outlets_first() -> None:
    newest_single = _cluster(1, None, outlets=1, hours_ago=0)
    older_pair = _cluster(2, None, outlets=2, hours_ago=20)
    ranked, _ = arrange_clusters([newest_single, older_pair], SectionRules())
    assert [len(c.source_names) for c in ranked] == [2, 1]
    assert importance(ranked[0], {}) > importance(ranked[1], {})


def test_clusters_are_ordered_by_outlets_then_feed_priority_then_recency() -> None:
    old_wide = _cluster(1, "World", outlets=3, hours_ago=20)
    new_single = _cluster(2, "World", hours_ago=0)
    old_single = _cluster(3, "World", hours_ago=10)
    ranked, _ = arrange_clusters([new_single, old_single, old_wide], SectionRules())
    assert [c.cluster_id for c in ranked] == ["c1", "c2", "c3"]
    favoured = SectionRules(priorities={old_single.lead.feed_url: 5})
    ranked, _ = arrange_clusters([new_single, old_single, old_wide], favoured)
    assert [c.cluster_id for c in ranked] == ["c1", "c3", "c2"]


def test_sections_follow_the_settings_then_importance_with_caps() -> None:
    clusters = [_cluster(n, "Tech" if n < 5 else "World", hours_ago=n) for n in range(1, 9)]
    kept, order = arrange_clusters(clusters, SectionRules(max_per_section=3))
    assert order == ("Tech", "World")  # Tech has the most recent story
    assert [c.cluster_id for c in kept] == ["c1", "c2", "c3", "c5", "c6", "c7"]
    kept, order = arrange_clusters(
        clusters, SectionRules(order=("World", "Sport"), max_per_section=3, max_total=4)
    )
    assert order == ("World", "Tech") and [c.cluster_id for c in kept] == ["c1", "c2", "c3", "c5"]


def _from(n: int, outlet: str, *, hours_ago: float = 0, section: str | None = None) -> Story:
    return _story(n, source=outlet, category=section, hours_ago=hours_ago)


def test_one_outlet_counts_once_however_many_of_its_items_a_story_holds() -> None:
    # issue 15: five Indian Express items and one Japan Times item are two outlets, not six
    express = [_from(n, "IndianExpress") for n in range(1, 6)]
    busy = Cluster(cluster_id="busy", lead=express[0], others=(*express[1:], _from(6, "JT")))
    wide = Cluster(
        cluster_id="wide",
        lead=_from(7, "Reuters", hours_ago=5),
        others=(_from(8, "BBC", hours_ago=5), _from(9, "AP", hours_ago=5)),
    )
    assert busy.source_names == ("IndianExpress", "JT")
    assert importance(busy, {}).outlets == 2 and importance(wide, {}).outlets == 3
    ranked, _ = arrange_clusters([busy, wide], SectionRules())
    assert [c.cluster_id for c in ranked] == ["wide", "busy"]


def test_outlets_are_told_apart_by_feed_not_by_name() -> None:
    lead = _from(1, "Herald")
    twin = replace(_from(2, "Herald"), feed_url="https://herald.example/world/feed")
    assert importance(Cluster(cluster_id="c", lead=lead, others=(twin,)), {}).outlets == 2


def test_an_undated_story_ranks_below_dated_news_and_by_when_it_was_first_seen() -> None:
    # issue 15: nine undated analyst notes won a section on "recency" over dated news
    def undated(n: int, seen_hours_ago: float) -> Cluster:
        story = replace(
            _from(n, f"Notes{n}"),
            published_at=None,
            first_seen_at=NOW - timedelta(hours=seen_hours_ago),
        )
        return Cluster(cluster_id=f"u{n}", lead=story)

    dated_old = Cluster(cluster_id="d", lead=_from(9, "Mint", hours_ago=30))
    ranked, _ = arrange_clusters(
        [undated(1, 5), undated(2, 0), dated_old, undated(3, 1)], SectionRules()
    )
    assert [c.cluster_id for c in ranked] == ["d", "u2", "u3", "u1"]
    never_seen = Cluster(cluster_id="n", lead=replace(_from(4, "X"), published_at=None))
    assert importance(never_seen, {}) < importance(undated(5, 50), {})
    # a cluster with one dated report is as fresh as that report
    mixed = Cluster(cluster_id="m", lead=undated(6, 0).lead, others=(_from(7, "Y", hours_ago=2),))
    assert importance(mixed, {}).is_dated
    assert importance(mixed, {}).freshness == (NOW - timedelta(hours=2)).timestamp()
