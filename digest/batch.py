"""Batch: ``digest summarize``, JSONL stories -> JSONL summaries, cleaned and summarised
exactly as an edition's stories are. Needs no settings file and no store.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nh3

from digest.clean import clean_text, split_headline
from digest.config import SummarizeSettings
from digest.editions import summarize_with_progress
from digest.errors import InputError
from digest.language import declared_language, story_language
from digest.normalise import html_to_text
from digest.runtime import configured_summarizer
from digest.summarize import SummaryRequest


def summarize_file(settings: SummarizeSettings, source: Path, target: Path) -> int:
    """Summarise each ``{"id", "title", "text"}`` line (``"language"``: optional, else
    detected) of a JSONL file into ``{"id", "summary"}`` lines, with the digest's own
    cleaning and summarizer; return the count."""
    ids, requests = _read_batch(source)
    summarizer = configured_summarizer(settings)
    summaries = summarize_with_progress(summarizer, requests)
    partial = target.with_name(f".{target.name}.partial")
    with partial.open("w", encoding="utf-8") as out:
        for story_id, summary in zip(ids, summaries, strict=True):
            out.write(json.dumps({"id": story_id, "summary": summary}, ensure_ascii=False) + "\n")
    partial.replace(target)  # all or nothing: no half-written output
    return len(requests)


def _read_batch(source: Path) -> tuple[list[object], list[SummaryRequest]]:
    ids: list[object] = []
    requests = []
    with source.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                story_id, title, text, declared = _batch_item(line, f"{source}:{number}")
                ids.append(story_id)
                title, text = split_headline(clean_text(text, title=title), title)
                language = story_language(title, text, declared=declared)
                requests.append(SummaryRequest(title=title, text=text, language=language))
    return ids, requests


def _batch_item(line: str, where: str) -> tuple[object, str, str, str | None]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not a JSON object ({exc.msg})") from exc
    if not isinstance(item, dict) or not isinstance(item.get("text"), str):
        raise InputError(
            f'{where}: needs an object with a "text" string',
            hint='each line: {"id": ..., "title": "...", "text": "..."}',
        )
    title = item.get("title")
    title = title if isinstance(title, str) else ""
    text: str = item["text"]
    if _LOOKS_LIKE_HTML.search(text):
        text = html_to_text(nh3.clean(text))
    return item.get("id"), title, text, declared_language(item.get("language"))


_LOOKS_LIKE_HTML = re.compile(r"<(?:p|div|br|span|a|li|h[1-6]|html|body|article)\b", re.IGNORECASE)
