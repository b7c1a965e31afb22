"""URL identity: when two URLs name the same story or the same feed, and which URLs are web
addresses. Pure: no I/O.

``canonical_url`` is a story's URL as stored and compared (tracking parameters, fragment and
default port gone); ``feed_url_key`` is what makes two feed URLs in the settings or an OPML
file the same feed; ``is_http_url`` and ``is_web_url`` tell a web address from a local path.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

_TRACKING_PARAMS = re.compile(r"^(utm_\w+|fbclid|gclid|dclid|msclkid|mc_[ce]id|_hsenc|_hsmi)$")


def is_http_url(url: str) -> bool:
    """Whether the URL's scheme is http or https (a host is not required)."""
    if url.startswith(("https://", "http://")):  # the common case, without urlsplit's cost
        return True
    return urlsplit(url).scheme.lower() in ("http", "https")


def is_web_url(url: str) -> bool:
    """Whether the URL is an http(s) URL with a host: one a browser or fetcher can open."""
    parts = urlsplit(url)
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def canonical_url(url: str) -> str:
    """Lower-case scheme and host, no default port, no fragment, no tracking parameters."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    default_port = {"http": 80, "https": 443}.get(scheme)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = _host(parts)
    netloc = host if port in (None, default_port) else f"{host}:{port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    query = urlencode(
        [
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if not _TRACKING_PARAMS.match(k)
        ]
    )
    return urlunsplit((scheme, netloc, parts.path or "/", query, ""))


def feed_url_key(url: str) -> str:
    """What makes two feed URLs the same feed: case, default port, scheme, trailing slash aside."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https"):
        return url.strip()
    try:
        port = "" if parts.port in (None, 80, 443) else f":{parts.port}"
    except ValueError:  # not a number: keep the URL as written
        port = ""
    query = f"?{parts.query}" if parts.query else ""
    return f"{_host(parts)}{port}{parts.path.rstrip('/')}{query}"


def _host(parts: SplitResult) -> str:
    """The host in lower case as a URL writes it: an IPv6 address keeps its brackets."""
    host = (parts.hostname or "").lower()
    return f"[{host}]" if ":" in host else host
