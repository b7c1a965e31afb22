"""The pipeline: the only place the stages meet.

collect_all:    feeds -> FetchResults -> Stories, stored as they arrive.
preview_edition: stored (and, by default, freshly fetched) stories -> Digest -> RenderedDigest,
                 with the store opened read-only: a preview cannot change anything.
send_edition:   the same Digest, archived with the ledger's pending rows in one commit, then
                 handed to the mail backend one recipient at a time, each send committed.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import nh3

from digest.clean import clean_text, split_headline
from digest.collect import FetchLimits, fetch_all
from digest.config import Settings, SummarizeSettings, append_feeds
from digest.editions import summarize_with_progress
from digest.errors import DigestError, FeedError, InputError
from digest.feed_health import configured_feed
from digest.models import FeedSource
from digest.opml import OpmlImport, read_opml, write_opml
from digest.parse import html_to_text, parse_feed
from digest.runtime import Clock, Runtime, configured_summarizer
from digest.store import Store
from digest.summarize import SummaryRequest

logger = logging.getLogger(__name__)


# The daemon's record


# Feeds management


@dataclass(frozen=True, slots=True, kw_only=True)
class AddReport:
    """What ``digest feeds add`` did."""

    source: FeedSource  # as it is now configured
    is_added: bool = True  # False: it was configured already (and gone: revived)
    is_revived: bool = False  # it had answered 410 Gone and will be fetched again
    moved_from: str | None = None  # the URL given, when the check found it moved permanently
    stories: int | None = None  # entries the check read (None: not checked)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportReport:
    """What ``digest feeds import`` did (or, dry, would do) with one OPML file."""

    opml: OpmlImport
    added: tuple[FeedSource, ...]
    skipped: tuple[FeedSource, ...]  # already configured


def add_feed(
    runtime: Runtime,
    url: str,
    *,
    name: str | None = None,
    category: str | None = None,
    check: bool = True,
) -> AddReport:
    """Add a feed to the config file; by default only once one fetch and parse prove it works.

    Re-adding a configured feed that answered 410 Gone revives it instead.
    """
    settings, clock = runtime.settings, runtime.clock
    source = FeedSource(url=_feed_location(url), name=name, category=category)
    existing = configured_feed(settings, source.url)
    if existing is not None:
        return _readd(runtime, existing, check=check)
    checked, stories = _check_feed(settings, source, clock) if check else (source, None)
    if not append_feeds(settings.config_path, (checked,)):
        raise DigestError(f"{checked.url} (where {url} moved to) is already configured")
    return AddReport(
        source=checked,
        is_revived=bool(_revive_gone(runtime.store, [checked.url])),
        moved_from=source.url if checked.url != source.url else None,
        stories=stories,
    )


def _readd(runtime: Runtime, existing: FeedSource, *, check: bool) -> AddReport:
    state = runtime.store.feed_state(existing.url)
    if state is None or not state.is_gone:
        raise DigestError(
            f"{existing.url} is already configured (as {existing.title!r}); nothing added",
            hint="`digest feeds list` shows how it is doing",
        )
    stories = _check_feed(runtime.settings, existing, runtime.clock)[1] if check else None
    _revive_gone(runtime.store, [existing.url])
    return AddReport(source=existing, is_added=False, is_revived=True, stories=stories)


def _check_feed(settings: Settings, source: FeedSource, clock: Clock) -> tuple[FeedSource, int]:
    """Fetch and parse a feed once: its new address if it moved, its title, its entry count."""
    limits = FetchLimits(
        timeout_seconds=settings.collect.timeout_seconds,
        max_bytes=settings.collect.max_bytes,
        allowed_internal_networks=settings.collect.allowed_internal_networks,
    )
    [result] = fetch_all([source], {}, limits, clock)
    hint = "check the URL, or add it anyway with --no-check"
    if result.is_gone:
        raise FeedError(
            f"{source.url} answers 410 Gone: its publisher has removed it; not added",
            feed_url=source.url,
            hint="remove it from the settings file",
        )
    if result.error:
        kind = f"{result.error_kind}: " if result.error_kind else ""
        raise FeedError(
            f"{source.url}: {kind}{result.error}; not added", feed_url=source.url, hint=hint
        )
    try:
        stories = parse_feed(result).stories
    except FeedError as exc:
        raise FeedError(
            f"{source.url}: {exc.message}; not added", feed_url=source.url, hint=hint
        ) from exc
    name = source.name or stories[0].source_name
    return replace(source, url=result.moved_to or source.url, name=name), len(stories)


def import_opml(
    runtime: Runtime,
    path: str | os.PathLike[str],
    *,
    category: str | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Append the feeds an OPML file lists that are not configured yet (none with dry_run)."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise DigestError(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from exc
    found = read_opml(data, os.fspath(path))
    feeds = tuple(replace(f, category=category) if category else f for f in found.feeds)
    added = append_feeds(runtime.settings.config_path, feeds, dry_run=dry_run)
    if added and not dry_run:
        _revive_gone(runtime.store, [f.url for f in added])
    skipped = tuple(f for f in feeds if f not in added)
    return ImportReport(opml=found, added=added, skipped=skipped)


def export_opml(settings: Settings) -> bytes:
    """Every configured feed as OPML 2.0, one parent outline per category."""
    return write_opml(settings.feed_sources, f"{settings.render.title}: feeds")


def _feed_location(url: str) -> str:
    """An http(s) URL as given; a local path made absolute, as the config file needs it."""
    url = url.strip()
    if "://" in url or os.path.isabs(url):
        return url
    return os.path.abspath(os.path.expanduser(url))


def _revive_gone(store: Store, urls: Sequence[str]) -> list[str]:
    """Mark feeds that had answered 410 Gone as fetchable again; return those revived."""
    gone = [url for url in urls if (state := store.feed_state(url)) and state.is_gone]
    if gone:
        with store.atomic():
            for url in gone:
                store.revive_feed(url)
    return gone


# Batch summaries


def summarize_file(settings: SummarizeSettings, source: Path, target: Path) -> int:
    """Summarise each ``{"id", "title", "text"}`` line of a JSONL file into ``{"id",
    "summary"}`` lines, with the digest's own cleaning and summarizer; return the count."""
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
                story_id, title, text = _batch_item(line, f"{source}:{number}")
                ids.append(story_id)
                title, text = split_headline(clean_text(text, title=title), title)
                requests.append(SummaryRequest(title=title, text=text))
    return ids, requests


def _batch_item(line: str, where: str) -> tuple[object, str, str]:
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
    return item.get("id"), title, text


_LOOKS_LIKE_HTML = re.compile(r"<(?:p|div|br|span|a|li|h[1-6]|html|body|article)\b", re.IGNORECASE)
