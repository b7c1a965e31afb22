"""OPML: subscription lists in and out (pure: bytes -> records -> bytes).

``read_opml`` reads the feeds of an OPML file (the ``xmlUrl`` of each outline, its text
(or title) as the name, the enclosing outline's as the category) and lists every outline it
could not use. A file that is not well-formed XML, as many real exports are (a bare ``&``,
quotes inside an attribute), is read again leniently, tag by tag, so that whatever can be
read still is. Entity declarations are refused and never expanded (no "billion laughs",
no external entities); the stdlib expat parser never fetches anything.

``write_opml`` writes OPML 2.0 with one parent outline per category; it round-trips.
"""

from __future__ import annotations

import codecs
import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from xml.parsers import expat

from digest.models import FeedSource
from digest.urls import feed_url_key, is_web_url

_FEED_TYPES = ("rss", "atom", "feed", "")  # outline types whose url attribute is a feed
_TAG = re.compile(r"<(/?)(outline|opml|body)\b", re.IGNORECASE)
_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*\bencoding\s*=\s*["']([\w.:-]+)["']""")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True, kw_only=True)
class OpmlImport:
    """What an OPML file gave: the feeds it lists and every problem found reading it."""

    origin: str
    feeds: tuple[FeedSource, ...]
    problems: tuple[str, ...] = ()
    is_well_formed: bool = True


class _EntitiesRefused(Exception):
    pass


@dataclass
class _Folder:
    label: str | None
    line: int
    has_children: bool = False


@dataclass
class _Walker:
    """Turns outline start/end events (from either reader) into feeds and problems."""

    feeds: list[FeedSource] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    folders: list[_Folder] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)
    saw_root: str | None = None
    saw_body: bool = False

    def element(self, tag: str) -> None:
        self.saw_root = self.saw_root or tag
        self.saw_body = self.saw_body or tag == "body"

    def start(self, attrs: dict[str, str], line: int) -> None:
        if self.folders:
            self.folders[-1].has_children = True
        # OPML 2.0: "text" is what readers display (required); "title" is the feed's own.
        label = _clean(attrs.get("text")) or _clean(attrs.get("title"))
        url = _feed_url(attrs)
        kind = attrs.get("type", "").lower()
        reported = url is None and kind in ("link", "include")
        if reported:
            self.problems.append(f"line {line}: {_named(label)}: a {kind}, not a feed; skipped")
        if url is None:
            self.folders.append(_Folder(label=label, line=line, has_children=reported))
            return
        self.folders.append(_Folder(label=None, line=line, has_children=True))
        self._feed(url, label, attrs, line)

    def end(self) -> None:
        if not self.folders:
            return
        folder = self.folders.pop()
        if not folder.has_children:
            where = f"line {folder.line}: {_named(folder.label)}"
            self.problems.append(f"{where}: no xmlUrl and no feeds inside; skipped")

    def _feed(self, url: str, label: str | None, attrs: dict[str, str], line: int) -> None:
        if not is_web_url(url):
            self.problems.append(f"line {line}: {_named(label)}: {url!r} is not an http(s) URL")
            return
        key = feed_url_key(url)
        if key in self.seen:
            self.problems.append(
                f"line {line}: {_named(label)}: {url} is listed twice (first on line "
                f"{self.seen[key]}); imported once"
            )
            return
        self.seen[key] = line
        name = label if label and label != url else None
        self.feeds.append(FeedSource(url=url, name=name, category=self._category(attrs)))

    def _category(self, attrs: dict[str, str]) -> str | None:
        labels = [f.label for f in self.folders[:-1] if f.label]
        if labels:
            return labels[-1]  # the innermost folder, as feed readers show it
        # OPML 2.0 also allows a comma-separated list of "/"-paths on the outline itself.
        first = (attrs.get("category") or "").split(",")[0]
        return _clean(first.strip("/").rsplit("/", 1)[-1])


def _feed_url(attrs: dict[str, str]) -> str | None:
    url = attrs.get("xmlUrl") or attrs.get("xmlurl")
    if not url and attrs.get("type", "").lower() in _FEED_TYPES:
        url = attrs.get("url")
    return url.strip() if url and url.strip() else None


def _named(label: str | None) -> str:
    return f"outline {label!r}" if label else "an untitled outline"


def _clean(value: str | None) -> str | None:
    text = _SPACE.sub(" ", value or "").strip()
    return text or None


def read_opml(data: bytes, origin: str) -> OpmlImport:
    """The feeds an OPML document lists, and a problem for everything it could not use.

    Problems about the whole file come first, then one per unusable outline, by line.
    """
    walker = _Walker()
    try:
        _parse_strict(data, walker)
    except _EntitiesRefused:
        return _read_leniently(data, origin, "declares XML entities, which are refused")
    except expat.ExpatError as exc:
        where = f"{expat.ErrorString(exc.code)} at line {exc.lineno}, column {exc.offset}"
        return _read_leniently(data, origin, f"not valid XML ({where})")
    return _result(origin, walker, [], is_well_formed=True)


def _read_leniently(data: bytes, origin: str, why: str) -> OpmlImport:
    walker = _Walker()
    _parse_lenient(data, walker)
    note = f"{why}; read what could be read, tag by tag: check the result"
    return _result(origin, walker, [note], is_well_formed=False)


def _result(
    origin: str, walker: _Walker, file_problems: list[str], *, is_well_formed: bool
) -> OpmlImport:
    if walker.saw_root and walker.saw_root.lower() != "opml":
        file_problems.append(f"the root element is <{walker.saw_root}>, not <opml>")
    if walker.saw_root and not walker.saw_body:
        file_problems.append("no <body> element: the file lists no outlines")
    if not walker.feeds:
        file_problems.append("no feeds found (no outline with an http(s) xmlUrl)")
    return OpmlImport(
        origin=origin,
        feeds=tuple(walker.feeds),
        problems=(*file_problems, *walker.problems),
        is_well_formed=is_well_formed,
    )


def _parse_strict(data: bytes, walker: _Walker) -> None:
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def refuse(*_: object) -> None:
        raise _EntitiesRefused

    def refuse_external(*_: object) -> int:
        raise _EntitiesRefused

    def start(tag: str, attrs: dict[str, str]) -> None:
        walker.element(tag)
        if tag == "outline":
            walker.start(attrs, parser.CurrentLineNumber)

    def end(tag: str) -> None:
        if tag == "outline":
            walker.end()

    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse_external
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.Parse(data, True)


def _parse_lenient(data: bytes, walker: _Walker) -> None:
    """Read outline tags one by one from text that is not well-formed XML.

    A tag runs to the next ``<outline``/``</outline``; attributes are looked up by name,
    so one broken attribute value (a quote inside a description) loses only itself.
    """
    text = _decode(data)
    tags = list(_TAG.finditer(text))
    for index, match in enumerate(tags):
        closing, tag = match.group(1), match.group(2).lower()
        if closing:
            if tag == "outline":
                walker.end()
            continue
        walker.element(match.group(2))
        if tag != "outline":
            continue
        stop = tags[index + 1].start() if index + 1 < len(tags) else len(text)
        body = text[match.end() : stop].rstrip()
        walker.start(_attributes(body), text.count("\n", 0, match.start()) + 1)
        if body.endswith("/>"):
            walker.end()


def _attributes(tag_text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in ("xmlUrl", "url", "title", "text", "type", "category"):
        pattern = rf"""(?:^|\s){name}\s*=\s*("([^"]*)"|'([^']*)')"""
        match = re.search(pattern, tag_text, re.IGNORECASE)
        if match:
            value = match.group(2) if match.group(2) is not None else match.group(3)
            found[name] = html.unescape(value)
    return found


def _decode(data: bytes) -> str:
    declared = _ENCODING.match(data)
    encoding = declared.group(1).decode("ascii") if declared else "utf-8"
    try:
        codecs.lookup(encoding)
    except LookupError:
        encoding = "utf-8"
    return data.decode(encoding, errors="replace")


def write_opml(sources: Sequence[FeedSource], title: str) -> bytes:
    """OPML 2.0 listing the feeds, those with a category inside one parent outline per category."""
    root = ET.Element("opml", version="2.0")
    ET.SubElement(ET.SubElement(root, "head"), "title").text = title
    body = ET.SubElement(root, "body")
    folders: dict[str, ET.Element] = {}
    for source in sources:
        parent = body
        if source.category:
            if source.category not in folders:
                folders[source.category] = ET.SubElement(
                    body, "outline", text=source.category, title=source.category
                )
            parent = folders[source.category]
        ET.SubElement(parent, "outline", _outline_attributes(source))
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


def _outline_attributes(source: FeedSource) -> dict[str, str]:
    # OPML requires text; a name equal to the URL reads back as no name.
    name = source.name or source.url
    return {"type": "rss", "text": name, "title": name, "xmlUrl": source.url}
