"""Lead images in RSS and Atom entries: Media RSS ``media:content`` and ``media:thumbnail``,
RSS ``<enclosure>`` and Atom ``link rel="enclosure"``, as feedparser reads them. Pure.

``lead_image`` chooses from feedparser-style attribute maps, so the feedparser path
(``digest.feeds_xml``) and the lxml fast path (``digest.feeds_xml_fast``, through ``Media``)
choose alike; ``Media`` raises Unsupported for any form whose reading it does not reproduce.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import feedparser.mixin

from digest.feeds_values import Unsupported, fp_name


def lead_image(
    contents: Sequence[Mapping[str, str]],
    thumbnails: Sequence[Mapping[str, str]],
    enclosures: Sequence[Mapping[str, str]],
) -> str | None:
    """The entry's lead image, from feedparser-style attribute maps: the widest (else the
    first) image ``media:content``, else the widest (else first) ``media:thumbnail``, else
    the first image enclosure (RSS ``<enclosure>``, Atom ``link rel="enclosure"``). Icons
    and author avatars are no lead image (see ``_is_lead``)."""
    images = [c for c in contents if _is_image(c, c.get("url"))]
    chosen = _widest(images) or _widest(thumbnails)
    if chosen is not None:
        return chosen
    for enclosure in enclosures:
        href = (enclosure.get("href") or "").strip()
        kind = (enclosure.get("type") or "").lower()
        if href and kind.startswith("image/") and _is_lead(enclosure, href):
            return href
    return None


_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif")
# Narrower than this it is an icon or an avatar (GitHub's Atom feeds give a 30 px one).
_MIN_LEAD_WIDTH = 100


def _is_image(attributes: Mapping[str, str], url: str | None) -> bool:
    medium, kind = (attributes.get(key, "").lower() for key in ("medium", "type"))
    if medium or kind:
        return medium == "image" or kind.startswith("image/")
    # Neither says what it is: the file name does.
    return (url or "").lower().split("?", 1)[0].endswith(_IMAGE_SUFFIXES)


def _is_lead(attributes: Mapping[str, str], url: str) -> bool:
    """Not an icon (declared narrower than _MIN_LEAD_WIDTH) nor the author's Gravatar,
    which WordPress feeds give as a media:content image of every post."""
    width = _width(attributes)
    return (width == 0 or width >= _MIN_LEAD_WIDTH) and "gravatar.com/avatar" not in url.lower()


def _widest(candidates: Sequence[Mapping[str, str]]) -> str | None:
    with_url = [
        (c, url) for c in candidates if (url := (c.get("url") or "").strip()) and _is_lead(c, url)
    ]
    if not with_url:
        return None
    widths = [_width(c) for c, _ in with_url]
    return with_url[widths.index(max(widths))][1]


def _width(attributes: Mapping[str, str]) -> int:
    value = (attributes.get("width") or "").strip()
    return int(value) if value.isdigit() and len(value) < 7 else 0


_MEDIA = frozenset({"media_content", "media_thumbnail", "enclosure", "media_group"})


def is_media(name: str) -> bool:
    """Is this (feedparser) element name one ``Media.add`` reads?"""
    return name in _MEDIA


@dataclass(slots=True)
class Media:
    """An entry's media elements in document order, as feedparser collects them."""

    contents: list[dict[str, str]] = field(default_factory=list)
    thumbnails: list[dict[str, str]] = field(default_factory=list)
    enclosures: list[dict[str, str]] = field(default_factory=list)

    def lead(self) -> str | None:
        return lead_image(self.contents, self.thumbnails, self.enclosures)

    def add(self, element: Any, name: str) -> None:
        """Read one media element (and what it holds) of an entry."""
        if name == "media_group":
            for child in _children(element, allow_text=True):
                self.add(child, _media_name(child))
        elif name == "media_content":
            self.contents.append(_attributes(element))
            for child in _children(element, allow_text=True):
                self.add(child, _media_name(child, inner=True))
        elif name == "media_thumbnail":
            # feedparser takes a thumbnail's text as its URL: only the attribute form here
            _children(element, allow_text=False)
            self.thumbnails.append(_attributes(element))
        else:  # enclosure
            _children(element, allow_text=False)
            attributes = feedparser.mixin._FeedParserMixin._enforce_href(_attributes(element))
            self.enclosures.append({**attributes, "rel": "enclosure"})


def _media_name(element: Any, *, inner: bool = False) -> str:
    """The name of a media element's child: only media elements (inside a media:content,
    only thumbnails) are read there."""
    name = fp_name(element)
    if name not in (_INNER if inner else _MEDIA):
        raise Unsupported(f"{name} inside a media element")
    return name


_INNER = frozenset({"media_thumbnail"})


def _children(element: Any, *, allow_text: bool) -> list[Any]:
    if not allow_text and (len(element) or (element.text or "").strip()):
        raise Unsupported(f"{element.tag} with content")
    return list(element)


def _attributes(element: Any) -> dict[str, str]:
    """The element's attributes as feedparser's strict parser gives them: names lower-cased,
    the values of rel and type too."""
    attributes = {}
    for key, value in element.attrib.items():
        if key.startswith("{"):
            raise Unsupported("namespaced attribute")
        name = key.lower()
        attributes[name] = value.lower() if name in ("rel", "type") else value
    return attributes
