"""URL identity (digest/urls.py): story URLs and feed keys of IPv6 hosts."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from digest.urls import canonical_url, feed_url_key


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("http://[::1]:18082/x", "http://[::1]:18082/x"),
        ("HTTPS://[2001:DB8::1]:443/a?utm_source=x&b=1#top", "https://[2001:db8::1]/a?b=1"),
        ("http://reader@[fe80::1%25eth0]:80", "http://reader@[fe80::1%25eth0]/"),
    ],
)
def test_canonical_url_keeps_the_brackets_of_an_ipv6_host(url: str, canonical: str) -> None:
    assert canonical_url(url) == canonical
    assert urlsplit(canonical_url(url)).hostname == urlsplit(url).hostname


def test_feed_url_key_tells_an_ipv6_host_from_its_port() -> None:
    assert feed_url_key("http://[::1]:1808/feed") != feed_url_key("http://[::1:1808]/feed")
    assert feed_url_key("HTTP://[::1]:80/feed/") == feed_url_key("https://[::1]/feed")
