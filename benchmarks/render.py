"""Render benchmark: render_digest on a 50-story edition of real feed entries, after warm-up.

The stories are the CodeHollow captures in shared/data/feeds (parsed with digest's own
parse_feed), one cluster each (every fifth also covered by two other outlets, so the "also
in" line renders), summarised by the lead summarizer (60 words; no model), sorted into
sections by feed. One Jinja environment is made first, as the pipeline's process would; each
timed call is the whole render_digest: subject, HTML and text templates, CSS inlining, and
the size check (of the HTML part as sent: quoted-printable) and, on the 200-story row, the
trimming renders. Prints one table ("HTML KB" is the UTF-8 HTML, "sent KB" the part as sent).

    .venv/bin/python benchmarks/render.py
    .venv/bin/python benchmarks/render.py --repeat 100 --warmup 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import dedupe as dedupe_benchmark  # noqa: E402  (benchmarks/ is this script's folder)

from digest.messages import html_part_size  # noqa: E402
from digest.models import (  # noqa: E402
    Cluster,
    Digest,
    DigestItem,
    Story,
    Summary,
)
from digest.render import RenderOptions, make_environment, render_digest  # noqa: E402
from digest.summarize import LeadSummarizer, SummaryRequest  # noqa: E402

TARGET_MS = 50.0
OPTIONS = RenderOptions(
    title="Daily Digest",
    archive_url="https://example.org/digest/{date}.html",
    unsubscribe_url="https://example.org/unsubscribe",
    html_size=html_part_size,  # as the pipeline counts it: the part as sent
)


def load_stories() -> list[Story]:
    return [s for s in dedupe_benchmark.load_stories() if s.text.strip()]


def build(stories: list[Story], count: int) -> Digest:
    """An edition of ``count`` single-story clusters (every fifth with two more outlets)."""
    needed = count + 2 * -(-count // 5)
    if len(stories) < needed:
        sys.exit(
            f"only {len(stories)} stories with text in {dedupe_benchmark.CODEHOLLOW}; need {needed}"
        )
    leads, spare = stories[:count], iter(stories[count:])
    summaries = LeadSummarizer(60).summarize(
        [SummaryRequest(title=s.title, text=s.text, language=s.language) for s in leads]
    )
    items = []
    for n, (lead, text) in enumerate(zip(leads, summaries, strict=True)):
        others = (next(spare), next(spare)) if n % 5 == 0 else ()
        cluster = Cluster(cluster_id=lead.story_id, lead=lead, others=others)
        summary = Summary(cluster_id=lead.story_id, text=text, model_id="lead/words=60")
        items.append(DigestItem(cluster=cluster, summary=summary))
    moment = datetime(2017, 1, 8, 5, tzinfo=UTC)
    return Digest(edition_on=date(2017, 1, 8), generated_at=moment, items=tuple(items))


def measure(digest: Digest, repeat: int, warmup: int) -> tuple[list[float], int, int, int]:
    env = make_environment()
    tz = ZoneInfo("Europe/Istanbul")
    for _ in range(warmup):
        render_digest(digest, env, tz=tz, options=OPTIONS)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        rendered = render_digest(digest, env, tz=tz, options=OPTIONS)
        times.append((time.perf_counter() - start) * 1000)
    html = rendered.html
    return times, len(html.encode()), html_part_size(html), rendered.trimmed_stories


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    stories = load_stories()
    columns = ("stories", "HTML KB", "sent KB", "trimmed", "min ms", "median ms", "p90 ms")
    print("  ".join(f"{c:>9}" for c in columns))
    results = {}
    for count in (50, 200):
        times, size, sent, trimmed = measure(build(stories, count), args.repeat, args.warmup)
        p90 = statistics.quantiles(times, n=10)[-1]
        median = statistics.median(times)
        results[count] = median
        row = (
            count,
            f"{size / 1024:.1f}",
            f"{sent / 1024:.1f}",
            trimmed,
            f"{min(times):.1f}",
            f"{median:.1f}",
            f"{p90:.1f}",
        )
        print("  ".join(f"{value:>9}" for value in row))
    verdict = "PASS" if results[50] <= TARGET_MS else "MISS"
    target = f"{TARGET_MS:.0f} ms"
    print(
        f"target: 50-story render, median after warm-up, inlining included, <= {target}: {verdict}"
    )


if __name__ == "__main__":
    main()
