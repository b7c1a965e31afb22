"""Dedupe benchmark: cluster_stories with the bundled MiniLM over every feed of the corpus.

Parses every file under shared/data/feeds (recursively; many outlets, years and languages)
with digest's own parse_feed and no age limit ([collect].max_age_days = 0), counting the
files that do not parse, then clusters all the stories at once, BEFORE (the old rules: no
window, no language gate, no corroboration, one feed's items joined by any shared link; the
same code with the rules off) and AFTER (the
defaults), and prints for each:

* stories, clusters, multi-outlet clusters (stories of more than one feed);
* merges: clusters of more than one story; and of these, the almost surely wrong ones:
  - ">3 days": its stories' times (published, else first seen) span more than 72 hours;
  - "language": its stories are in different languages, or in one the encoder does not
    read (or unknown) and not all joined by one link or headline: joined by meaning alone;
  - "one feed": all its stories are from one feed, and not all one entry given twice
    (the same link and headline);
* recall on the CodeHollow captures of 2017-01-07 (the English outlets Indian Express, Japan
  Today, Japan Times): for each event, "a/b" = the English outlets carrying it that land in
  its largest cluster / those carrying it (full recall: a = b and one cluster).

Then the threshold is re-measured over a range, on the whole corpus and on the CodeHollow
snapshot alone, with the new rules. Each text is embedded once (optionally kept in a file
between runs with --vectors), so only clustering is re-run; clustering times are the median
of --repeat runs. A story without a date gets the capture time below as "first seen".

    .venv/bin/python benchmarks/dedupe.py
    .venv/bin/python benchmarks/dedupe.py --thresholds 0.5 0.6 --show bad --vectors /tmp/v.npz
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
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

FEEDS = REPO.parent / "shared" / "data" / "feeds"
CODEHOLLOW = FEEDS / "codehollow__FeedReader"
# When each file was captured, so when its undated entries were first seen: CodeHollow's
# captures are of 2017-01-07; others, the newest entry the file dates, else this:
CAPTURED_AT = datetime(2026, 1, 1, tzinfo=UTC)
CAPTURED = {CODEHOLLOW.name: datetime(2017, 1, 8, tzinfo=UTC)}
EVENTS = {
    "airport": re.compile(r"Fort Lauderdale|Florida airport", re.IGNORECASE),
    "hacking": re.compile(r"Putin (directed|ordered)|election hacking", re.IGNORECASE),
    "wall": re.compile(r"border wall", re.IGNORECASE),
}
ENGLISH = ("Rss20IndianExpress.xml", "Rss20JapanToday.xml", "Rss20JapanTimes.xml")
THREE_DAYS = 72 * 3600
BEFORE_SIMILARITY = 0.52  # the default before issue 15


class _Memo:
    """The real encoder, each text embedded once: runs re-do only the clustering."""

    def __init__(self, encoder: SentenceEncoder, vectors: Path | None) -> None:
        self.encoder = encoder
        self.languages = encoder.languages
        self.file = vectors
        self.cache: dict[str, npt.NDArray[np.float32]] = {}
        if vectors is not None and vectors.exists():
            with np.load(vectors) as saved:
                self.cache = dict(zip(saved["texts"].tolist(), saved["vectors"], strict=True))

    def encode(self, texts: Sequence[str], *, max_length: int = 128) -> npt.NDArray[np.float32]:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            vectors = self.encoder.encode(missing, max_length=max_length)
            self.cache.update(zip(missing, vectors, strict=True))
        return np.stack([self.cache[t] for t in texts])

    def save(self) -> None:
        if self.file is not None:
            texts = list(self.cache)
            np.savez(self.file, texts=np.array(texts), vectors=np.stack(list(self.cache.values())))


def load_stories() -> list[Story]:
    """Every story of the CodeHollow captures (benchmarks/render.py builds its editions from
    them); the file name's first word is the story's section."""
    stories: list[Story] = []
    for path in sorted(CODEHOLLOW.iterdir()):
        source = FeedSource(url=str(path), name=path.stem, category=path.stem.split("_")[0])
        result = FetchResult(
            source=source, fetched_at=CAPTURED[CODEHOLLOW.name], status=200, body=path.read_bytes()
        )
        try:
            stories.extend(parse_feed(result).stories)
        except FeedError as exc:
            print(f"skipped {path.name}: {exc.message}")
    return stories


def load_corpus(root: Path) -> tuple[list[Story], int, int]:
    """(stories, files parsed, files skipped) of every file under ``root``."""
    stories: list[Story] = []
    parsed = skipped = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = str(path.relative_to(FEEDS))
        source = FeedSource(url=str(path), name=name, category=name.split("/")[0])
        result = FetchResult(
            source=source, fetched_at=CAPTURED_AT, status=200, body=path.read_bytes()
        )
        try:
            stories.extend(_first_seen(parse_feed(result).stories, name.split("/")[0]))
            parsed += 1
        except FeedError:
            skipped += 1
    return stories, parsed, skipped


def _first_seen(stories: Sequence[Story], repository: str) -> list[Story]:
    """The stories with their undated ones (published_at None, or the fetch time given to
    parse_feed) first seen when the file was captured, and not published then."""
    dated = [s.published_at for s in stories if s.published_at not in (None, CAPTURED_AT)]
    captured = CAPTURED.get(repository) or max(dated, default=CAPTURED_AT)
    return [
        s
        if s.published_at not in (None, CAPTURED_AT)
        else replace(s, published_at=None, first_seen_at=captured)
        for s in stories
    ]


def _members(cluster: Cluster) -> tuple[Story, ...]:
    return (cluster.lead, *cluster.others)


def _seconds(story: Story) -> float:
    moment = story.published_at or story.first_seen_at
    return moment.timestamp() if moment else float("nan")


def is_apart(members: Sequence[Story]) -> bool:
    times = [_seconds(s) for s in members]
    return bool(np.nanmax(times) - np.nanmin(times) > THREE_DAYS) if len(times) > 1 else False


def is_across_languages(members: Sequence[Story], languages: frozenset[str]) -> bool:
    found = {s.language for s in members}
    if len(found) > 1:
        return True
    if found <= languages:
        return False
    return len(cluster_stories(members)) > 1  # not one link or headline: joined by meaning


def is_one_feed(members: Sequence[Story]) -> bool:
    """All of one feed, and not one entry given twice (the same link and headline)."""
    entries = {(s.url, s.title.casefold()) for s in members}
    return len({s.feed_url for s in members}) == 1 and len(entries) > 1


@dataclass(frozen=True)
class Measure:
    clusters: int
    multi: int
    merges: int
    apart: int
    language: int
    one_feed: int
    recall: tuple[str, ...]

    def cells(self) -> str:
        counts = (self.clusters, self.multi, self.merges, self.apart, self.language, self.one_feed)
        numbers = " ".join(f"{n:>8}" for n in counts)
        return f"{numbers} " + " ".join(f"{r:>7}" for r in self.recall)


HEADER = (
    f"{'clusters':>8} {'multi':>8} {'merges':>8} {'>3 days':>8} {'language':>8} "
    f"{'one feed':>8} " + " ".join(f"{e:>7}" for e in EVENTS)
)


def measure(clusters: Sequence[Cluster], languages: frozenset[str]) -> Measure:
    merged = [_members(c) for c in clusters if c.others]
    return Measure(
        clusters=len(clusters),
        multi=sum(len({s.feed_url for s in m}) > 1 for m in merged),
        merges=len(merged),
        apart=sum(is_apart(m) for m in merged),
        language=sum(is_across_languages(m, languages) for m in merged),
        one_feed=sum(is_one_feed(m) for m in merged),
        recall=tuple(recall(clusters, pattern) for pattern in EVENTS.values()),
    )


def recall(clusters: Sequence[Cluster], pattern: re.Pattern[str]) -> str:
    """English outlets of the event in its largest cluster / English outlets carrying it,
    with "*" when the event is split over more than one cluster."""

    def outlets(members: Sequence[Story]) -> set[str]:
        return {
            Path(s.feed_url).name
            for s in members
            if Path(s.feed_url).parent == CODEHOLLOW
            and Path(s.feed_url).name in ENGLISH
            and pattern.search(s.title)
        }

    holding = [found for c in clusters if (found := outlets(_members(c)))]
    carrying = set().union(*holding) if holding else set()
    best = max((len(found) for found in holding), default=0)
    return f"{best}/{len(carrying)}" + ("*" if len(holding) > 1 else "")


def timed(run: Callable[[], tuple[Cluster, ...]], repeat: int) -> tuple[tuple[Cluster, ...], float]:
    """The result and the median seconds of ``repeat`` runs."""
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - started)
    return result, statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        default=[0.45, 0.5, 0.52, 0.53, 0.54, 0.55, 0.6, 0.65, 0.7],
    )
    parser.add_argument("--repeat", type=int, default=3, help="clustering runs timed (median)")
    parser.add_argument("--vectors", type=Path, help="keep the embeddings in this .npz file")
    parser.add_argument("--show", choices=["bad", "all"], help="list AFTER's wrong (or all) merges")
    args = parser.parse_args()

    stories, parsed, skipped = load_corpus(FEEDS)
    codehollow = [s for s in stories if Path(s.feed_url).parent == CODEHOLLOW]
    print(
        f"{len(stories)} stories from {len({s.feed_url for s in stories})} feeds "
        f"({parsed} files parsed, {skipped} skipped: no usable entries or not a feed); "
        f"CodeHollow: {len(codehollow)} stories"
    )
    started = time.perf_counter()
    encoder = load_encoder()
    memo = _Memo(encoder, args.vectors)
    cluster_stories(stories, encoder=memo, window_hours=None, by_language=False)  # fills it
    memo.save()
    print(f"encoder load + embedding (once, cached after): {time.perf_counter() - started:.1f} s")
    languages = encoder.languages

    def old(items: Sequence[Story], threshold: float) -> tuple[Cluster, ...]:
        return cluster_stories(
            items,
            encoder=memo,
            similarity=threshold,
            window_hours=None,
            by_language=False,
            corroborate=False,
            one_feed_links=True,
        )

    def new(items: Sequence[Story], threshold: float) -> tuple[Cluster, ...]:
        return cluster_stories(items, encoder=memo, similarity=threshold)

    print(
        f"\nWhole corpus: BEFORE at {BEFORE_SIMILARITY}, AFTER at {DEFAULT_SIMILARITY} "
        f"(clustering: median of {args.repeat} runs)"
    )
    print(f"{'':>8} {HEADER} {'cluster s':>9}")
    before, before_s = timed(lambda: old(stories, BEFORE_SIMILARITY), args.repeat)
    after, after_s = timed(lambda: new(stories, DEFAULT_SIMILARITY), args.repeat)
    print(f"{'BEFORE':>8} {measure(before, languages).cells()} {before_s:>9.2f}")
    print(f"{'AFTER':>8} {measure(after, languages).cells()} {after_s:>9.2f}")

    for title, items in (("Whole corpus", stories), ("CodeHollow 2017-01-07", codehollow)):
        print(f"\n{title}, new rules, by threshold")
        print(f"{'thresh.':>8} {HEADER}")
        for threshold in args.thresholds:
            print(f"{threshold:>8.2f} {measure(new(items, threshold), languages).cells()}")

    if args.show:
        print(f"\nAFTER: {'every merge' if args.show == 'all' else 'the merges counted as wrong'}")
        _show(after, languages, every=args.show == "all")


def _show(clusters: Sequence[Cluster], languages: frozenset[str], *, every: bool) -> None:
    """Each merge counted as wrong (with ``every``, each merge), story by story."""
    for cluster in clusters:
        members = _members(cluster)
        flags = [
            name
            for name, bad in (
                (">3 days", is_apart(members)),
                ("language", is_across_languages(members, languages)),
                ("one feed", is_one_feed(members)),
            )
            if bad
        ]
        if not cluster.others or not (flags or every):
            continue
        print(f"* {' '.join(flags) or 'ok'}")
        for story in members:
            moment = story.published_at or story.first_seen_at
            when = moment.date() if moment else "-"
            name = str(Path(story.feed_url).relative_to(FEEDS))[:40]
            print(f"    {when} {story.language} {name}: {story.title[:50]} <{story.url[:60]}>")


if __name__ == "__main__":
    main()
