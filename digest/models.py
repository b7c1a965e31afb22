"""The records that flow between the pipeline stages, and nothing else.

FeedSource (config) -> FetchResult (one HTTP or file read) -> Story (one normalised entry)
-> Cluster (one real-world story, its lead and the other outlets) -> Summary
-> Digest (one edition) -> RenderedDigest (subject, HTML, text) -> Delivery (one recipient),
who is an active Subscriber.

Every record is a frozen value: sequences are tuples, datetimes are aware UTC (``*_at``),
local calendar days are ``date`` (``*_on``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime
from email.headerregistry import Address
from email.utils import parseaddr
from enum import StrEnum
from typing import Literal

TextSource = Literal["feed", "article"]  # where a story's text came from
FilterField = Literal["headline", "text"]  # what a keyword filter looks in


@dataclass(frozen=True, slots=True, kw_only=True)
class KeywordRules:
    """One keyword filter (the global ``[filters]`` or a feed's): a story is kept when some
    ``include`` term is in ``fields`` (or there is none) and no ``exclude`` term is. Terms
    are whole words or phrases, case-insensitive; regular expressions when ``is_regex``."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    fields: tuple[FilterField, ...] = ("headline", "text")
    is_regex: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class FilterCount:
    """How many of an edition's stories one keyword list left out (a story failing several
    counts once, under the first: global include, global exclude, feed include, exclude)."""

    rule: Literal["include", "exclude"]
    feed_url: str | None = None  # None: the global [filters]
    feed_name: str | None = None
    removed: int = 0

    @property
    def label(self) -> str:
        """'global exclude', 'feed BBC News include'."""
        scope = "global" if self.feed_url is None else f"feed {self.feed_name or self.feed_url}"
        return f"{scope} {self.rule}"


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedSource:
    """One feed from the config: an http(s) URL or a local file path."""

    url: str
    name: str | None = None
    category: str | None = None
    is_deduped: bool = True  # False: this feed's stories are never merged with others
    full_text: bool = False  # fetch the article page when an entry is only a teaser
    priority: int = 0  # breaks ties between equally covered stories in a section
    min_interval_minutes: int = 0  # never fetched more often than this (http(s) feeds)
    keywords: KeywordRules = KeywordRules()  # this feed's own keyword filter

    @property
    def title(self) -> str:
        return self.name or self.url


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedState:
    """What the store remembers about a feed between fetches."""

    url: str
    etag: str | None = None
    last_modified: str | None = None
    last_success_at: datetime | None = None
    last_error_at: datetime | None = None
    last_error: str | None = None
    fetch_url: str | None = None  # where a permanent redirect moved the feed
    is_gone: bool = False  # answered 410 Gone: not fetched again until re-added
    body_hash: str | None = None  # of the last body parsed: the same body is not parsed again
    ttl_minutes: int | None = None  # the feed's own RSS <ttl>, as last read
    not_before: datetime | None = None  # politeness: not fetched again before this
    hold_reason: str | None = None  # why not before then (TTL, max-age, Retry-After, ...)


@dataclass(frozen=True, slots=True, kw_only=True)
class DueFeed:
    """A feed a collector means to fetch now (see ``Store.claim_feeds``)."""

    url: str
    host: str  # the host it is fetched from: a collector claims all of a host's feeds at once


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedTaken:
    """A due feed another collector is fetching: its host is claimed under a live lease, which
    ends at ``until`` (on the store's clock) unless renewed."""

    url: str
    holder: str
    until: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedClaims:
    """What one claim gave a collector: the feeds it fetches, and those others have."""

    claimed: tuple[str, ...] = ()
    taken: tuple[FeedTaken, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchFailure:
    """One failed fetch of a feed, as the store keeps it."""

    feed_url: str
    failed_at: datetime
    kind: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedHealth:
    """How a configured feed is doing: what ``digest feeds list`` shows."""

    source: FeedSource
    last_success_at: datetime | None = None
    last_error_at: datetime | None = None
    last_error: str | None = None
    last_error_kind: str | None = None
    fetch_url: str | None = None
    is_gone: bool = False
    stories: int = 0
    failures: int = 0

    @property
    def status(self) -> str:
        """new (never fetched), ok, failing or gone."""
        if self.is_gone:
            return "gone"
        if self.last_error:
            return "failing"
        return "ok" if self.last_success_at else "new"


@dataclass(frozen=True, slots=True, kw_only=True)
class Article:
    """The main text extracted from a story's article page (or why there is none)."""

    url: str
    fetched_at: datetime
    text: str | None = None
    error: str | None = None
    image_url: str | None = None  # the page's og:image (absolute http(s)), if it names one


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchResult:
    """The outcome of one fetch: a body to parse, "not modified", or an error."""

    source: FeedSource
    fetched_at: datetime
    status: int | None = None
    body: bytes = b""
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    error: str | None = None
    # timeout, connection-refused, dns, network, http, too-large, redirect, refused (an
    # internal address), parse; for an article page also skipped (its host was given up on)
    error_kind: str | None = None
    moved_to: str | None = None  # the target of a permanent redirect, to fetch from now on
    body_hash: str | None = None  # sha256 of the body, to skip parsing an unchanged one
    is_unchanged: bool = False  # the same body as the last one parsed: not parsed again
    max_age_seconds: int | None = None  # Cache-Control: max-age of a successful answer
    retry_after_seconds: float | None = None  # Retry-After of a 429 or 503 answer

    @property
    def is_gone(self) -> bool:
        return self.status == 410

    @property
    def is_not_modified(self) -> bool:
        return self.status == 304

    @property
    def is_ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True, kw_only=True)
class Story:
    """One feed entry, normalised: plain-text title, absolute link, sanitised HTML and text."""

    story_id: str
    feed_url: str
    source_name: str
    category: str | None
    url: str
    title: str
    published_at: datetime | None
    author: str | None = None
    categories: tuple[str, ...] = ()
    text: str = ""
    html: str = ""
    text_source: TextSource = "feed"
    is_deduped: bool = True
    first_seen_at: datetime | None = None  # when digest first read it (stored stories)
    language: str | None = None  # ISO 639-1 code ("en", "de"), None when not known
    image_url: str | None = None  # the lead image the feed or the article page names


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedFeed:
    """What one fetched body yielded: its stories, and what was wrong but survivable."""

    stories: tuple[Story, ...]
    warnings: tuple[str, ...] = ()
    ttl_minutes: int | None = None  # RSS <ttl>: how long the publisher asks readers to wait


@dataclass(frozen=True, slots=True, kw_only=True)
class Embedding:
    """One text's sentence vector as the store keeps it: ``dimensions`` float32 values,
    little-endian, in ``vector``."""

    model_key: str  # the model and all that changes its vectors (digest.encoder.model_key)
    text_hash: str  # "sha256:..." of the text embedded
    dimensions: int
    vector: bytes

    @property
    def is_whole(self) -> bool:
        """Does ``vector`` hold exactly ``dimensions`` float32 values?"""
        return self.dimensions > 0 and len(self.vector) == 4 * self.dimensions


@dataclass(frozen=True, slots=True, kw_only=True)
class CachedSummary:
    """One summary as the store's cache keeps it, by the model that wrote it and what it
    summarised (the hash of a headline and text), so that no run writes it twice."""

    model_id: str
    text_hash: str  # "sha256:..." of what was summarised
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Cluster:
    """One real-world story: the lead story and the same story from other outlets."""

    cluster_id: str
    lead: Story
    others: tuple[Story, ...] = ()

    @property
    def source_names(self) -> tuple[str, ...]:
        """The names of the outlets covering the story, the lead's first, each once."""
        return tuple(dict.fromkeys(s.source_name for s in (self.lead, *self.others)))


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """The condensed text of a cluster, and which model wrote it."""

    cluster_id: str
    text: str
    model_id: str
    is_from_full_text: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestItem:
    cluster: Cluster
    summary: Summary


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedFailure:
    """A feed that could not be read for this edition, shown in the footer."""

    feed_url: str
    name: str
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Digest:
    """One edition: the ranked, summarised clusters for a local calendar day."""

    edition_on: date
    generated_at: datetime
    items: tuple[DigestItem, ...]  # most important first
    failed_feeds: tuple[FeedFailure, ...] = ()
    section_order: tuple[str, ...] = ()  # sections in reading order; others follow as they come
    filter_counts: tuple[FilterCount, ...] = ()  # what each configured keyword list removed

    @property
    def story_ids(self) -> tuple[str, ...]:
        ids = []
        for item in self.items:
            ids.append(item.cluster.lead.story_id)
            ids.extend(s.story_id for s in item.cluster.others)
        return tuple(ids)


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderedDigest:
    """What goes into the email: subject line, HTML part and plain-text part."""

    edition_on: date
    subject: str
    html: str
    text: str
    trimmed_stories: int = 0  # the least important stories left out to stay under the size cap


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One recipient's copy of one edition, as the delivery ledger records it."""

    edition_on: date
    recipient: str
    message_id: str
    state: DeliveryState
    sent_at: datetime | None = None
    detail: str | None = None
    attempts: int = 0  # hand-overs started (a row moved to "sending")

    @property
    def address(self) -> str:
        """The bare, lower-cased address: what identifies a recipient in the ledger."""
        return _bare_address(self.recipient).lower()


class SubscriberState(StrEnum):
    PENDING = "pending"  # asked to join, not confirmed yet
    ACTIVE = "active"  # gets every edition
    UNSUBSCRIBED = "unsubscribed"  # asked to stop (or removed by the operator)
    BOUNCED = "bounced"  # the mail server refused the address for good


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscriber:
    """A reader of one list, as the store keeps them: their state and the last change to it.

    ``subscriber_id`` is the store's random, stable id (what a signed link names);
    ``address`` has its domain in lower case and its local part as given, and is compared
    case-insensitively. ``how`` says what made the last change ("settings", "cli",
    "import", "form", "one-click", "bounce"); ``reason`` why, when there is more to say
    (a bounce's server answer). ``bounce_count`` counts consecutive editions refused.
    """

    subscriber_id: str
    list_slug: str
    address: str
    name: str | None = None
    state: SubscriberState
    created_at: datetime
    state_changed_at: datetime
    how: str
    reason: str | None = None
    bounce_count: int = 0
    last_bounce_on: date | None = None  # the edition of the latest counted bounce

    @property
    def recipient(self) -> str:
        """The address with its display name, as a message's To header has it."""
        return str(Address(self.name, addr_spec=self.address)) if self.name else self.address


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRun:
    """One run of a daemon job (or an edition it skipped), as the store keeps it.

    ``outcome``: ok, late (an edition sent after its time, within the grace), missed (an
    edition skipped after the grace), empty (nothing to send), failed, or stopped.
    """

    job: str  # "collect" or "edition"
    started_at: datetime
    finished_at: datetime
    outcome: str
    summary: str = ""
    failures: tuple[str, ...] = ()  # what failed: feeds, recipients, or the error
    edition_on: date | None = None
    scheduled_at: datetime | None = None  # for an edition: the send time it stands for


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreCheck:
    """What ``digest check`` found of the store: its engine and version, where it is, and its
    migrations applied and pending; ``problem`` if it could not be read."""

    engine: str  # "SQLite" or "PostgreSQL"
    location: str  # the file, or host:port/database
    version: str | None = None
    exists: bool = True  # False: no file (or no tables) yet, the first write makes it
    applied: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    problem: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SendLockHolder:
    """The sender holding a store's send lock, as its lock file tells (None: not told)."""

    pid: int | None = None
    command: str | None = None
    since_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutgoingMessage:
    """One recipient's message as handed to a mail backend: envelope and wire bytes."""

    recipient: str  # as configured, display name and all
    sender: str  # the bare envelope address (MAIL FROM)
    message_id: str
    data: bytes  # the whole message, CRLF line ends

    @property
    def address(self) -> str:
        """The bare envelope address of the recipient (RCPT TO)."""
        return _bare_address(self.recipient)


# The ledger asks each row for its address several times per message sent; parsing costs
# ~40 us a time, a measurable share of a 1,000-recipient send.
@functools.lru_cache(maxsize=65536)
def _bare_address(recipient: str) -> str:
    return parseaddr(recipient)[1]
