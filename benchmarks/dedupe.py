"""Dedupe benchmark: cluster_stories with the bundled MiniLM on the CodeHollow captures.

Parses every file in shared/data/feeds/codehollow__FeedReader (taken on 2017-01-07) with
digest's own parse_feed, loads the encoder (timed, cold), then times embed + cluster at the
shipped threshold, and prints, for a range of thresholds, how many clusters and multi-outlet
clusters result and how many clusters hold each of the three events the day's outlets share
(1 is the goal). Embeddings are reused across thresholds, so only clustering is re-run.

    .venv/bin/python benchmarks/dedupe.py
    .venv/bin/python benchmarks/dedupe.py --thresholds 0.5 0.6 0.75 --show 0.52
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from digest.dedupe import DEFAULT_SIMILARITY, cluster_stories  # noqa: E402
from digest.encoder import SentenceEncoder, load_encoder  # noqa: E402
from digest.errors import FeedError  # noqa: E402
from digest.models import Cluster, FeedSource, FetchResult, Story  # noqa: E402
from digest.parse import parse_feed  # noqa: E402

CODEHOLLOW = REPO.parent / "shared" / "data" / "feeds" / "codehollow__FeedReader"
EVENTS = {
    "airport": re.compile(r"Fort Lauderdale|Florida airport", re.IGNORECASE),
    "hacking": re.compile(r"Putin (directed|ordered)|election hacking", re.IGNORECASE),
    "wall": re.compile(r"border wall", re.IGNORECASE),
}
ENGLISH = ("Rss20IndianExpress.xml", "Rss20JapanToday.xml", "Rss20JapanTimes.xml")


class _Memo:
    """The real encoder, each text embedded once: thresholds re-run only the clustering."""

    def __init__(self, encoder: SentenceEncoder) -> None:
        self.encoder = encoder
        self.cache: dict[str, npt.NDArray[np.float32]] = {}

    def encode(self, texts: Sequence[str], *, max_length: int = 128) -> npt.NDArray[np.float32]:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            vectors = self.encoder.encode(missing, max_length=max_length)
            self.cache.update(zip(missing, vectors, strict=True))
        return np.stack([self.cache[t] for t in texts])


def load_stories() -> list[Story]:
    """Every story of the CodeHollow captures (benchmarks/render.py builds its editions from
    them too); the file name's first word is the story's section."""
    stories: list[Story] = []
    for path in sorted(CODEHOLLOW.iterdir()):
        source = FeedSource(url=str(path), name=path.stem, category=path.stem.split("_")[0])
        result = FetchResult(
            source=source,
            fetched_at=datetime(2017, 1, 8, tzinfo=UTC),
            status=200,
            body=path.read_bytes(),
        )
        try:
            stories.extend(parse_feed(result).stories)
        except FeedError as exc:
            print(f"skipped {path.name}: {exc.message}")
    return stories


def event_clusters(clusters: Sequence[Cluster], pattern: re.Pattern[str]) -> int:
    """How many clusters hold an English story of the event (1: the event is one cluster)."""
    return sum(
        any(Path(s.feed_url).name in ENGLISH and pattern.search(s.title) for s in members)
        for members in ((c.lead, *c.others) for c in clusters)
    )


def row(threshold: float, clusters: Sequence[Cluster], seconds: float) -> str:
    multi = sum(len(c.source_names) > 1 for c in clusters)
    events = " ".join(f"{event_clusters(clusters, p):>7}" for p in EVENTS.values())
    return f"{threshold:>9.2f} {len(clusters):>8} {multi:>6} {events} {seconds * 1000:>10.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--thresholds", type=float, nargs="+", default=[0.45, 0.5, 0.52, 0.55, 0.6, 0.65, 0.75]
    )
    parser.add_argument("--show", type=float, help="list the multi-outlet clusters at this one")
    args = parser.parse_args()

    stories = load_stories()
    feeds = len({s.feed_url for s in stories})
    started = time.perf_counter()
    encoder = load_encoder()
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    shipped = cluster_stories(stories, encoder=encoder, similarity=DEFAULT_SIMILARITY)
    total = time.perf_counter() - started
    memo = _Memo(encoder)
    print(f"{len(stories)} stories from {feeds} feeds")
    print(f"encoder load (cold): {loaded:.2f} s")
    print(
        f"embed + cluster at the shipped {DEFAULT_SIMILARITY}: {total:.2f} s "
        f"({len(shipped)} clusters)"
    )
    cluster_stories(stories, encoder=memo)  # fills the memo
    print()
    print(
        f"{'threshold':>9} {'clusters':>8} {'multi':>6} {' '.join(f'{e:>7}' for e in EVENTS)} "
        f"{'cluster ms':>10}"
    )
    for threshold in args.thresholds:
        started = time.perf_counter()
        clusters = cluster_stories(stories, encoder=memo, similarity=threshold)
        print(row(threshold, clusters, time.perf_counter() - started))
    if args.show is not None:
        print()
        for cluster in cluster_stories(stories, encoder=memo, similarity=args.show):
            if len(cluster.source_names) > 1:
                print(f"* {cluster.lead.source_name}: {cluster.lead.title[:80]}")
                for other in cluster.others:
                    print(f"    {other.source_name}: {other.title[:80]}")


if __name__ == "__main__":
    main()
