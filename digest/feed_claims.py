"""Feed claims: several collectors (processes, machines) sharing one store fetch each feed
once per round, and each host from one collector at a time, so that ``[collect].per_host``
holds across all of them.

Before fetching, a collector claims the hosts of its due http(s) feeds (``Store.claim_feeds``):
all of a host's feeds together, under a lease on the store's clock, which a thread of the
collector renews while it runs and which it gives up at its end. A due feed whose host
another live collector has is left to it (reported "skipped", not failed). Once claimed, the
feeds' state is read again: one another collector fetched since it was first read is held
by that fetch's politeness (its minimum interval, TTL, max-age) and skipped as not due. So a
round is the feed's minimum interval, and at least one collect run: a collector started
after another's run ended fetches again what is due, as a single collector always has. A
collector that dies stops renewing: once its lease runs out its hosts are anyone's (at once,
for a collector on the same machine that finds its process gone), and the feeds it did not
store are fetched by the next collector. Local files are read by every
collector (there is no server to spare).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from datetime import timedelta
from urllib.parse import urlsplit

from digest.errors import StoreError
from digest.models import DueFeed, FeedSource, FeedState, FeedTaken
from digest.runtime import Runtime, drop_ended_holders
from digest.store import Store
from digest.urls import is_http_url

logger = logging.getLogger(__name__)

# How long a claimed host stays claimed without being renewed: how soon the hosts of a
# collector that died are anyone's again. Renewed four times as often.
FEED_LEASE = timedelta(seconds=60)


def claim_due_feeds(
    store: Store, holder: str, sources: Sequence[FeedSource], states: dict[str, FeedState]
) -> tuple[list[FeedSource], dict[str, FeedTaken]]:
    """The due feeds this collector fetches (its claimed ones, and local files), and those
    another collector has, by URL."""
    due = [_due(s, states.get(s.url)) for s in sources if is_http_url(s.url)]
    drop_ended_holders(store)
    claims = store.claim_feeds(holder, due, lease=FEED_LEASE)
    taken = {t.url: t for t in claims.taken}
    return [s for s in sources if s.url not in taken], taken


def _due(source: FeedSource, state: FeedState | None) -> DueFeed:
    url = (state.fetch_url if state else None) or source.url  # where it is fetched from
    return DueFeed(url=source.url, host=urlsplit(url).hostname or "")


@contextlib.contextmanager
def claims_kept(runtime: Runtime, holder: str) -> Iterator[None]:
    """Renew the holder's feed claims while the block runs (from a thread with a store
    connection of its own); give them up at its end, however it ends."""
    done = threading.Event()
    renewing = threading.Thread(
        target=_renew, args=(runtime, holder, done), name="digest-feed-claims", daemon=True
    )
    renewing.start()
    try:
        yield
    finally:
        done.set()
        renewing.join()
        with contextlib.suppress(StoreError):  # they run out by themselves
            runtime.store.release_feed_claims(holder)


def _renew(runtime: Runtime, holder: str, done: threading.Event) -> None:
    every = FEED_LEASE.total_seconds() / 4
    if done.wait(every):
        return  # a short collect: no second connection opened
    try:
        with runtime.reopen() as own:
            while True:
                own.store.renew_feed_claims(holder, lease=FEED_LEASE)
                if done.wait(every):
                    return
    except StoreError as exc:
        logger.warning(
            "could not renew this collector's feed claims (%s): another collector may take"
            " its hosts once they run out",
            exc,
        )
