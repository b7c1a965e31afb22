"""Fetching: the configured feeds -> the stories the store lacks, in memory, for collecting
(which stores them) and the preview (which does not).

Politeness first: a feed that answered 410 Gone, or that is not due yet (its TTL, max-age,
Retry-After or the minimum interval), is not fetched. The others are fetched concurrently and
parsed as they arrive (in worker processes for a large run). A teaser's article page is
fetched for its full text once: the store keeps what was extracted from it (its text and
the image it names for itself, the story's lead image when the feed names none).
"""

from __future__ import annotations

import html
import logging
import os
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, replace
from dataclasses import field as dataclass_field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from digest.clean import MAX_ARTICLE_HTML_SIZE, article_image, extract_article, split_headline
from digest.collect import FeedStream, FetchLimits, fetch_pages
from digest.config import Settings
from digest.feed_claims import claim_due_feeds
from digest.models import Article, FeedSource, FeedState, FeedTaken, FetchResult, Story
from digest.normalise import image_url
from digest.parse import ParseOutcome, parse_fetched
from digest.runtime import Clock, Runtime
from digest.sentences import word_count
from digest.store import Store
from digest.urls import is_http_url
from digest.workers import process_pool

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class PageFetch:
    """One article page a collect run fetched (or skipped) for a teaser, and what went wrong."""

    url: str
    host: str
    # None: its text was read; else the fetch's error kind (timeout, connection-refused, http,
    # ...), "no-text" (nothing like an article on it) or "skipped" (its host was given up on)
    failure: str | None = None


# Politeness never keeps a feed away longer than this, whatever its TTL or Retry-After says:
# a day's edition should not go out without a feed because it once asked for two days.
MAX_HOLD = timedelta(hours=24)


def feed_hold(result: FetchResult, ttl_minutes: int | None) -> tuple[datetime | None, str | None]:
    """When a feed may be fetched again after this fetch, and why (None: at any time).

    The longest of: a 429/503's Retry-After; on success, the feed's RSS ``<ttl>`` and the
    answer's Cache-Control max-age; always, the configured minimum interval. Local files are
    never held.
    """
    if not is_http_url(result.source.url):
        return None, None
    waits = [(result.source.min_interval_minutes * 60.0, "minimum interval")]
    if result.retry_after_seconds is not None:
        waits.append((result.retry_after_seconds, f"Retry-After after HTTP {result.status}"))
    elif result.is_ok:
        if ttl_minutes:
            waits.append((ttl_minutes * 60.0, f"RSS ttl {ttl_minutes} min"))
        if result.max_age_seconds:
            waits.append((float(result.max_age_seconds), "Cache-Control max-age"))
    seconds, reason = max(waits)
    if seconds <= 0:
        return None, None
    hold = min(timedelta(seconds=seconds), MAX_HOLD)
    return result.fetched_at + hold, f"{reason} ({_duration(hold)})"


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


def _is_held(source: FeedSource, state: FeedState | None, now: datetime) -> bool:
    """Politeness: is this feed not to be fetched yet?"""
    return (
        state is not None
        and state.not_before is not None
        and state.not_before > now
        and is_http_url(source.url)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedOutcome:
    """One feed's fetch, the stories it gave, and what parsing had to say about it."""

    result: FetchResult
    stories: Sequence[Story] = ()
    warnings: tuple[str, ...] = ()
    ttl_minutes: int | None = None  # the feed's RSS <ttl>, if its body was parsed
    is_parsed: bool = False
    pages: tuple[PageFetch, ...] = ()  # article pages asked for this run (each in one feed)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fetched:
    feeds: Iterator[FeedOutcome]  # each fetched feed with the stories the store lacks, as ready
    gone: list[FeedSource]  # feeds not fetched because they answered 410 Gone before
    held: list[FeedSource] = dataclass_field(default_factory=list)  # not due yet: not fetched
    states: dict[str, FeedState] = dataclass_field(default_factory=dict)  # as before the fetch
    # Due, but another collector is fetching their hosts' feeds: not fetched
    taken: dict[str, FeedTaken] = dataclass_field(default_factory=dict)


def fetch_new_stories(
    runtime: Runtime, *, save_articles: bool, holder: str | None = None
) -> Fetched:
    """Fetch and parse every active feed; keep the stories the store does not have yet.

    Given a ``holder``, the due feeds are claimed first (``digest.feed_claims``) and only the
    claimed ones fetched."""
    settings, store = runtime.settings, runtime.store
    sources = settings.feed_sources
    states = _states(store, sources)
    gone = [s for s in sources if s.url in states and states[s.url].is_gone]
    now = runtime.clock()
    held = [s for s in sources if s not in gone and _is_held(s, states.get(s.url), now)]
    active = [s for s in sources if s not in gone and s not in held]
    taken: dict[str, FeedTaken] = {}
    if holder is not None and active:
        active, taken = claim_due_feeds(store, holder, active, states)
        # Read again under the claim: another collector may have fetched some since.
        states |= _states(store, active)
        held += [s for s in active if _is_held(s, states.get(s.url), now)]
        active = [s for s in active if s not in held]

    def new_stories() -> Iterator[FeedOutcome]:
        waiting_for_pages = []
        for feed in _fetch_and_parse(settings, active, states, runtime.clock):
            feed = replace(feed, stories=[s for s in feed.stories if not store.has_story(s)])
            if _teasers(settings, feed):
                waiting_for_pages.append(feed)
            else:
                yield feed
        if waiting_for_pages:
            yield from _add_full_text(runtime, waiting_for_pages, save=save_articles)

    return Fetched(feeds=new_stories(), gone=gone, held=held, states=states, taken=taken)


def _states(store: Store, sources: Sequence[FeedSource]) -> dict[str, FeedState]:
    return {s.url: state for s in sources if (state := store.feed_state(s.url))}


def _teasers(settings: Settings, feed: FeedOutcome) -> dict[str, str]:
    """The link and title of each story of the feed that is only a teaser of its article."""
    if not feed.result.source.full_text:
        return {}
    short = settings.collect.full_text_min_words
    return {s.url: s.title for s in feed.stories if word_count(s.text) < short}


def _limits(settings: Settings) -> FetchLimits:
    collect = settings.collect
    return FetchLimits(
        timeout_seconds=collect.timeout_seconds,
        max_bytes=collect.max_bytes,
        concurrency=collect.concurrency,
        per_host=collect.per_host,
        retries=collect.retries,
        allowed_internal_networks=collect.allowed_internal_networks,
    )


# Article pages of a host that did not answer this many times in a row are not asked for
# again in that run: a dead news site costs one page deadline, not one per story.
PAGE_HOST_GIVE_UP_AFTER = 3


def _add_full_text(
    runtime: Runtime, feeds: Sequence[FeedOutcome], *, save: bool
) -> list[FeedOutcome]:
    """Replace each teaser's text with its article page's main text, where one is found.

    Pages are fetched once: their extraction (or failure) is cached in the store; a page
    skipped because its host was given up on is not, as it was never tried.
    """
    teasers: dict[str, str] = {}
    linked_from: defaultdict[str, list[str]] = defaultdict(list)  # page -> configured feeds
    for feed in feeds:
        for url, title in _teasers(runtime.settings, feed).items():
            teasers[url] = title
            linked_from[url].append(feed.result.source.url)
    store = runtime.store
    articles = {url: a for url in teasers if (a := store.article(url)) is not None}
    missing = sorted(teasers - articles.keys())
    asked: dict[str, PageFetch] = {}
    if missing:
        fetched = [
            _to_article(page, teasers[page.source.url])
            for page in _fetch_pages(runtime.settings, missing, linked_from, runtime.clock)
        ]
        tried = [article for article, _ in fetched if article is not None]
        if save:
            store.save_articles(tried)
        articles.update((a.url, a) for a in tried)
        asked = {page.url: page for _, page in fetched}
    return [_with_articles(feed, articles, asked) for feed in feeds]


def _fetch_pages(
    settings: Settings, urls: Sequence[str], linked_from: Mapping[str, list[str]], clock: Clock
) -> list[FetchResult]:
    limits = replace(
        _limits(settings),
        timeout_seconds=settings.collect.page_timeout_seconds,
        # A page larger than the extractor reads is not worth downloading in full.
        max_bytes=MAX_ARTICLE_HTML_SIZE,
        give_up_after=PAGE_HOST_GIVE_UP_AFTER,
    )
    return fetch_pages(urls, limits, clock, linked_from=linked_from)


def _with_articles(
    feed: FeedOutcome, articles: dict[str, Article], asked: dict[str, PageFetch]
) -> FeedOutcome:
    """The feed with its teasers' article text, and the pages fetched for it, taken out of
    ``asked`` so that a link two feeds share is counted once, with the first."""
    stories = [_with_article(s, articles.get(s.url)) for s in feed.stories]
    pages = tuple(page for s in feed.stories if (page := asked.pop(s.url, None)) is not None)
    return replace(feed, stories=stories, pages=pages)


def _to_article(page: FetchResult, title: str) -> tuple[Article | None, PageFetch]:
    """The page's article (None: skipped, never fetched), and how the fetch went."""
    url = page.source.url
    report = PageFetch(url=url, host=urlsplit(url).hostname or "", failure=page.error_kind)
    if page.error_kind == "skipped":
        return None, report
    if not page.is_ok:
        return Article(url=url, fetched_at=page.fetched_at, error=page.error), report
    text = extract_article(page.body, url, title=title)
    image = image_url(article_image(page.body, url), url)
    if not text:
        error = "no article text on the page"
        article = Article(url=url, fetched_at=page.fetched_at, error=error, image_url=image)
        return article, replace(report, failure="no-text")
    return Article(url=url, fetched_at=page.fetched_at, text=text, image_url=image), report


def _with_article(story: Story, article: Article | None) -> Story:
    if article is None:
        return story
    if article.image_url and not story.image_url:  # the feed's own choice comes first
        story = replace(story, image_url=article.image_url)
    if not article.text:
        return story
    _, text = split_headline(article.text, story.title)  # the story has its headline already
    if word_count(text) <= word_count(story.text):
        return story
    paragraphs = "".join(f"<p>{html.escape(line)}</p>" for line in text.splitlines())
    return replace(story, text=text, html=paragraphs, text_source="article")


# Parsing is the CPU cost of a collect run (feedparser: a few thousand entries a second), so
# a large run parses in worker processes, one per core, each feed as soon as it arrives, while
# the others are still being fetched. For a few feeds the workers would cost more than they
# save.
_POOL_MIN_FEEDS = 16


def _fetch_and_parse(
    settings: Settings,
    sources: Sequence[FeedSource],
    states: dict[str, FeedState],
    clock: Clock,
) -> Iterator[FeedOutcome]:
    """Fetch every feed and parse what came back: each feed's stories, or its error, as soon
    as they are ready (in worker processes for a large run)."""
    limits = (settings.collect.max_age_days, settings.collect.max_entries_per_feed)
    cores = os.cpu_count() or 1
    with FeedStream(sources, states, _limits(settings), clock) as stream:
        if cores >= 2 and len(sources) >= _POOL_MIN_FEEDS:
            yield from _parse_in_pool(stream, states, limits, workers=min(cores, 4))
            return
        while stream.remaining:
            if (result := stream.next_result()) is not None:
                result = _without_seen_body(result, states)
                yield _outcome(result, parse_fetched(result, *limits))


def _parse_in_pool(
    stream: FeedStream, states: dict[str, FeedState], limits: tuple[int, int], *, workers: int
) -> Iterator[FeedOutcome]:
    """Parse each feed in a worker process as it arrives; yield each as its parse ends,
    while the other feeds are still being fetched."""
    parsing: dict[Future[ParseOutcome], FetchResult] = {}
    with process_pool(workers, preload=["digest.parse"]) as pool:
        while stream.remaining or parsing:
            if stream.remaining:
                # A short wait while parses are under way, so each is stored as it ends.
                result = stream.next_result(timeout=0.05 if parsing else None)
                if result is not None:
                    result = _without_seen_body(result, states)
                    # Kept without its body (the worker has its own copy); popped once
                    # parsed, so each feed's stories are freed once stored.
                    future = pool.submit(parse_fetched, result, *limits)
                    parsing[future] = replace(result, body=b"")
            else:
                wait(parsing, return_when=FIRST_COMPLETED)
            for done in [future for future in parsing if future.done()]:
                yield _outcome(parsing.pop(done), done.result())


def _without_seen_body(result: FetchResult, states: dict[str, FeedState]) -> FetchResult:
    """A body identical to the last one parsed holds nothing new: like a 304, it is not
    parsed again (and not kept)."""
    state = states.get(result.source.url)
    if state is None or result.body_hash is None or result.body_hash != state.body_hash:
        return result
    return replace(result, body=b"", is_unchanged=True)


def _outcome(result: FetchResult, parsed: ParseOutcome) -> FeedOutcome:
    stories, error, warnings, ttl = parsed
    # The collect table shows each warning; logged as a warning too, a command printed it
    # twice. The daemon, which prints no table, logs at INFO and so still has it.
    for warning in warnings:
        logger.info("feed %s: %s", result.source.url, warning)
    failed = _as_failed(result, error) if error else result
    is_parsed = result.is_ok and not result.is_not_modified and not result.is_unchanged
    return FeedOutcome(
        result=failed, stories=stories, warnings=warnings, ttl_minutes=ttl, is_parsed=is_parsed
    )


def _as_failed(result: FetchResult, error: str) -> FetchResult:
    # Forget the validators, so the next fetch gets the whole body again.
    return replace(result, error=error, error_kind="parse", etag=None, last_modified=None)
