"""One fetch's outcome: the failure that ends it, classified by kind (an HTTP status, a
client error, a refused address), or the answer it got, and the ``FetchResult`` either
becomes."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import aiohttp

from digest.addresses import REFUSED_HINT, RefusedAddressError
from digest.http_headers import max_age_seconds, retry_after_seconds
from digest.models import FeedSource, FetchResult

# Failures that say the host did not answer at all, as opposed to an answer we cannot use.
NO_ANSWER_KINDS = frozenset({"timeout", "connection-refused", "dns", "network"})


class FetchFailed(Exception):
    """One fetch failed for a reason worth reporting; ``kind`` classifies it."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """What a fetch got: a success or a 304, after any redirects."""

    status: int
    body: bytes
    content_type: str | None
    etag: str | None
    last_modified: str | None
    moved_to: str | None
    max_age: int | None = None


def refused(url: str, why: str) -> FetchFailed:
    return FetchFailed("refused", f"refused {url}: {why}; {REFUSED_HINT}")


def client_failure(exc: aiohttp.ClientError, url: str) -> FetchFailed:
    """A client error as a failure; a connection refused or a host not found said plainly."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        if isinstance(exc.os_error, RefusedAddressError):
            return refused(url, exc.os_error.description)
        return FetchFailed("dns", f"cannot resolve the host name {exc.host}: {exc.os_error}")
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(
        exc.os_error, ConnectionRefusedError
    ):
        return FetchFailed("connection-refused", f"{exc.host}:{exc.port} refused the connection")
    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return FetchFailed("network", message)


def raise_for_status(status: int, reason: str | None, headers: Mapping[str, str]) -> None:
    if status < 400:
        return
    message = f"HTTP {status} {reason or ''}".rstrip()
    if status == 410:
        message += ": the feed is gone; digest stops fetching it until it is re-added"
    retry_after = retry_after_seconds(headers) if status in (429, 503) else None
    if retry_after is not None:
        message += f" (Retry-After: {retry_after:g} s)"
    kind = "gone" if status == 410 else "http"
    raise FetchFailed(kind, message, status=status, retry_after=retry_after)


def response_of(http: aiohttp.ClientResponse, body: bytes) -> Response:
    return Response(
        status=http.status,
        body=body,
        content_type=http.headers.get("Content-Type"),
        etag=http.headers.get("ETag"),
        last_modified=http.headers.get("Last-Modified"),
        moved_to=None,
        max_age=max_age_seconds(http.headers),
    )


def succeeded(source: FeedSource, fetched_at: datetime, response: Response) -> FetchResult:
    return FetchResult(
        source=source,
        fetched_at=fetched_at,
        status=response.status,
        body=response.body,
        content_type=response.content_type,
        etag=response.etag,
        last_modified=response.last_modified,
        moved_to=response.moved_to,
        body_hash=body_hash(response.body) if response.body else None,
        max_age_seconds=response.max_age,
    )


def failed(source: FeedSource, fetched_at: datetime, failure: FetchFailed) -> FetchResult:
    return FetchResult(
        source=source,
        fetched_at=fetched_at,
        status=failure.status,
        error=failure.message,
        error_kind=failure.kind,
        retry_after_seconds=failure.retry_after,
    )


def body_hash(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()
