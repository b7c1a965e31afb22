"""Per-language summary benchmark: every story of the corpus, summarised BEFORE and AFTER.

Parses every file under shared/data/feeds as benchmarks/dedupe.py does (``load_corpus``:
digest's own parse_feed, so each story has its language, ``Story.language``), takes each
story's text as an edition does (``split_headline``) and summarises all of them with
``lead`` and ``extractive`` at ``--words`` (60, the default budget), twice, each in its own
child process: BEFORE with the digest/ package of ``--before`` (default: ``main``, unpacked
with ``git archive`` into a temporary folder, or the folder ``--digest-src`` names) and AFTER
with this tree's. A BEFORE without ``SummaryRequest.language`` is given none.

Per language (``?``: unknown) it prints: stories; summaries produced (non-empty); mean
summary length and mean budget use (length / budget), both in the budget unit of this tree's
``digest.sentences`` (words, characters for Chinese, Japanese and Korean) for BEFORE and
AFTER alike; summaries over the budget; ``changed``: stories whose summary differs between
BEFORE and AFTER; and ``re-split``: of the stories in a language other than English (or
unknown), those whose sentences (``split_sentences``) differ between BEFORE (English rules
for every language) and AFTER (the story's language).

    .venv/bin/python benchmarks/summary_languages.py                  # ~6 min on 2 idle cores
    .venv/bin/python benchmarks/summary_languages.py --systems lead   # seconds
    .venv/bin/python benchmarks/summary_languages.py --digest-src DIR # BEFORE = DIR/digest
"""

from __future__ import annotations

import argparse
import inspect
import io
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# A child imports digest/ from ``--src``; the parent always from this tree.
_SRC = sys.argv[sys.argv.index("--src") + 1] if "--src" in sys.argv else str(REPO)
sys.path.insert(0, _SRC)

SYSTEMS = ("lead", "extractive")
UNKNOWN = "?"


# Parent: the corpus and the report


def load_requests() -> list[dict[str, Any]]:
    """Every story of the corpus as {"title", "text", "language"}, its text as an edition
    gives it to the summarizer."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from dedupe import FEEDS, load_corpus

    from digest.clean import split_headline

    stories, parsed, skipped = load_corpus(FEEDS)
    print(f"{len(stories)} stories from {parsed} files ({skipped} files do not parse)")
    return [
        {
            "title": s.title,
            "text": split_headline(s.text, s.title)[1],
            "language": s.language,
        }
        for s in stories
    ]


def run_child(src: str, system: str, words: int, stories: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out.json"
        command = [sys.executable, __file__, "--child", system, "--src", src]
        command += ["--words", str(words), "--input", str(stories), "--out", str(out)]
        subprocess.run(command, check=True)
        return dict(json.loads(out.read_text(encoding="utf-8")))


def unpack_digest(commit: str, into: Path) -> Path:
    """``git archive COMMIT digest`` unpacked into ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "digest"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def _language(request: dict[str, Any]) -> str:
    return request["language"] or UNKNOWN


def print_table(
    system: str, requests: Sequence[dict[str, Any]], runs: dict[str, dict[str, Any]], words: int
) -> None:
    from digest.sentences import budget_length, is_measured_in_characters, text_length

    by_language: dict[str, list[int]] = defaultdict(list)
    for index, request in enumerate(requests):
        by_language[_language(request)].append(index)
    rates = ", ".join(f"{version} {run['rate']:.0f} stories/s" for version, run in runs.items())
    print(f"\n{system}, --words {words} ({rates}); B = before, A = after")
    header = f"{'lang':<5} {'unit':<5} {'stories':>7}"
    for what in ("made", "mean len", "use", "over"):
        header += f" {what + ' B':>10} {what + ' A':>10}"
    print(header + f" {'changed':>7} {'re-split':>8}")
    for language, indexes in sorted(by_language.items(), key=lambda kv: -len(kv[1])):
        code = None if language == UNKNOWN else language
        unit = "chars" if is_measured_in_characters(code) else "words"
        budget = budget_length(words, code)
        cells = f"{language:<5} {unit:<5} {len(indexes):>7}"
        columns: list[list[str]] = []
        for version in ("before", "after"):
            made = [runs[version]["summaries"][i] for i in indexes]
            made = [s for s in made if s]
            lengths = [text_length(s, code) for s in made]
            mean = statistics.fmean(lengths) if lengths else 0.0
            columns.append(
                [
                    f"{len(made)}",
                    f"{mean:.1f}",
                    f"{mean / budget:.2f}",
                    f"{sum(n > budget for n in lengths)}",
                ]
            )
        for before, after in zip(*columns, strict=True):
            cells += f" {before:>10} {after:>10}"
        changed = sum(
            runs["before"]["summaries"][i] != runs["after"]["summaries"][i] for i in indexes
        )
        resplit = "-"
        if language != "en":
            splits = (runs["before"]["sentences"], runs["after"]["sentences"])
            resplit = str(sum(splits[0][i] != splits[1][i] for i in indexes))
        print(cells + f" {changed:>7} {resplit:>8}")


# Child: one system, one digest/ package


def summarise(system: str, words: int, stories: Path, out: Path) -> None:
    """Summarise every story with ``system`` of the digest/ in ``--src``; write the
    summaries, each story's sentences and the rate to ``out``."""
    from digest.summarize import (
        ExtractiveSummarizer,
        LeadSummarizer,
        SummaryRequest,
        split_sentences,
    )

    rows = [json.loads(line) for line in stories.read_text(encoding="utf-8").splitlines()]
    has_language = "language" in SummaryRequest.__dataclass_fields__
    requests = [
        SummaryRequest(**(row if has_language else {"title": row["title"], "text": row["text"]}))
        for row in rows
    ]
    splits_by_language = "language" in inspect.signature(split_sentences).parameters
    sentences = [
        split_sentences(row["text"], *([row["language"]] if splits_by_language else []))
        for row in rows
    ]
    summarizer = (ExtractiveSummarizer if system == "extractive" else LeadSummarizer)(words)
    started = time.perf_counter()
    summaries: list[str] = []
    for start in range(0, len(requests), 64):
        summaries += summarizer.summarize(requests[start : start + 64])
    rate = len(requests) / (time.perf_counter() - started)
    result = {"summaries": summaries, "sentences": sentences, "rate": rate}
    out.write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--words", type=int, default=60, help="the budget, [summarize].words")
    parser.add_argument("--before", default="main", help="the commit to compare with")
    parser.add_argument("--digest-src", help="BEFORE: the digest/ package in this folder")
    parser.add_argument("--child", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        summarise(args.child, args.words, args.input, args.out)
        return
    requests = load_requests()
    with tempfile.TemporaryDirectory() as folder:
        stories = Path(folder) / "stories.jsonl"
        lines = (json.dumps(r, ensure_ascii=False) for r in requests)
        stories.write_text("\n".join(lines) + "\n", encoding="utf-8")
        before = args.digest_src or str(unpack_digest(args.before, Path(folder) / "before"))
        for system in args.systems:
            runs = {
                "before": run_child(before, system, args.words, stories),
                "after": run_child(str(REPO), system, args.words, stories),
            }
            print_table(system, requests, runs, args.words)


if __name__ == "__main__":
    main()
