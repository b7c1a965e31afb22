"""Editions: stories -> Digest (clustered, ranked, capped, summarised) -> RenderedDigest.

``build_edition`` runs ``build_digest`` with the runtime's summarizer and encoder behind the
store's caches of summaries and vectors (a read-only store is read, never written);
``render_edition`` renders with the settings' templates. Collecting (the edition summarised
as it stands), the preview and sending all build their editions here.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Protocol, TypeVar, runtime_checkable

from tqdm import tqdm

from digest.clean import split_headline
from digest.config import Settings
from digest.dedupe import DEFAULT_SIMILARITY, DEFAULT_WINDOW_HOURS, Encoder, cluster_stories
from digest.filters import filter_stories
from digest.ledger import edition_date
from digest.models import (
    CachedSummary,
    Digest,
    DigestItem,
    FeedFailure,
    FeedSource,
    KeywordRules,
    RenderedDigest,
    Story,
    Summary,
)
from digest.rank import SectionRules, arrange_clusters
from digest.render import make_environment, render_digest
from digest.render_settings import render_options, section_rules
from digest.runtime import Clock, Runtime
from digest.store import Store
from digest.summarize import Summarizer, SummaryRequest

logger = logging.getLogger(__name__)


def summarize_edition(runtime: Runtime) -> None:
    """Build today's edition as it stands and keep its summaries in the store's cache."""
    now = runtime.clock()
    day = edition_date(runtime.settings, now)
    stories = runtime.store.stories_for_edition(day)
    if stories:
        logger.debug("summarising the %s edition as it stands: %d stories", day, len(stories))
        build_edition(runtime, stories, (), now)


def build_digest(
    stories: Sequence[Story],
    failures: Sequence[FeedFailure],
    summarizer: Summarizer,
    *,
    edition_on: date,
    now: datetime,
    max_stories: int,
    encoder: Encoder | None = None,
    similarity: float = DEFAULT_SIMILARITY,
    window_hours: float = DEFAULT_WINDOW_HOURS,
    sections: SectionRules | None = None,
    keywords: KeywordRules | None = None,
    feeds: Sequence[FeedSource] = (),
) -> Digest:
    """Filter by keywords (the global ``keywords`` and each of ``feeds``' own), then cluster
    (by meaning too, given an encoder), rank, cap per section and in all, and summarise one
    edition's stories."""
    stories, filter_counts = filter_stories(stories, keywords or KeywordRules(), feeds)
    clusters = cluster_stories(
        stories, encoder=encoder, similarity=similarity, window_hours=window_hours
    )
    rules = replace(sections or SectionRules(), max_total=max_stories)
    clusters, section_order = arrange_clusters(clusters, rules)
    requests = [
        SummaryRequest(
            title=c.lead.title,
            text=split_headline(c.lead.text, c.lead.title)[1],
            language=c.lead.language,
        )
        for c in clusters
    ]
    texts = summarizer.summarize(requests) if requests else []
    items = tuple(
        DigestItem(
            cluster=cluster,
            summary=Summary(
                cluster_id=cluster.cluster_id,
                text=text,
                model_id=summarizer.model_id,
                is_from_full_text=cluster.lead.text_source == "article",
            ),
        )
        for cluster, text in zip(clusters, texts, strict=True)
    )
    return Digest(
        edition_on=edition_on,
        generated_at=now,
        items=items,
        failed_feeds=tuple(failures),
        section_order=section_order,
        filter_counts=filter_counts,
    )


@runtime_checkable
class AttributingSummarizer(Summarizer, Protocol):
    """A summarizer that may hand a story to a stand-in (the llm one, when its endpoint
    fails): it says which model wrote each summary, so a stand-in's is not cached as its own."""

    def summarize_attributed(self, requests: Sequence[SummaryRequest]) -> list[tuple[str, str]]:
        """One ``(summary, model_id of what wrote it)`` per request, in order."""
        ...


class CachedSummarizer:
    """A summarizer behind the store's summary cache: a text it summarised before (same model,
    same settings) is never summarised again; a read-only store is read, never written. A
    summary a stand-in wrote is not cached, so the next edition asks the summarizer again."""

    def __init__(self, summarizer: Summarizer, store: Store, clock: Clock) -> None:
        self.inner = summarizer
        self.model_id = summarizer.model_id
        self.store = store
        self.clock = clock

    def summarize(self, requests: Sequence[SummaryRequest]) -> list[str]:
        keys = [summary_key(request) for request in requests]
        cached = self.store.cached_summaries(self.model_id, keys)
        done = {summary.text_hash: summary.text for summary in cached}
        todo = {k: r for k, r in zip(keys, requests, strict=True) if k not in done}
        written = self._written(list(todo.values()))
        fresh = {key: text for key, (text, _) in zip(todo, written, strict=True)}
        own = [
            k for k, (_, model_id) in zip(todo, written, strict=True) if model_id == self.model_id
        ]
        if own and not self.store.is_read_only:
            kept = [CachedSummary(model_id=self.model_id, text_hash=k, text=fresh[k]) for k in own]
            self.store.save_summaries(kept, self.clock())
        return [done[key] if key in done else fresh[key] for key in keys]

    def _written(self, requests: list[SummaryRequest]) -> list[tuple[str, str]]:
        if isinstance(self.inner, AttributingSummarizer):
            return _in_batches(self.inner.summarize_attributed, requests)
        return [(text, self.model_id) for text in summarize_with_progress(self.inner, requests)]


def summary_key(request: SummaryRequest) -> str:
    """What a summary depends on besides the model: the headline, the text and its language
    (which decides the sentences and the budget's unit; unknown keeps the old key)."""
    language = f"\0{request.language}" if request.language else ""
    digest = hashlib.sha256(f"{request.title}\0{request.text}{language}".encode()).hexdigest()
    return f"sha256:{digest}"


def summarize_with_progress(
    summarizer: Summarizer, requests: Sequence[SummaryRequest], *, batch: int = 16
) -> list[str]:
    """Summaries in batches, with a progress bar when stderr is a terminal and there is
    something to summarise (every summary cached: no bar)."""
    return _in_batches(summarizer.summarize, requests, batch)


_Result = TypeVar("_Result")


def _in_batches(
    summarize: Callable[[Sequence[SummaryRequest]], list[_Result]],
    requests: Sequence[SummaryRequest],
    batch: int = 16,
) -> list[_Result]:
    results: list[_Result] = []
    is_shown = bool(requests) and sys.stderr.isatty()
    with tqdm(total=len(requests), desc="summarising", unit="story", disable=not is_shown) as bar:
        for start in range(0, len(requests), batch):
            results += summarize(requests[start : start + batch])
            bar.update(min(batch, len(requests) - start))
    return results


def render_edition(settings: Settings, digest: Digest) -> RenderedDigest:
    """Render a built edition with the settings' templates; log any stories left out."""
    env = make_environment(settings.render.template_dir)
    rendered = render_digest(digest, env, tz=settings.tz, options=render_options(settings))
    if rendered.trimmed_stories:
        logger.warning(
            "edition %s: left out its %d least important stories to keep the HTML part under "
            "%d bytes ([render].max_html_bytes)",
            digest.edition_on,
            rendered.trimmed_stories,
            settings.render.max_html_bytes,
        )
    return rendered


def edition_failures(runtime: Runtime, edition_on: date) -> tuple[FeedFailure, ...]:
    """The footer's "feeds that could not be read for this edition": the feeds configured now
    whose most recent fetch failed since the previous edition was archived (the collects of
    this edition; ever, before the first). A feed dropped from the settings, or one that
    failed only before the previous edition, or that was read fine since, is not listed."""
    since = runtime.store.previous_edition_at(edition_on)
    return runtime.store.failing_feeds(runtime.settings.feed_sources, since)


def build_edition(
    runtime: Runtime,
    stories: Sequence[Story],
    failures: Sequence[FeedFailure],
    now: datetime,
    edition_on: date | None = None,
) -> Digest:
    """``build_digest`` with the runtime's summarizer and encoder, behind the store's caches
    of summaries and vectors; the edition of ``edition_on`` (default: ``now``'s day)."""
    settings = runtime.settings
    digest = build_digest(
        stories,
        failures,
        CachedSummarizer(runtime.summarizer, runtime.store, lambda: now),
        edition_on=edition_on or edition_date(settings, now),
        now=now,
        max_stories=settings.render.max_stories,
        encoder=runtime.encoder if len(stories) > 1 else None,
        similarity=settings.collect.dedupe_similarity,
        window_hours=settings.collect.dedupe_window_hours,
        sections=section_rules(settings),
        keywords=settings.filters.keywords,
        feeds=settings.feed_sources,
    )
    if digest.filter_counts:
        removed = ", ".join(f"{c.label} {c.removed}" for c in digest.filter_counts)
        logger.info(
            "edition %s: keyword filters removed %d of %d stories (%s)",
            digest.edition_on,
            sum(c.removed for c in digest.filter_counts),
            len(stories),
            removed,
        )
    return digest
