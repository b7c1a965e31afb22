"""Hostile feed text and links (an XSS corpus), and an edition made of them, for the render
tests and the browser test."""

from __future__ import annotations

from datetime import UTC, date, datetime

from digest.models import Cluster, Digest, DigestItem, FeedFailure, Story, Summary
from tests.conftest import make_story

HOSTILE_TEXT = (
    "<script>alert(1)</script>",
    '"><script>alert(1)</script>',
    "'><img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">click</a>',
    '<div style="width: expression(alert(1))">wide</div>',
    "</td></tr></table><iframe src=//evil.example></iframe>",
    "<svg/onload=alert(1)>",
    "<!-- unclosed comment",
    "<![CDATA[ ]]> ]]>",
    "<style>body{background:url(javascript:alert(1))}</style>",
    "</title></style></textarea><script>alert(1)</script>",
    '<base href="https://evil.example/">',
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    '<a href="jav&#x09;ascript:alert(1)">tab</a>',
    "<b>unclosed <i>markup <p",
    "Subject: hi\r\nBcc: victim@example.org\r\n\r\n<html>",
    "{{ 7*7 }} {% raw %}",
    '<link rel="stylesheet" href="https://evil.example/x.css">',
    "<object data=x></object><embed src=x><form action=x><input></form>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
)
HOSTILE_URLS = (
    "javascript:alert(1)",
    " JaVaScRiPt:alert(1)",
    "java\tscript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    'https://ok.example/"onmouseover="alert(1)',
    "//evil.example/no-scheme",
)


def _story(n: int, text: str, url: str) -> Story:
    return make_story(
        n,
        feed_url=f"https://feed{n}.example/rss",
        source_name=text,
        category=text,
        url=url,
        title=text,
        text="",
        html="",
    )


def hostile_digest() -> Digest:
    """An edition whose every feed-given string is hostile, and so are its failed feeds."""
    items = []
    for n, text in enumerate(HOSTILE_TEXT):
        url = HOSTILE_URLS[n % len(HOSTILE_URLS)]
        lead = _story(n, text, url)
        other = _story(n + 1000, f"{text} (other)", HOSTILE_URLS[(n + 1) % len(HOSTILE_URLS)])
        cluster = Cluster(cluster_id=f"c{n}", lead=lead, others=(other,))
        summary = Summary(cluster_id=f"c{n}", text=f"Summary: {text}", model_id="lead")
        items.append(DigestItem(cluster=cluster, summary=summary))
    failures = tuple(
        FeedFailure(feed_url=f"https://bad{n}.example", name=text, error=text)
        for n, text in enumerate(HOSTILE_TEXT[:5])
    )
    return Digest(
        edition_on=date(2024, 3, 1),
        generated_at=datetime(2024, 3, 1, 4, tzinfo=UTC),
        items=tuple(items),
        failed_feeds=failures,
    )
