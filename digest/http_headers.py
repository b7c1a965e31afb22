"""What HTTP headers say between digest and a feed's server: the conditional GET a fetch
sends, and the ``Retry-After`` and ``Cache-Control: max-age`` an answer carries (pure; used
by digest.collect and by digest.fetching's per-feed politeness)."""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping
from datetime import UTC, datetime

from digest.models import FeedState


def conditional_headers(state: FeedState | None) -> dict[str, str]:
    headers = {}
    if state and state.etag:
        headers["If-None-Match"] = state.etag
    if state and state.last_modified:
        headers["If-Modified-Since"] = state.last_modified
    return headers


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """How long a ``Retry-After`` header (seconds, or an HTTP date) asks us to wait."""
    value = headers.get("Retry-After", "").strip()
    if value.isdigit():
        return float(value)
    try:
        until = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if until.tzinfo is None:
        return None
    # Measured against the server's own clock when it sends one, so our clock's error
    # does not count.
    sent = headers.get("Date")
    try:
        base = email.utils.parsedate_to_datetime(sent) if sent else datetime.now(UTC)
    except (TypeError, ValueError):
        base = datetime.now(UTC)
    if base.tzinfo is None:
        base = base.replace(tzinfo=UTC)
    return max(0.0, (until - base).total_seconds())


_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)", re.IGNORECASE)


def max_age_seconds(headers: Mapping[str, str]) -> int | None:
    """``Cache-Control: max-age`` of an answer, unless it also says no-cache or no-store."""
    value = headers.get("Cache-Control", "")
    if re.search(r"no-cache|no-store", value, re.IGNORECASE):
        return None
    match = _MAX_AGE.search(value)
    return int(match[1]) if match else None
