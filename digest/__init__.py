"""digest: a daily newsletter digest generator.

Collects the day's headlines from feeds, condenses each story with a local summarization
model, and mails one edition a day rendered from Jinja templates.
"""

from digest.models import (
    Cluster,
    Delivery,
    DeliveryState,
    Digest,
    DigestItem,
    FeedFailure,
    FeedSource,
    FeedState,
    FetchResult,
    RenderedDigest,
    Story,
    Summary,
)

__version__ = "0.1.0"

__all__ = [
    "Cluster",
    "Delivery",
    "DeliveryState",
    "Digest",
    "DigestItem",
    "FeedFailure",
    "FeedSource",
    "FeedState",
    "FetchResult",
    "RenderedDigest",
    "Story",
    "Summary",
    "__version__",
]
