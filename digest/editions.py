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
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
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
from digest.runtime import Clock, Runtime, claim_holder, drop_ended_holders
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


# How long a claim on a summary lasts unless renewed (each batch made renews the rest):
# how long other processes wait for the summaries of one that died.
SUMMARY_LEASE = timedelta(minutes=5)
# How often a process waiting for another's summaries looks for them in the cache.
SUMMARY_POLL_SECONDS = 0.2


class CachedSummarizer:
    """A summarizer behind the store's summary cache: a text it summarised before (same model,
    same settings) is never summarised again; a read-only store is read, never written. A
    summary a stand-in wrote is not cached, so the next edition asks the summarizer again.

    Given a ``holder`` (this process, in the store's claims), it first claims the texts it
    will summarise: one another process has claimed is waited for (looked for in the cache
    until it is there, or until that claim runs out or its process on this machine has
    ended, and then claimed), so that processes
    sharing a store never summarise the same text twice."""

    def __init__(
        self, summarizer: Summarizer, store: Store, clock: Clock, holder: str | None = None
    ) -> None:
        self.inner = summarizer
        self.model_id = summarizer.model_id
        self.store = store
        self.clock = clock
        self.holder = None if store.is_read_only else holder

    def summarize(self, requests: Sequence[SummaryRequest]) -> list[str]:
        todo = dict(zip((summary_key(r) for r in requests), requests, strict=True))
        done = self._cached(list(todo))
        todo = {k: r for k, r in todo.items() if k not in done}
        done |= self._made(todo) if self.holder is None else self._made_once(todo, self.holder)
        return [done[summary_key(request)] for request in requests]

    def _cached(self, keys: list[str]) -> dict[str, str]:
        return {s.text_hash: s.text for s in self.store.cached_summaries(self.model_id, keys)}

    def _made_once(self, todo: dict[str, SummaryRequest], holder: str) -> dict[str, str]:
        """Each text summarised by whichever process claims it first; the others' read from
        the cache once made."""
        made: dict[str, str] = {}
        while todo:
            drop_ended_holders(self.store)
            mine = self.store.claim_summaries(
                holder, self.model_id, list(todo), lease=SUMMARY_LEASE
            )
            try:
                made |= self._made({k: todo[k] for k in mine})
            finally:
                self.store.release_summary_claims(holder, self.model_id, mine)
            made |= self._cached([k for k in todo if k not in made])
            todo = {k: r for k, r in todo.items() if k not in made}
            if todo:
                time.sleep(SUMMARY_POLL_SECONDS)  # another process is making them
        return made

    def _made(self, todo: dict[str, SummaryRequest]) -> dict[str, str]:
        """Summarise, keeping each batch's own summaries in the cache as it is made (and,
        holding claims, renewing those of the batches still to come)."""
        keys = list(todo)
        made: dict[str, str] = {}

        def keep(written: list[tuple[str, str]]) -> None:
            batch = list(zip(keys[len(made) :], written[len(made) :], strict=False))
            made.update((key, text) for key, (text, _) in batch)
            own = [key for key, (_, model_id) in batch if model_id == self.model_id]
            self._save(own, made)
            if self.holder is not None and len(made) < len(keys):
                rest = keys[len(made) :]
                self.store.claim_summaries(self.holder, self.model_id, rest, lease=SUMMARY_LEASE)

        self._written(list(todo.values()), keep)
        return made

    def _save(self, keys: list[str], made: dict[str, str]) -> None:
        if keys and not self.store.is_read_only:
            kept = [CachedSummary(model_id=self.model_id, text_hash=k, text=made[k]) for k in keys]
            self.store.save_summaries(kept, self.clock())

    def _written(
        self, requests: list[SummaryRequest], after: Callable[[list[tuple[str, str]]], None]
    ) -> list[tuple[str, str]]:
        if isinstance(self.inner, AttributingSummarizer):
            return _in_batches(self.inner.summarize_attributed, requests, after=after)
        return _in_batches(self._attributed, requests, after=after)

    def _attributed(self, requests: Sequence[SummaryRequest]) -> list[tuple[str, str]]:
        return [(text, self.model_id) for text in self.inner.summarize(requests)]


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
    *,
    after: Callable[[list[_Result]], None] | None = None,
) -> list[_Result]:
    """``summarize`` over ``requests`` in batches; ``after`` is given the results so far after
    each batch."""
    results: list[_Result] = []
    is_shown = bool(requests) and sys.stderr.isatty()
    with tqdm(total=len(requests), desc="summarising", unit="story", disable=not is_shown) as bar:
        for start in range(0, len(requests), batch):
            results += summarize(requests[start : start + batch])
            bar.update(min(batch, len(requests) - start))
            if after is not None:
                after(results)
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
        CachedSummarizer(runtime.summarizer, runtime.store, lambda: now, claim_holder()),
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
