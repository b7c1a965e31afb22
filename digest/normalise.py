"""Normalise: a ``RawFeed`` -> ``Story`` records, whichever reader read it. Pure.

Each entry becomes a story with a plain-text title, an absolute canonical link, a stable id,
an aware UTC time, categories, its lead image's address (``image_url``), and its body as
sanitised HTML (nh3) and as clean text;
mojibake is repaired where ftfy is sure, and long fields are clipped. An entry without an
http(s) link, or without a title or text, is skipped and counted. Then the feed's own
boilerplate (lines it repeats, the section label before its titles) is cleaned away, and
each story gets its language (``digest.language``: the text's, the feed's declaration helping).
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from functools import partial
from urllib.parse import quote, urldefrag, urljoin, urlsplit

import ftfy
import nh3

from digest.clean import clean_text, cut_length, repeated_edges, repeated_lines
from digest.entries import RawEntry, RawFeed
from digest.language import declared_language, story_language
from digest.models import FeedSource, Story
from digest.sentence_kinds import ends_like_sentence, is_cut
from digest.urls import canonical_url, is_http_url, is_web_url

# Where a block opens or ends, or a <br>: a caption before a heading ("...from 2002</figcaption>
# <h2>I Need to...") or text before a paragraph is a line of its own, not glued to the next.
_BLOCK_EDGE = re.compile(
    r"(?i)<\s*(?:br|hr|/?\s*(?:p|div|li|ul|ol|dl|dt|dd|h[1-6]|tr|table|blockquote|pre|figure"
    r"|figcaption|section|article|header|footer|aside|nav|address|details|summary|caption))"
    r"\b[^>]*>"
)
_WHITESPACE = re.compile(r"\s+")
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_MAX_CATEGORIES = 20


def to_stories(feed: RawFeed, source: FeedSource, fetched_at: datetime) -> tuple[list[Story], str]:
    """The usable stories, and what was skipped and why ("" if nothing was)."""
    name = (
        source.name or _fix_text(_plain(feed.title)) or urlsplit(source.url).hostname or source.url
    )
    stories, skipped = [], {"link": 0, "title": 0}
    for entry in feed.entries:
        story = _to_story(entry, source, name, feed.base, fetched_at)
        if isinstance(story, Story):
            stories.append(story)
        else:
            skipped[story] += 1
    reasons = [f"{skipped['link']} without an http(s) link"] * bool(skipped["link"])
    reasons += [f"{skipped['title']} without a title or text"] * bool(skipped["title"])
    total = len(feed.entries)
    if not reasons:
        return stories, ""
    return stories, f"{total - len(stories)} of {total} entries ({', '.join(reasons)})"


def without_boilerplate(stories: Sequence[Story]) -> tuple[Story, ...]:
    """Each story's text cleaned of site boilerplate, lines the feed repeats included, and
    its title of the section label the feed puts before its headlines."""
    texts = [story.text for story in stories]
    boilerplate = repeated_lines(texts) | repeated_edges(texts)
    labels = _section_labels(story.title for story in stories)
    cut_from = cut_length(texts)
    cleaned = []
    for story in stories:
        text = _marked_if_cut(story.text, cut_from)
        text = clean_text(text, title=story.title, boilerplate=boilerplate)
        title = _without_section_label(story.title, labels)
        changed = text != story.text or title != story.title
        cleaned.append(replace(story, text=text, title=title) if changed else story)
    return tuple(cleaned)


def _marked_if_cut(text: str, cut_from: int | None) -> str:
    """``text`` ending in "…" when it is as long as the feed's cut texts and does not end like
    a sentence: the summarizers then treat its last sentence as the publisher's cut one."""
    end = text.rstrip()
    if cut_from is None or len(end.strip()) < cut_from or ends_like_sentence(end) or is_cut(end):
        return text
    return end + "\u2026"


def with_languages(stories: Iterable[Story], declared: str | None) -> tuple[Story, ...]:
    """Each story with its language, from its headline and text, the feed's ``declared``
    language (as the feed gives it: "en-US") deciding where the text does not."""
    feed_language = declared_language(declared)
    return tuple(
        replace(story, language=story_language(story.title, story.text, declared=feed_language))
        for story in stories
    )


# "World", then a single or double right angle quote or a bar, then the headline.
_SECTION_LABEL = re.compile(r"^(?P<label>[^\u203a\u00bb|]{1,30}?)\s*[\u203a\u00bb|]\s+(?=\S)")


def _section_labels(titles: Iterable[str]) -> frozenset[str]:
    """The labels a feed starts most of its titles with: its section names, not news."""
    all_titles = list(titles)
    labels = [
        match["label"]
        for title in all_titles
        if (match := _SECTION_LABEL.match(title)) and len(match["label"].split()) <= 3
    ]
    # A few such titles may be headlines' own punctuation; a habit of the feed is a label.
    is_habit = len(labels) >= 3 and len(labels) * 2 >= len(all_titles)
    return frozenset(labels) if is_habit else frozenset()


def _without_section_label(title: str, labels: frozenset[str]) -> str:
    match = _SECTION_LABEL.match(title)
    if match is None or match["label"] not in labels:
        return title
    return title[match.end() :]


def _to_story(
    entry: RawEntry, source: FeedSource, source_name: str, base: str, fetched_at: datetime
) -> Story | str:
    """The story, or why there is none: "link" or "title"."""
    link = urljoin(base, entry.link.strip()) if entry.link else None
    if not link or not is_http_url(link) or len(link) > _MAX_LINK:
        return "link"
    clean_html = _clean_html(_fix_text(entry.html) or "", urljoin(link, entry.html_base or ""))
    text = html_to_text(clean_html)
    title = _clipped(_plain(_fix_text(entry.title)), _MAX_TITLE) or _title_from_text(text)
    if not title:
        return "title"
    url = canonical_url(link)
    return Story(
        story_id=_hash(f"{source.url}\n{entry.guid}") if entry.guid else _hash(url),
        feed_url=source.url,
        source_name=source_name,
        category=source.category,
        url=url,
        title=title,
        published_at=entry.published_at,  # undated: None, never when it was first seen
        author=_clipped(_plain(_fix_text(entry.author)), _MAX_AUTHOR),
        categories=_categories(entry.categories),
        text=text,
        html=clean_html,
        is_deduped=source.is_deduped,
        first_seen_at=fetched_at,  # the store keeps the first time; a preview, this fetch's
        image_url=image_url(entry.image_url, base),
    )


# Mojibake (UTF-8 read as windows-1252/latin-1) always has one of these pairs, or a C1
# control; the cheap search keeps ftfy's slower check off clean text.
_MOJIBAKE_HINT = re.compile(
    "[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6"
    "\u02dc\u2013\u2014\u2018-\u201a\u201c-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a"
    "\u20ac\u2122]|[\u0080-\u009f]"
)


def _fix_text(value: object) -> str | None:
    """Repair mojibake (double-encoded UTF-8) where ftfy is sure; never touch clean text."""
    if not isinstance(value, str):
        return None
    if value.isascii() or not _MOJIBAKE_HINT.search(value):
        return value
    # ftfy only, not an encoding guess: it undoes the decode/encode mistake byte for byte
    # and leaves text alone unless it is sure (its own badness check).
    return ftfy.fix_encoding(value)


_URL_ATTRIBUTES = frozenset({"href", "src", "cite", "poster"})


def _clean_html(markup: str, base: str) -> str:
    """Sanitise with nh3, making relative URLs absolute against the body's base."""
    if not markup:
        return ""
    return nh3.clean(markup, attribute_filter=partial(_absolute_url, base))


def _absolute_url(base: str, tag: str, attribute: str, value: str) -> str:
    if attribute in _URL_ATTRIBUTES and value and not is_http_url(value):
        return urljoin(base, value.strip())
    return value


# Left as they are in an image address; anything else (quotes, angle brackets, spaces) is
# percent-encoded, as a browser would.
_URL_SAFE = "!#$%&()*+,/:;=?@[]~"


def image_url(value: str | None, base: str) -> str | None:
    """An image address made absolute against ``base`` and canonical: http(s) with a host
    only (never javascript:, data: or a relative one with nothing to resolve against), at
    most _MAX_LINK characters, with quotes, angle brackets and spaces percent-encoded."""
    if not value or not (value := value.strip()) or len(value) > _MAX_LINK:
        return None
    try:
        absolute = quote(urljoin(base, value), safe=_URL_SAFE)
    except ValueError:  # a malformed IPv6 host, say
        return None
    if not is_web_url(absolute) or len(absolute) > _MAX_LINK:
        return None
    # "https://", "#top": references to nothing but the document they are in
    if urldefrag(absolute).url == urldefrag(base).url:
        return None
    return canonical_url(absolute)


def _categories(values: Iterable[str]) -> tuple[str, ...]:
    names = (_plain(_fix_text(v)) for v in values)
    unique = dict.fromkeys(n for n in names if n)
    return tuple(unique)[:_MAX_CATEGORIES]


def html_to_text(markup: str) -> str:
    """Plain text of an HTML fragment: tags dropped, entities decoded, one line per block."""
    # Line breaks in markup are just spaces; only blocks' edges and <br> break lines.
    flowed = _BLOCK_EDGE.sub("\n", _WHITESPACE.sub(" ", markup))
    stripped = nh3.clean(flowed, tags=set())
    lines = (_SPACES.sub(" ", html.unescape(line)).strip() for line in stripped.splitlines())
    return "\n".join(line for line in lines if line)


# What one entry may store of its short fields: a feed under the size cap can still hold a
# 60,000-character title, stored and carried into every later query otherwise.
_MAX_TITLE = 500
_MAX_AUTHOR = 200
_MAX_LINK = 2048  # as render drops longer links


def _clipped(value: str | None, limit: int) -> str | None:
    """``value`` cut to ``limit`` characters, at a word where one is near, with "…"."""
    if value is None or len(value) <= limit:
        return value
    cut = value[: limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut[limit // 2 :] else cut) + "…"


def _plain(value: object) -> str | None:
    """Plain text of a title-like field: tags dropped, entities decoded, spaces collapsed."""
    if not isinstance(value, str):
        return None
    if "<" in value or "&" in value:
        value = html.unescape(nh3.clean(value, tags=set()))
    return " ".join(value.split()) or None


def _title_from_text(text: str, words: int = 12) -> str | None:
    tokens = text.split()
    if not tokens:
        return None
    return " ".join(tokens[:words]) + ("…" if len(tokens) > words else "")


def _hash(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]
