"""digest: a daily newsletter digest generator.

Collects the day's headlines from feeds, condenses each story with a local summarization
model, and mails one edition a day rendered from Jinja templates.
"""

from digest.models import (
    Article,
    CachedSummary,
    Cluster,
    Delivery,
    DeliveryState,
    Digest,
    DigestItem,
    Embedding,
    FeedFailure,
    FeedHealth,
    FeedSource,
    FeedState,
    FetchFailure,
    FetchResult,
    FilterCount,
    JobRun,
    KeywordRules,
    OutgoingMessage,
    ParsedFeed,
    RenderedDigest,
    SendLockHolder,
    StoreCheck,
    Story,
    Subscriber,
    SubscriberState,
    Summary,
)

__version__ = "0.1.0"

__all__ = [
    "Article",
    "CachedSummary",
    "Cluster",
    "Delivery",
    "DeliveryState",
    "Digest",
    "DigestItem",
    "Embedding",
    "FeedFailure",
    "FeedHealth",
    "FeedSource",
    "FeedState",
    "FetchFailure",
    "FetchResult",
    "FilterCount",
    "JobRun",
    "KeywordRules",
    "OutgoingMessage",
    "ParsedFeed",
    "RenderedDigest",
    "SendLockHolder",
    "StoreCheck",
    "Story",
    "Subscriber",
    "SubscriberState",
    "Summary",
    "__version__",
]
