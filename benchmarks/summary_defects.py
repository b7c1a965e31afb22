"""Summary-defect count: what a reader sees wrong in the summaries of real feeds, before and after.

Summarises every story of every feed in ``shared/data/feeds`` (parsed and cleaned by
``digest.parse.parse_feed``, as collecting does) plus the seed page (cleaned as ``digest
summarize`` does), with ``extractive`` and ``lead`` at the default budget of 60 words, once
with main's ``digest/`` (BEFORE: ``git archive main digest`` unpacked in a temporary folder;
``--base COMMIT`` for another commit's)
and once with this checkout's (AFTER), each in a child process. The parent counts, with this
checkout's ``digest.sentence_kinds``, the summaries that

- end mid-sentence: on a cut mark ("…", "...", "[…]", "Read more") or on a sentence of the
  story cut short, unless the story is one cut sentence (fragments aside) and the summary
  ends in one "…";
- contain a line repeated across the feed: a line, sentence, or parenthesised group opening
  or closing a line, found in at least 3 of the feed's entries (and a fifth of them) as the
  feed sent them, before any cleaning, matched whole or, from 3 words, as a run of words;
- contain a citation or a fragment (``is_citation``, ``is_fragment``);
- run on: show a sentence of the story that does not end like one (a title, a link, a
  label: no closing mark, ``ends_like_sentence``) with another sentence of the story right
  after it ("…in the foot Remember all that talk…");
- open a sentence other than the story's first with a reference to the one before it
  (``opens_with_reference``, English only) without that sentence just before it.

    .venv/bin/python benchmarks/summary_defects.py                 # both systems, ~2 min
    .venv/bin/python benchmarks/summary_defects.py --systems lead --show repeated
    .venv/bin/python benchmarks/summary_defects.py --base 2e1ef3e   # against a given commit
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
_SRC = sys.argv[sys.argv.index("--digest-src") + 1] if "--digest-src" in sys.argv else str(REPO)
sys.path.insert(0, _SRC)

DATA = REPO.parent / "shared" / "data"
FEEDS = DATA / "feeds"
SEED = DATA / "seed" / "article-page-2021-01-14.txt"
WORDS = 60
SYSTEMS = ("extractive", "lead")
DEFECTS = ("mid-sentence", "repeated", "citation", "fragment", "run-on", "dangling")
_REPEAT_COUNT, _REPEAT_SHARE = 3, 0.2
# A parenthesised group that opens or closes a line (a tag list, "( CNN )"), not one inside.
_PARENS = re.compile(r"^\s*\(([^()]{1,120})\)|\(([^()]{1,120})\)\s*$", re.MULTILINE)


# Child: summaries with one digest/ package


def _feed_items(path: Path) -> list[dict[str, Any]]:
    """Each story of a feed file: its text as the feed sent it, and title and text cleaned."""
    from datetime import UTC, datetime

    from digest.errors import DigestError
    from digest.models import FeedSource, FetchResult
    from digest.normalise import html_to_text
    from digest.parse import parse_feed

    source = FeedSource(url=f"https://feeds.example.org/{path.parent.name}/{path.name}")
    result = FetchResult(source=source, fetched_at=datetime(2024, 1, 1, tzinfo=UTC))
    try:
        stories = parse_feed(_with_body(result, path.read_bytes())).stories
    except DigestError:
        return []
    return [
        {
            "raw": html_to_text(s.html or ""),
            "title": s.title,
            "text": s.text,
            "language": getattr(s, "language", None),
        }
        for s in stories
    ]


def _with_body(result: Any, body: bytes) -> Any:
    from dataclasses import replace

    return replace(result, body=body)


def _seed_item() -> dict[str, str]:
    from digest.clean import clean_text, split_headline

    page = SEED.read_text(encoding="utf-8")
    title, text = split_headline(clean_text(page), "")
    return {"raw": page, "title": title, "text": text}


def run_child(systems: Sequence[str], out: Path) -> None:
    from digest.summarize import ExtractiveSummarizer, LeadSummarizer, SummaryRequest

    feeds = {
        str(p.relative_to(FEEDS)): _feed_items(p) for p in sorted(FEEDS.rglob("*")) if p.is_file()
    }
    feeds["seed page"] = [_seed_item()]
    feeds = {name: items for name, items in feeds.items() if items}
    builders = {"extractive": ExtractiveSummarizer, "lead": LeadSummarizer}
    for system in systems:
        summarizer = builders[system](WORDS)
        for items in feeds.values():
            requests = [_request(SummaryRequest, item) for item in items]
            for item, summary in zip(items, summarizer.summarize(requests), strict=True):
                item[system] = summary
    out.write_text(json.dumps(feeds, ensure_ascii=False), encoding="utf-8")


def _request(request_type: Any, item: dict[str, Any]) -> Any:
    """The item's summary request, with its language where that digest/ takes one."""
    if "language" in request_type.__dataclass_fields__:
        return request_type(title=item["title"], text=item["text"], language=item.get("language"))
    return request_type(title=item["title"], text=item["text"])


def summaries_with(src: str, systems: Sequence[str]) -> dict[str, list[dict[str, str]]]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out.json"
        command = [sys.executable, __file__, "--child", "--out", str(out), "--digest-src", src]
        subprocess.run([*command, "--systems", *systems], check=True)
        return dict(json.loads(out.read_text(encoding="utf-8")))


def _load_or_run(
    path: Path | None, systems: Sequence[str], *, commit: str | None
) -> dict[str, list[dict[str, str]]]:
    """The summaries kept in ``path``, or made now (and kept there if given)."""
    if path is not None and path.exists():
        return dict(json.loads(path.read_text(encoding="utf-8")))
    if commit is not None:
        sys.path.insert(0, str(REPO / "benchmarks"))
        from summary_languages import unpack_digest  # one way to get another commit's digest/

        with tempfile.TemporaryDirectory() as folder:
            feeds = summaries_with(str(unpack_digest(commit, Path(folder))), systems)
    else:
        feeds = summaries_with(str(REPO), systems)
    if path is not None:
        path.write_text(json.dumps(feeds, ensure_ascii=False), encoding="utf-8")
    return feeds


# Parent: the counts, with this checkout's rules


def _segments(text: str) -> set[str]:
    """A text's lines, sentences and parenthesised groups, normalised."""
    from digest.clean import normalise_line
    from digest.summarize import split_sentences

    groups = [a or b for a, b in _PARENS.findall(text)]
    pieces = [*text.splitlines(), *split_sentences(text), *groups]
    return {n for piece in pieces if (n := normalise_line(piece))}


def feed_repeats(items: Sequence[dict[str, str]]) -> set[str]:
    counts: Counter[str] = Counter()
    for raw in {item["raw"] for item in items}:
        counts.update(_segments(raw))
    needed = max(_REPEAT_COUNT, _REPEAT_SHARE * len(items))
    return {segment for segment, count in counts.items() if count >= needed}


def has_repeat(summary: str, repeats: set[str]) -> str | None:
    from digest.clean import normalise_line

    whole = f" {normalise_line(summary)} "
    for segment in _segments(summary) & repeats:
        return segment
    return next((s for s in repeats if len(s.split()) >= 3 and f" {s} " in whole), None)


def ends_mid_sentence(summary: str, story: str, language: str | None) -> bool:
    from digest.sentence_kinds import is_cut, is_fragment, without_cut_mark
    from digest.summarize import split_sentences

    if not summary:
        return False
    sentences = split_sentences(story, language)
    if is_cut(summary):
        whole = [s for s in sentences if not is_fragment(without_cut_mark(s))]
        only_one = len(whole) == 1 and is_cut(whole[0])
        return not (only_one and summary.endswith("…") and not summary.endswith("……"))
    # A summary's sentences are split again after joining, so compare the story's instead.
    return not any(summary.endswith(s) for s in sentences)


def runs_on(summary: str, story: str, language: str | None) -> bool:
    from digest.sentence_kinds import ends_like_sentence
    from digest.summarize import split_sentences

    sentences = set(split_sentences(story, language))
    for sentence in sentences:
        if ends_like_sentence(sentence):
            continue
        at = summary.find(sentence)
        before, after = summary[:at].rstrip(), summary[at + len(sentence) :]
        is_whole = at >= 0 and (not before or ends_like_sentence(before))
        # What follows is another of the story's sentences, not the rest of this one.
        if is_whole and any(after.lstrip().startswith(s) for s in sentences - {sentence}):
            return True
    return False


def dangling(summary: str, story: str, language: str | None) -> bool:
    from digest.sentence_kinds import opens_with_reference
    from digest.summarize import split_sentences

    sentences = split_sentences(story, language)
    position = {s: i for i, s in reversed(list(enumerate(sentences)))}
    shown = split_sentences(summary, language)
    for k, sentence in enumerate(shown):
        i = position.get(sentence)
        if i is None or i == 0 or not opens_with_reference(sentence, language):
            continue
        if k == 0 or shown[k - 1] != sentences[i - 1]:
            return True
    return False


def defects(summary: str, story: str, language: str | None, repeats: set[str]) -> dict[str, bool]:
    """Which defects the summary has; its sentences and the story's split by the story's
    language's rules, as the summarizers split them."""
    from digest.sentence_kinds import is_citation, is_fragment
    from digest.summarize import split_sentences

    shown = split_sentences(summary, language)
    return {
        "mid-sentence": ends_mid_sentence(summary, story, language),
        "repeated": has_repeat(summary, repeats) is not None,
        "citation": any(is_citation(s) for s in shown),
        "fragment": any(is_fragment(s) for s in shown),
        "run-on": runs_on(summary, story, language),
        "dangling": dangling(summary, story, language),
    }


def count(feeds: dict[str, list[dict[str, Any]]], system: str, show: str | None) -> Counter[str]:
    totals: Counter[str] = Counter()
    for name, items in feeds.items():
        repeats = feed_repeats(items)
        for item in items:
            found = defects(item[system], item["text"], item.get("language"), repeats)
            totals.update(k for k, v in found.items() if v)
            totals["summaries"] += 1
            totals["with a defect"] += any(found.values())
            if show and found.get(show):
                print(f"[{name}] {item[system]!r}")
    return totals


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--show", choices=DEFECTS, help="print AFTER's summaries with it")
    for run in ("before", "after"):
        parser.add_argument(
            f"--{run}",
            type=Path,
            help=f"reuse {run.upper()}'s summaries kept in this file, or keep them there",
        )
    parser.add_argument("--base", default="main", help="BEFORE: this commit's digest/")
    parser.add_argument("--digest-src", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args.systems, args.out)
        return
    before = _load_or_run(args.before, args.systems, commit=args.base)
    after = _load_or_run(args.after, args.systems, commit=None)
    columns = ("summaries", *DEFECTS, "with a defect")
    print(f"{'system':<11} {'run':<7} " + " ".join(f"{c:>13}" for c in columns))
    for system in args.systems:
        for label, feeds in (("BEFORE", before), ("AFTER", after)):
            totals = count(feeds, system, args.show if label == "AFTER" else None)
            print(f"{system:<11} {label:<7} " + " ".join(f"{totals[c]:>13}" for c in columns))


if __name__ == "__main__":
    main()
