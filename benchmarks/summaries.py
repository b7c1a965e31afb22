"""Summary-quality benchmark: ROUGE of lead, extractive, LexRank and TextRank on the dev set.

Reads ``shared/data/eval/news_summ_dev.jsonl``. Every story's text is cleaned with
``digest.clean.clean_text(text, title=title)``, as the digest does, and every system gets the
same word budget per source: the median length in words of that source's references (all of
them, over the whole file, so ``--limit`` does not move it). ``lead`` and ``extractive`` are
built through ``digest.summarize`` (``LeadSummarizer(words)``, ``ExtractiveSummarizer(words)``);
LexRank and TextRank are sumy's, fed digest's own sentences (``split_sentences``) and a regex
word tokenizer, so no NLTK data is needed. Each peer's sentence ranking is cut to the budget by
digest's ``fit_to_budget``, the rule the extractive summarizer uses: whole sentences in rank
order while they fit (with the sentence before one that refers back; never a cut sentence, a
fragment or a citation), printed in reading order; see its docstring for an overlong one.

Each system runs in its own fresh child process (one after the other, so they do not share the
2 cores): it reports its summaries, articles/s (``summarize`` calls only: tokenizer, encoder and
selection; cleaning and model load excluded), its peak RSS (``VmHWM``) and, for extractive, the
cold model load (the transformers import included; the torch import timed beside it). The
parent scores ROUGE-1/2/Lsum F1
with rouge-score (Porter stemming); with several references a story scores the best one per
metric. It also checks each summary for markup, calls to action and text not in its story.

    .venv/bin/python benchmarks/summaries.py                       # the whole dev set, ~3 min
    .venv/bin/python benchmarks/summaries.py --limit 20 --systems lead extractive
    .venv/bin/python benchmarks/summaries.py --sources xsum_test cnndm_realsumm
    .venv/bin/python benchmarks/summaries.py --split    # also ROUGE-2 on each half of the set,
                                                        # with a bootstrap interval of the gap
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# ``--digest-src DIR`` (a ``git archive COMMIT digest`` unpacked in DIR) measures another commit.
_SRC = sys.argv[sys.argv.index("--digest-src") + 1] if "--digest-src" in sys.argv else str(REPO)
sys.path.insert(0, _SRC)

DEV = REPO.parent / "shared" / "data" / "eval" / "news_summ_dev.jsonl"
SOURCES = ("bbc_news_summary", "xsum_test", "cnndm_summeval", "cnndm_realsumm", "zhang2023_writers")
SYSTEMS = ("lead", "extractive", "lexrank", "textrank")
METRICS = ("rouge1", "rouge2", "rougeLsum")
# Sources whose stories are CNN/Daily Mail or BBC news with lead-heavy references: the
# target is to beat lead on ROUGE-2 there. zhang2023_writers mixes CNN/DM and XSum stories.
BEAT_LEAD = ("bbc_news_summary", "cnndm_summeval", "cnndm_realsumm")
TARGET_RATE, TARGET_LOAD_S, TARGET_RSS_MB = 20.0, 3.0, 1024.0

_MARKUP = re.compile(r"<[A-Za-z/!][^>]*>|&[a-z]+;|&#\d+;")
# BBC references run sentences together ("thought.A common"); rougeLsum needs them apart.
_GLUED = re.compile(r"(?<=[a-z0-9%\"'][.!?])(?=[A-Z])")


# Data


def load_rows(sources: Sequence[str], limit: int | None) -> list[dict[str, Any]]:
    """The dev set's stories of ``sources``, the first ``limit`` of each."""
    rows = [json.loads(line) for line in DEV.read_text(encoding="utf-8").splitlines()]
    kept: list[dict[str, Any]] = []
    for source in sources:
        kept.extend([r for r in rows if r["source"] == source][:limit])
    return kept


def references(row: dict[str, Any]) -> list[str]:
    return list(row.get("references") or [row["reference"]])


def budgets() -> dict[str, int]:
    """Per source: the median reference length in words, over every reference in the file."""
    lengths: dict[str, list[int]] = defaultdict(list)
    for line in DEV.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        lengths[row["source"]].extend(len(ref.split()) for ref in references(row))
    return {source: round(statistics.median(n)) for source, n in lengths.items()}


def cleaned(row: dict[str, Any]) -> str:
    from digest.clean import clean_text

    return clean_text(row["text"], title=row["title"] or None)


# The systems (run in a child process)


def _digest_system(name: str) -> Callable[[int], Callable[[Sequence[Any]], list[str]]]:
    from digest.summarize import ExtractiveSummarizer, LeadSummarizer

    cls = ExtractiveSummarizer if name == "extractive" else LeadSummarizer
    return lambda words: cls(words).summarize


class _Words:
    """sumy's tokenizer interface without NLTK data: words are runs of letters and digits."""

    _WORD = re.compile("[^\\W_]+(?:['\u2019][^\\W_]+)*")

    language = "english"

    def to_sentences(self, paragraph: str) -> list[str]:
        from digest.summarize import split_sentences

        return split_sentences(paragraph)

    def to_words(self, sentence: str) -> list[str]:
        return self._WORD.findall(sentence)


def _sumy_system(name: str) -> Callable[[int], Callable[[Sequence[Any]], list[str]]]:
    from sumy.nlp.stemmers import Stemmer
    from sumy.summarizers.lex_rank import LexRankSummarizer
    from sumy.summarizers.text_rank import TextRankSummarizer
    from sumy.utils import get_stop_words

    ranker = (LexRankSummarizer if name == "lexrank" else TextRankSummarizer)(Stemmer("english"))
    ranker.stop_words = get_stop_words("english")

    def build(words: int) -> Callable[[Sequence[Any]], list[str]]:
        return lambda requests: [_sumy_one(ranker, r.text, words) for r in requests]

    return build


def _sumy_one(ranker: Any, text: str, words: int) -> str:
    from sumy.models.dom import ObjectDocumentModel, Paragraph, Sentence

    from digest.summarize import fit_to_budget, split_sentences, word_count

    if word_count(text) <= words:
        return " ".join(text.split())  # as digest's summarizers do
    sentences = split_sentences(text)
    tokenizer = _Words()
    document = ObjectDocumentModel([Paragraph([Sentence(s, tokenizer) for s in sentences])])
    ranked: list[int] = []

    def keep_ranking(infos: list[Any]) -> list[Any]:
        # sumy hands its count callable the sentences sorted best first: keep that order.
        ranked.extend(info.order for info in infos)
        return infos

    ranker(document, keep_ranking)
    return fit_to_budget(sentences, ranked, words) if ranked else ""


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_child(system: str, sources: Sequence[str], limit: int | None, out: Path) -> None:
    """Summarise the rows with one system and write summaries and measurements to ``out``."""
    # The torch import is the framework starting, which any model pays once per process:
    # timed on its own, and the model load (transformers, tokenizer, weights) after it.
    started = time.perf_counter()
    import torch  # noqa: F401

    torch_s = time.perf_counter() - started
    started = time.perf_counter()
    from digest.summarize import SummaryRequest

    load_s = None
    if system == "extractive":
        from digest.encoder import load_encoder

        load_encoder()
        load_s = time.perf_counter() - started
    rows = load_rows(sources, limit)
    requests = [SummaryRequest(title=r["title"], text=cleaned(r)) for r in rows]
    system_of = _digest_system if system in ("lead", "extractive") else _sumy_system
    build, limits = system_of(system), budgets()
    summaries: list[str] = []
    seconds = 0.0
    for source in sources:
        batch = [q for q, r in zip(requests, rows, strict=True) if r["source"] == source]
        summarize = build(limits[source])
        start = time.perf_counter()
        summaries.extend(summarize(batch))
        seconds += time.perf_counter() - start
    result = {"summaries": summaries, "seconds": seconds, "rss_mb": _peak_rss_mb()}
    out.write_text(json.dumps({**result, "load_s": load_s, "torch_s": torch_s}), encoding="utf-8")


# Scoring (parent)


def _lsum(text: str) -> str:
    from digest.summarize import split_sentences

    return "\n".join(split_sentences(_GLUED.sub(" ", text)))


def score(rows: Sequence[dict[str, Any]], summaries: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean ROUGE F1 x 100 per source and metric; the best reference counts."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(METRICS), use_stemmer=True)
    totals: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row, summary in zip(rows, summaries, strict=True):
        per_ref = [scorer.score(_lsum(ref), _lsum(summary)) for ref in references(row)]
        for metric in METRICS:
            totals[row["source"]][metric].append(max(s[metric].fmeasure for s in per_ref))
    return {
        source: {m: 100 * statistics.fmean(v) for m, v in by_metric.items()}
        for source, by_metric in totals.items()
    }


def problems(rows: Sequence[dict[str, Any]], summaries: Sequence[str]) -> dict[str, int]:
    """Counts of summaries with markup, a call to action, or text that is not a sequence of
    their own story's sentences (the last one possibly cut)."""
    from digest.clean import is_call_to_action
    from digest.summarize import split_sentences

    found = {"new markup": 0, "call to action": 0, "not from story": 0}
    for row, summary in zip(rows, summaries, strict=True):
        story = cleaned(row)
        found["new markup"] += bool(_MARKUP.search(summary)) and not _MARKUP.search(story)
        found["call to action"] += any(is_call_to_action(s) for s in split_sentences(summary))
        found["not from story"] += not _from_story(summary, story)
    return found


def _from_story(summary: str, story: str) -> bool:
    from digest.summarize import split_sentences

    rest = summary.removesuffix("…")
    if rest == " ".join(story.split()):
        return True
    sentences = split_sentences(story)
    for sentence in sentences:
        if rest.startswith(sentence):
            rest = rest[len(sentence) :].lstrip()
    return not rest or (summary.endswith("…") and any(s.startswith(rest) for s in sentences))


# Report


def run_system(system: str, sources: Sequence[str], limit: int | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out.json"
        command = [sys.executable, __file__, "--child", system, "--out", str(out)]
        command += ["--sources", *sources, "--digest-src", _SRC]
        command += ["--limit", str(limit)] if limit else []
        subprocess.run(command, check=True)
        return dict(json.loads(out.read_text(encoding="utf-8")))


def print_report(
    rows: Sequence[dict[str, Any]], results: dict[str, dict[str, Any]], sources: Sequence[str]
) -> dict[str, dict[str, dict[str, float]]]:
    limits = budgets()
    scores = {name: score(rows, r["summaries"]) for name, r in results.items()}
    counts = {s: sum(r["source"] == s for r in rows) for s in sources}
    print(
        f"{'source':<18} {'n':>4} {'words':>5}  {'system':<10} {'R-1':>6} {'R-2':>6} {'R-Lsum':>6}"
    )
    for source in sources:
        for name in results:
            rouge = scores[name][source]
            print(
                f"{source:<18} {counts[source]:>4} {limits[source]:>5}  {name:<10} "
                f"{rouge['rouge1']:>6.2f} {rouge['rouge2']:>6.2f} {rouge['rougeLsum']:>6.2f}"
            )
    print()
    header = f"{'system':<10} {'articles/s':>10} {'torch import s':>14} {'load s':>7}"
    print(f"{header} {'peak RSS MB':>11}  problems")
    for name, r in results.items():
        load = f"{r['load_s']:.2f}" if r["load_s"] is not None else "-"
        found = ", ".join(f"{k} {v}" for k, v in problems(rows, r["summaries"]).items())
        rate = len(rows) / r["seconds"]
        row = f"{name:<10} {rate:>10.1f} {r['torch_s']:>14.2f} {load:>7}"
        print(f"{row} {r['rss_mb']:>11.0f}  {found}")
    return scores


def print_targets(
    scores: dict[str, dict[str, dict[str, float]]], results: dict[str, Any], n: int
) -> None:
    if "extractive" not in scores:
        return
    ours = scores["extractive"]
    for peer in ("lead", "lexrank", "textrank"):
        if peer not in scores:
            continue
        sources = [s for s in ours if peer != "lead" or s in BEAT_LEAD]
        missed = [s for s in sources if ours[s]["rouge2"] <= scores[peer][s]["rouge2"]]
        verdict = "PASS" if not missed else "MISS (" + ", ".join(missed) + ")"
        print(f"target: extractive R-2 > {peer} on {', '.join(sources)}: {verdict}")
    r = results["extractive"]
    checks = [
        ("articles/s", n / r["seconds"] >= TARGET_RATE, f">= {TARGET_RATE:.0f}"),
        (
            "model load s (after import torch)",
            r["load_s"] <= TARGET_LOAD_S,
            f"<= {TARGET_LOAD_S:.0f}",
        ),
        ("peak RSS MB", r["rss_mb"] <= TARGET_RSS_MB, f"<= {TARGET_RSS_MB:.0f}"),
    ]
    for what, ok, bound in checks:
        print(f"target: extractive {what} {bound}: {'PASS' if ok else 'MISS'}")


def half(row: dict[str, Any]) -> str:
    """The story's half of the dev set, "A" or "B", by a hash of its id: the extractive
    summarizer's weights are tuned on A, and B shows whether they carry over."""
    return "AB"[hashlib.sha256(row["id"].encode()).digest()[0] % 2]


def print_split(
    rows: Sequence[dict[str, Any]], results: dict[str, dict[str, Any]], sources: Sequence[str]
) -> None:
    """ROUGE-2 of every system per source on each half of the rows, and, with lead and
    extractive, a 95% paired-bootstrap interval of extractive's R-2 minus lead's."""
    paired = "lead" in results and "extractive" in results
    gaps = rouge2_gaps(rows, results) if paired else []
    header = f"{'half':<4} {'source':<18} {'n':>4}  " + " ".join(f"{n:>10}" for n in results)
    print(header + ("  extractive - lead, 95% CI" if paired else ""))
    for which in "AB":
        kept = [i for i, row in enumerate(rows) if half(row) == which]
        subset = [rows[i] for i in kept]
        scores = {n: score(subset, [r["summaries"][i] for i in kept]) for n, r in results.items()}
        for source in sources:
            count = sum(row["source"] == source for row in subset)
            cells = " ".join(f"{scores[n][source]['rouge2']:>10.2f}" for n in results)
            if paired:
                mine = [gaps[i] for i in kept if rows[i]["source"] == source]
                low, high = bootstrap_interval(mine)
                cells += f"  {statistics.fmean(mine):+6.2f} [{low:+6.2f}, {high:+6.2f}]"
            print(f"{which:<4} {source:<18} {count:>4}  {cells}")


def rouge2_gaps(rows: Sequence[dict[str, Any]], results: dict[str, dict[str, Any]]) -> list[float]:
    """Per story: extractive's ROUGE-2 F1 x 100 minus lead's (best reference each)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge2"], use_stemmer=True)

    def best(row: dict[str, Any], summary: str) -> float:
        return max(
            scorer.score(_lsum(ref), _lsum(summary))["rouge2"].fmeasure for ref in references(row)
        )

    pairs = zip(rows, results["extractive"]["summaries"], results["lead"]["summaries"], strict=True)
    return [100 * (best(row, ours) - best(row, lead)) for row, ours, lead in pairs]


def bootstrap_interval(
    values: Sequence[float], rounds: int = 10_000, seed: int = 16
) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of the mean of ``values`` resampled with replacement."""
    import numpy as np

    generator = np.random.default_rng(seed)
    samples = generator.choice(np.asarray(values), size=(rounds, len(values)), replace=True)
    low, high = np.percentile(samples.mean(axis=1), [2.5, 97.5])
    return float(low), float(high)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N stories per source")
    parser.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES))
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--digest-src", help="measure the digest/ package in this folder")
    parser.add_argument(
        "--split", action="store_true", help="also print ROUGE-2 on each half (A, B) of the set"
    )
    parser.add_argument("--child", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args.child, args.sources, args.limit, args.out)
        return
    rows = load_rows(args.sources, args.limit)
    results = {s: run_system(s, args.sources, args.limit) for s in args.systems}
    scores = print_report(rows, results, args.sources)
    print()
    print_targets(scores, results, len(rows))
    if args.split:
        print()
        print_split(rows, results, args.sources)


if __name__ == "__main__":
    main()
