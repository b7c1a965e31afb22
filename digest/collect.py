"""Collect: fetch feeds and article pages over HTTP or from local files (the I/O half of the
collect stage; ``digest.parse`` is the pure half).

``fetch_all`` reads every feed concurrently (aiohttp) under a global and a per-host limit and
returns one ``FetchResult`` per feed; it never raises for one feed's failure. Each fetch has
connect and read timeouts plus one overall deadline that covers retries and redirects, a
body-size cap enforced on the decompressed bytes as they stream in, conditional GET, and
redirects followed by hand: at most ``MAX_REDIRECTS``, a permanent chain reported as the
feed's new address. Every connection, a redirect hop's too, is held to ``digest.addresses``:
an internal address only for the configured feed URL's own host and port. Timeouts and
5xx answers are retried with backoff; nothing else is, and not a 429 or 503 that says when
to come back (``Retry-After``, carried in the result along with a success's
``Cache-Control: max-age``, for digest.fetching's per-feed politeness). What the headers
say is read in ``digest.http_headers``; how a fetch ends (a failure's kind, the result) is
``digest.fetch_outcomes``; the address checks at each end of a connection are
``digest.address_checks``.
A ``FeedStream`` does the same, handing over each result as it comes. ``fetch_pages``
fetches article pages with the same rules (an internal address only on the host and port
of a configured feed that links to the page), and gives up on a host for the rest of the
run once it failed to answer ``give_up_after`` times in a row: its remaining pages come
back as ``skipped`` without a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import random
import threading
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import aiohttp

from digest import __version__
from digest.address_checks import refuse_literal, refuse_peer
from digest.addresses import AddressPolicy, IpNetwork, Origin, PolicyResolver, url_origin
from digest.fetch_outcomes import (
    NO_ANSWER_KINDS,
    FetchFailed,
    Response,
    body_hash,
    client_failure,
    failed,
    raise_for_status,
    response_of,
    succeeded,
)
from digest.http_headers import conditional_headers
from digest.models import FeedSource, FeedState, FetchResult
from digest.urls import is_http_url

USER_AGENT = f"digest/{__version__} (+https://pypi.org/project/digest/; daily newsletter digest)"
FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/json;q=0.9,"
    " application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)
PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"
MAX_REDIRECTS = 5
_PERMANENT = frozenset({301, 308})
_REDIRECT = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchLimits:
    timeout_seconds: float = 30.0  # the whole fetch of one feed: retries and redirects included
    connect_seconds: float = 10.0
    read_seconds: float = 15.0  # the longest silence between two reads
    max_bytes: int = 10_000_000
    concurrency: int = 16
    per_host: int = 4
    retries: int = 2
    backoff_seconds: float = 0.5
    # After this many fetches in a row from one host that got no answer (timeout, refused,
    # not found, unreachable), the host's other fetches are skipped; 0: never.
    give_up_after: int = 0
    # Internal addresses any fetch may connect to ([collect].allowed_internal_networks).
    allowed_internal_networks: tuple[IpNetwork, ...] = ()


# Feeds


def fetch_all(
    sources: Sequence[FeedSource],
    states: dict[str, FeedState],
    limits: FetchLimits,
    now: Callable[[], datetime],
    on_result: Callable[[int, FetchResult], FetchResult] | None = None,
) -> list[FetchResult]:
    """Fetch every feed concurrently; one result per source, in the same order.

    ``on_result(index, result)`` is called as each fetch ends, so the caller can start on it
    (parse it in another process, say) while the others are still on their way; what it
    returns is kept in the result's place (without the body, if the caller is done with it).
    """
    return asyncio.run(_fetch_all(sources, states, limits, now, on_result))


async def _fetch_all(
    sources: Sequence[FeedSource],
    states: dict[str, FeedState],
    limits: FetchLimits,
    now: Callable[[], datetime],
    on_result: Callable[[int, FetchResult], FetchResult] | None,
) -> list[FetchResult]:
    async with _Fetcher(limits, FEED_ACCEPT) as fetcher:

        async def job(index: int, source: FeedSource) -> FetchResult:
            result = await fetcher.feed(source, states.get(source.url), now)
            return on_result(index, result) if on_result is not None else result

        return list(await asyncio.gather(*(job(i, s) for i, s in enumerate(sources))))


class FeedStream:
    """Every feed fetched concurrently in a thread of its own, each result handed over as its
    fetch ends, so the caller can parse and store one while the others are on their way.
    Leaving the ``with`` block before every result was taken (an interrupt) cancels the
    fetches still running."""

    def __init__(
        self,
        sources: Sequence[FeedSource],
        states: dict[str, FeedState],
        limits: FetchLimits,
        now: Callable[[], datetime],
    ) -> None:
        self.sources, self.states, self.limits, self.now = sources, states, limits, now
        self.remaining = len(sources)
        self._results: queue.SimpleQueue[FetchResult] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._is_cancelled = False
        self._task: tuple[asyncio.AbstractEventLoop, asyncio.Task[object]] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest-fetch")
        self._fetching: Future[None] | None = None

    def __enter__(self) -> FeedStream:
        self._fetching = self._thread.submit(asyncio.run, self._run())
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.remaining:
            self._cancel()
        self._thread.shutdown(wait=True)

    def next_result(self, timeout: float | None = None) -> FetchResult | None:
        """The next fetch to end; None if none ended within ``timeout`` seconds."""
        waited = 0.0
        while timeout is None or waited < timeout:
            # In slices, so that a fetching thread that died is noticed.
            step = 0.5 if timeout is None else min(0.5, timeout - waited)
            try:
                result = self._results.get(timeout=step)
            except queue.Empty:
                self._check_alive()
                waited += step
                continue
            self.remaining -= 1
            return result
        return None

    def _check_alive(self) -> None:
        fetching = self._fetching
        if fetching is not None and fetching.done() and self._results.empty():
            fetching.result()  # raises what killed it
            raise RuntimeError("the fetching thread ended early")

    async def _run(self) -> None:
        with self._lock:
            task = asyncio.current_task()
            if self._is_cancelled or task is None:
                return
            self._task = (asyncio.get_running_loop(), task)
        async with _Fetcher(self.limits, FEED_ACCEPT) as fetcher:

            async def job(source: FeedSource) -> None:
                state = self.states.get(source.url)
                self._results.put(await fetcher.feed(source, state, self.now))

            await asyncio.gather(*(job(source) for source in self.sources))

    def _cancel(self) -> None:
        with self._lock:
            self._is_cancelled = True
            if self._task is not None:
                loop, task = self._task
                with contextlib.suppress(RuntimeError):  # its loop has finished already
                    loop.call_soon_threadsafe(task.cancel)


def fetch_pages(
    urls: Sequence[str],
    limits: FetchLimits,
    now: Callable[[], datetime],
    *,
    linked_from: Mapping[str, Collection[str]] | None = None,
) -> list[FetchResult]:
    """Fetch article pages concurrently, with the same limits and rules as feeds; a page of
    a host given up on (``limits.give_up_after``) is not fetched: its error kind is "skipped".

    ``linked_from`` maps a page to the configured URLs of the feeds linking to it: a page on
    the host and port of one of them may be on an internal address; no other page may."""
    feeds = linked_from or {}

    async def run() -> list[FetchResult]:
        async with _Fetcher(limits, PAGE_ACCEPT) as fetcher:
            jobs = (fetcher.page(url, _page_origin(url, feeds.get(url, ())), now) for url in urls)
            return list(await asyncio.gather(*jobs))

    return asyncio.run(run())


def _page_origin(url: str, feed_urls: Collection[str]) -> Origin | None:
    """The page's host and port if a feed linking to it is configured there, else None."""
    origin = url_origin(url)
    return origin if origin is not None and origin in map(url_origin, feed_urls) else None


class _Fetcher:
    """The HTTP sessions (one per address policy) and the concurrency limits shared by every
    fetch it makes."""

    def __init__(self, limits: FetchLimits, accept: str) -> None:
        self.limits = limits
        self.accept = accept
        # Our own semaphores, not the connector's pool: a feed's deadline starts when its
        # turn comes, so a long list on one host does not time out while waiting.
        self._overall = asyncio.Semaphore(limits.concurrency)
        self._per_host: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(limits.per_host)
        )
        self._no_answer_in_a_row: defaultdict[str, int] = defaultdict(int)
        self._given_up: dict[str, str] = {}  # host -> why its remaining fetches are skipped
        self._in_flight: defaultdict[str, int] = defaultdict(int)
        self._landed: defaultdict[str, asyncio.Condition] = defaultdict(asyncio.Condition)
        self._sessions: dict[AddressPolicy, aiohttp.ClientSession] = {}

    async def __aenter__(self) -> _Fetcher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for session in self._sessions.values():
            await session.close()

    def _session(self, policy: AddressPolicy) -> aiohttp.ClientSession:
        """The session for fetches under ``policy``: one per policy, as a pooled connection
        or a cached lookup (both made under one policy) must not serve a fetch under
        another. No proxy from the environment is used (``trust_env`` stays off)."""
        if policy not in self._sessions:
            resolver = PolicyResolver(policy)
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, resolver=resolver)
            headers = {"User-Agent": USER_AGENT, "Accept": self.accept}
            self._sessions[policy] = aiohttp.ClientSession(
                connector=connector, headers=headers, trust_env=False
            )
        return self._sessions[policy]

    async def feed(
        self, source: FeedSource, state: FeedState | None, now: Callable[[], datetime]
    ) -> FetchResult:
        """Fetch one feed in its turn, on an internal address only for the host and port
        of its configured URL; every failure comes back as a result."""
        return await self._in_turn(source, state, now, url_origin(source.url))

    async def page(
        self, url: str, origin: Origin | None, now: Callable[[], datetime]
    ) -> FetchResult:
        """Fetch one article page in its turn, on an internal address only for ``origin``."""
        return await self._in_turn(FeedSource(url=url), None, now, origin)

    async def _in_turn(
        self,
        source: FeedSource,
        state: FeedState | None,
        now: Callable[[], datetime],
        origin: Origin | None,
    ) -> FetchResult:
        url = (state.fetch_url if state else None) or source.url
        if not is_http_url(url):
            return _read_local(source, self.limits, now())
        policy = AddressPolicy(
            origin=origin, allowed_networks=self.limits.allowed_internal_networks
        )
        host = urlsplit(url).hostname or ""
        # The host's turn first: waiting for it must not hold one of the overall slots, or
        # a long list of pages on one slow host keeps every other host waiting behind it.
        async with self._per_host[host]:
            if self.limits.give_up_after and self._no_answer_in_a_row[host]:
                await self._settled(host)
            async with self._overall:
                if host in self._given_up:
                    return failed(source, now(), FetchFailed("skipped", self._given_up[host]))
                self._in_flight[host] += 1
                try:
                    return await self._fetch(source, state, url, policy, now)
                finally:
                    self._in_flight[host] -= 1
                    async with self._landed[host]:
                        self._landed[host].notify_all()

    async def _settled(self, host: str) -> None:
        """Wait until no other fetch from the host is under way.

        Called once the host has left a fetch unanswered: the fetches started with that one
        are likely to fail the same way, and each counts before the host is tried again, so
        a dead host costs one deadline rather than two."""
        async with self._landed[host]:
            await self._landed[host].wait_for(lambda: not self._in_flight[host])

    async def _fetch(
        self,
        source: FeedSource,
        state: FeedState | None,
        url: str,
        policy: AddressPolicy,
        now: Callable[[], datetime],
    ) -> FetchResult:
        host = urlsplit(url).hostname or ""
        try:
            response = await asyncio.wait_for(
                self._with_retries(url, state, policy), self.limits.timeout_seconds
            )
        except TimeoutError:
            failure = FetchFailed("timeout", f"timed out after {self.limits.timeout_seconds:g} s")
        except FetchFailed as caught:
            failure = caught
        else:
            self._no_answer_in_a_row[host] = 0
            return succeeded(source, now(), response)
        self._count_failure(host, failure)
        return failed(source, now(), failure)

    def _count_failure(self, host: str, failure: FetchFailed) -> None:
        """Give up on a host after ``give_up_after`` fetches in a row it did not answer."""
        if failure.kind not in NO_ANSWER_KINDS:
            self._no_answer_in_a_row[host] = 0  # it answered, if not usefully
            return
        self._no_answer_in_a_row[host] += 1
        count, limit = self._no_answer_in_a_row[host], self.limits.give_up_after
        if limit and count >= limit and host not in self._given_up:
            self._given_up[host] = (
                f"not fetched: {host} did not answer {count} times in a row in this run"
                f" (last: {failure.kind})"
            )

    async def _with_retries(
        self, url: str, state: FeedState | None, policy: AddressPolicy
    ) -> Response:
        attempt = 0
        while True:
            try:
                return await self._follow(url, state, policy)
            except FetchFailed as failure:
                # A server that says when to come back is not asked again before then.
                retryable = failure.kind == "timeout" or (failure.status or 0) >= 500
                retryable = retryable and failure.retry_after is None
                if not retryable or attempt >= self.limits.retries:
                    raise
            # Exponential backoff with jitter; the overall deadline still bounds the total.
            delay = self.limits.backoff_seconds * 2**attempt
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            attempt += 1

    async def _follow(self, url: str, state: FeedState | None, policy: AddressPolicy) -> Response:
        """GET ``url``, following at most MAX_REDIRECTS redirects by hand, each hop held to
        the same address policy."""
        current, is_permanent = url, True
        for _ in range(MAX_REDIRECTS + 1):
            status, location, response = await self._get(current, state, policy)
            if response is not None:
                moved = current if is_permanent and current != url else None
                return replace(response, moved_to=moved)
            assert location is not None
            target = urljoin(current, location)
            if not is_http_url(target):
                raise FetchFailed("redirect", f"redirected to a non-HTTP address: {target}")
            is_permanent = is_permanent and status in _PERMANENT
            current = target
        raise FetchFailed("redirect", f"more than {MAX_REDIRECTS} redirects")

    async def _get(
        self, url: str, state: FeedState | None, policy: AddressPolicy
    ) -> tuple[int, str | None, Response | None]:
        """One request: (status, redirect location, None) or (status, None, response)."""
        refuse_literal(url, policy)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.limits.connect_seconds, sock_read=self.limits.read_seconds
        )
        try:
            async with self._session(policy).get(
                url, headers=conditional_headers(state), timeout=timeout, allow_redirects=False
            ) as http:
                refuse_peer(url, http, policy)
                if http.status in _REDIRECT and "Location" in http.headers:
                    return http.status, http.headers["Location"], None
                raise_for_status(http.status, http.reason, http.headers)
                body = b"" if http.status == 304 else await self._read_body(http)
                return http.status, None, response_of(http, body)
        except TimeoutError as exc:
            raise FetchFailed("timeout", f"no answer within the read timeout ({url})") from exc
        except aiohttp.ClientError as exc:
            raise client_failure(exc, url) from exc

    async def _read_body(self, http: aiohttp.ClientResponse) -> bytes:
        declared = http.content_length
        if declared is not None and declared > self.limits.max_bytes:
            raise FetchFailed("too-large", self._too_large(f"declares {declared:,} bytes"))
        body = bytearray()
        # Decompressed chunks: a gzip bomb is stopped by the same cap as a huge body.
        async for chunk in http.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > self.limits.max_bytes:
                raise FetchFailed("too-large", self._too_large("sent more"))
        return bytes(body)

    def _too_large(self, what: str) -> str:
        return f"response larger than {self.limits.max_bytes:,} bytes (it {what})"


def _read_local(source: FeedSource, limits: FetchLimits, fetched_at: datetime) -> FetchResult:
    path = Path(source.url)
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            failure = FetchFailed("too-large", f"file larger than {limits.max_bytes:,} bytes")
            return failed(source, fetched_at, failure)
        body = path.read_bytes()
    except FileNotFoundError:
        return failed(source, fetched_at, FetchFailed("file", f"no such file: {path}"))
    except OSError as exc:
        failure = FetchFailed("file", f"cannot read {path}: {exc.strerror or exc}")
        return failed(source, fetched_at, failure)
    content_type = "application/feed+json" if path.suffix.lower() == ".json" else None
    return FetchResult(
        source=source,
        fetched_at=fetched_at,
        body=body,
        content_type=content_type,
        body_hash=body_hash(body),
    )
