"""RSS and Atom, fast path: clean XML text -> ``RawFeed`` with lxml, or None. Pure.

feedparser's SAX handlers run in pure Python and are most of parsing's time. Feeds that are
well-formed RSS 2.0/0.9x, RSS 1.0 or Atom 1.0 and use only the elements below are read with
lxml instead, mapped field by field as feedparser (and ``digest.feeds_xml``) would; anything
else raises Unsupported inside and gets None out, and takes the feedparser path unchanged.
tests/test_parse_fast.py holds the two paths equal over the whole corpus.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape as xml_escape

import feedparser.api
import feedparser.datetimes
from lxml import etree

from digest.entries import RawEntry, RawFeed
from digest.feeds_media import Media, is_media
from digest.feeds_values import (
    Unsupported,
    fp_author_name,
    fp_date,
    fp_name,
    fp_text,
    fp_urljoin,
)
from digest.feeds_xml import body_html, channel_language, entry_link, site_base

_ATOM_NS = "{http://www.w3.org/2005/Atom}"
_RSS1_NS = "{http://purl.org/rss/1.0/}"
_RDF_ROOT = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}RDF"
_RDF_ABOUT = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}about"
# Every element name feedparser has a handler for; a name outside the fields read here and
# _INERT is one whose effect the fast path does not reproduce.
_HANDLED = frozenset(
    name.split("_", 2)[2].lower()
    for name in dir(feedparser.api.StrictFeedParser)
    if name.startswith(("_start_", "_end_"))
)
# Handlers that never touch the fields read here (they fill links, media_*, subtitle...).
_INERT = frozenset(
    {"enclosure", "media_content", "media_thumbnail", "media_player", "media_rating"}
    | {"media_credit", "media_restriction", "media_license", "media_group", "itunes_image"}
    | {"itunes_explicit", "itunes_block", "itunes_subtitle", "rights", "dc_rights", "copyright"}
    | {"cc_license", "creativecommons_license", "dc_language", "language", "expirationdate"}
    | {"created", "dcterms_created", "dcterms_valid", "dc_publisher", "width", "height", "url"}
    | {"psc_chapters", "psc_chapter", "georss_point", "georss_line", "georss_polygon"}
    | {"georss_box", "georss_where", "where", "gml_point", "gml_pos", "gml_poslist"}
    | {"gml_linestring", "gml_polygon", "gml_exterior", "gml_linearring", "geom"}
)
# In an entry, media elements are read (digest.feeds_media): anywhere else there, refused.
_ENTRY_INERT = _INERT - {"enclosure", "media_content", "media_thumbnail", "media_group"}
_AUTHORS = frozenset({"author", "dc_creator", "dc_author", "itunes_author"})
_RSS_FIELDS = (
    frozenset({"title", "link", "description", "content_encoded", "guid", "pubdate", "dc_date"})
    | _AUTHORS
)
_ATOM_FIELDS = frozenset({"title", "id", "content", "summary", "published", "updated", "author"})
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_CONTENT_TYPES = {"text": "text/plain", "html": "text/html", "xhtml": "application/xhtml+xml"}
_ENTITY_LIKE = re.compile("&([A-Za-z0-9_]+);")


def read_xml_fast(text: str, url: str) -> RawFeed | None:
    """The document read with lxml, or None where it must go through feedparser."""
    if "xml:base" in text:  # feedparser's base tracking is not reproduced here
        return None
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        recover=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        root = etree.fromstring(text.encode("utf-8"), parser)
        if root.tag == "rss":
            return _fast_rss(root, url)
        if root.tag == _RDF_ROOT:
            return _fast_rdf(root, url)
        if root.tag == _ATOM_NS + "feed":
            return _fast_atom(root, url)
    except (etree.XMLSyntaxError, Unsupported):
        pass
    return None


def _plain_text(element: Any) -> str:
    """The text of an element that must hold no elements and no attributes."""
    if len(element) or element.attrib:
        raise Unsupported(element.tag)
    return fp_text(element.text)


def _check_inert(element: Any, inert: frozenset[str] = _INERT) -> None:
    """Refuse any descendant that a feedparser handler would read into an entry field."""
    for inner in element.iter():
        if inner is not element and (name := fp_name(inner)) in _HANDLED and name not in inert:
            raise Unsupported(name)


def _fast_rss(root: Any, url: str) -> RawFeed:
    channels = [child for child in root if child.tag == "channel"]
    if len(channels) != 1:
        raise Unsupported("channels")
    channel = channels[0]
    items = [child for child in channel if child.tag == "item"]
    if not items or any(child.tag in ("item", "channel") for child in root if child is not channel):
        raise Unsupported("items")
    feed = _fast_channel(channel, url, "item")
    return replace(feed, entries=tuple(map(_rss_entry, items)), ttl=channel.findtext("ttl"))


def _fast_rdf(root: Any, url: str) -> RawFeed:
    channels = [child for child in root if child.tag == _RSS1_NS + "channel"]
    items = [child for child in root if child.tag == _RSS1_NS + "item"]
    if len(channels) != 1 or not items:
        raise Unsupported("rdf")
    for child in root:
        if child.tag not in (_RSS1_NS + "channel", _RSS1_NS + "item"):
            _check_inert_feed_part(child)
    return replace(_fast_channel(channels[0], url, "item"), entries=tuple(map(_rss_entry, items)))


def _check_inert_feed_part(element: Any) -> None:
    """A feed-level part outside the channel (RSS 1.0 image, textinput): only its own
    title/link/url/description/name, none of which reach an entry or the feed title."""
    if fp_name(element) not in ("image", "textinput"):
        _check_inert(element)
        if fp_name(element) in _HANDLED and fp_name(element) not in _INERT:
            raise Unsupported(element.tag)
        return
    for child in element:
        if fp_name(child) not in _FEED_PART_FIELDS:
            raise Unsupported(child.tag)
        _plain_text(child)


_FEED_PART_FIELDS = frozenset({"title", "link", "url", "description", "name", "width", "height"})


def _fast_channel(channel: Any, url: str, entry_tag: str) -> RawFeed:
    """The feed's title, base for links and language (no entries), from the channel."""
    titles, links, self_links = [], [], []
    for child in channel:
        name = fp_name(child)
        if name == entry_tag:
            continue
        if name == "title":
            titles.append(_atom_text(child)[1])
        elif name == "link" and not child.attrib:
            links.append(_ENTITY_LIKE.sub(r"&\g<1>", _uri_text(child)))
        elif name == "link":
            self_links.append(_atom_link(child, links))
        elif name in ("image", "textinput"):
            _check_inert_feed_part(child)
        elif name in _FEED_INERT:
            _check_inert(child, _INERT | _FEED_PEOPLE)
        elif name in _HANDLED and name not in _INERT:
            raise Unsupported(name)
        else:
            _check_inert(child)
    if len(titles) > 1:
        raise Unsupported("titles")
    feed = {"link": links[-1] if links else None, "links": [s for s in self_links if s]}
    title, language = (titles[0] if titles else None), channel_language(channel)
    return RawFeed(entries=(), title=title, base=site_base(feed, url), language=language)


# Feed-level handlers that fill only feed fields this module never reads.
_FEED_INERT = frozenset(
    {"description", "subtitle", "tagline", "pubdate", "lastbuilddate", "updated", "published"}
    | {"managingeditor", "webmaster", "generator", "cloud", "category", "dc_subject", "ttl"}
    | {"dc_date", "dc_creator", "author", "itunes_author", "itunes_owner", "itunes_summary"}
    | {"itunes_category", "itunes_keywords", "itunes_name", "itunes_email", "docs", "id"}
    | {"rights", "icon", "logo", "contributor", "media_category", "media_keywords"}
    | {"sy_updateperiod", "sy_updatefrequency", "newlocation", "info"}
)
# What feed-level people and categories hold: they fill only the feed's own fields.
_FEED_PEOPLE = frozenset({"name", "email", "uri", "itunes_name", "itunes_email", "itunes_category"})


def _atom_link(element: Any, links: list[str], media: Media | None = None) -> dict[str, str] | None:
    """An Atom-style link: appends an alternate HTML href to ``links`` (an enclosure to an
    entry's ``media``); returns a self link."""
    attrs = {key.lower(): value for key, value in element.attrib.items()}
    if "href" not in attrs or len(element) or (element.text or "").strip():
        raise Unsupported("link")
    rel = attrs.get("rel", "alternate").lower()
    kind = attrs.get("type", "application/atom+xml" if rel == "self" else "text/html").lower()
    href = fp_urljoin(attrs["href"])
    if rel == "alternate" and _CONTENT_TYPES.get(kind, kind) in _HTML_TYPES:
        links.append(href)
    if rel == "enclosure" and media is not None:
        media.enclosures.append({"href": href, "type": kind})
    return {"rel": rel, "href": href} if rel == "self" else None


def _rss_entry(item: Any) -> RawEntry:
    if any(key != _RDF_ABOUT for key in item.attrib):
        raise Unsupported("item attributes")
    fields: dict[str, Any] = {}
    categories = []
    media = Media()
    for child in item:
        name = fp_name(child)
        if is_media(name):
            media.add(child, name)
        elif name in _RSS_FIELDS:
            if name in fields or (name in _AUTHORS and fields.keys() & _AUTHORS):
                raise Unsupported(f"two {name}")
            fields[name] = child
        elif name in ("category", "dc_subject"):
            categories.append(_rss_category(child))
        elif name == "source" and len(child):
            raise Unsupported("source")
        elif name in _HANDLED and name not in _INERT and name != "source":
            raise Unsupported(name)
        else:
            _check_inert(child, _ENTRY_INERT)
    return replace(_rss_fields(fields, categories, item.get(_RDF_ABOUT)), image_url=media.lead())


def _rss_category(element: Any) -> str:
    if len(element) or any(key.lower() != "domain" for key in element.attrib):
        raise Unsupported("category")
    return fp_text(element.text)


def _rss_fields(fields: dict[str, Any], categories: list[str], about: str | None) -> RawEntry:
    guid, link = about, None
    if (element := fields.get("guid")) is not None:
        if len(element) or any(key.lower() != "ispermalink" for key in element.attrib):
            raise Unsupported("guid")
        is_link = next((v for k, v in element.attrib.items() if k.lower() == "ispermalink"), "true")
        guid = fp_text(element.text)
        if is_link == "true":
            guid = link = fp_text(fp_urljoin((element.text or "").strip()))
    if (element := fields.get("link")) is not None:
        link = _ENTITY_LIKE.sub(r"&\g<1>", _uri_text(element).replace("&amp;", "&"))
    body = fields.get("content_encoded")
    if body is None:
        body = fields.get("description")
    author = fields.get(next(iter(fields.keys() & _AUTHORS), ""))
    return RawEntry(
        guid=guid or None,
        link=entry_link(link, guid),
        title=_plain_text(fields["title"]) if "title" in fields else None,
        html=_plain_text(body) if body is not None else None,
        html_base=None,
        published_at=_fast_published(fields.get("pubdate"), fields.get("dc_date")),
        author=fp_author_name(_plain_text(author)) if author is not None else None,
        categories=tuple(categories),
    )


def _fast_published(published: Any, updated: Any) -> datetime | None:
    moment = fp_date(_plain_text(published)) if published is not None else None
    if moment is None and updated is not None:
        moment = fp_date(_plain_text(updated))
    return moment


def _fast_atom(root: Any, url: str) -> RawFeed:
    entries = [child for child in root if child.tag == _ATOM_NS + "entry"]
    if not entries:
        raise Unsupported("no entries")
    return replace(_fast_channel(root, url, "entry"), entries=tuple(map(_atom_entry, entries)))


def _atom_entry(entry: Any) -> RawEntry:
    if entry.attrib:
        raise Unsupported("entry attributes")
    fields: dict[str, Any] = {}
    links: list[str] = []
    categories = []
    media = Media()
    for child in entry:
        name = fp_name(child)
        if is_media(name):
            media.add(child, name)
        elif name in _ATOM_FIELDS:
            if name in fields:
                raise Unsupported(f"two {name}")
            fields[name] = child
        elif name == "link":
            _atom_link(child, links, media)
        elif name == "category":
            categories.append(_atom_category(child))
        elif name == "contributor":
            _atom_person(child)
        elif name in _HANDLED and name not in _INERT:
            raise Unsupported(name)
        else:
            _check_inert(child, _ENTRY_INERT)
    return replace(_atom_fields(fields, links, categories), image_url=media.lead())


def _atom_fields(fields: dict[str, Any], links: list[str], categories: list[str]) -> RawEntry:
    guid = None
    if (element := fields.get("id")) is not None:
        guid = _uri_text(element)
    body = fields.get("content")
    if body is None:
        body = fields.get("summary")
    return RawEntry(
        guid=guid or None,
        link=entry_link(links[-1] if links else guid, guid),
        title=_atom_text(fields["title"])[1] if "title" in fields else None,
        html=_atom_body(body) if body is not None else None,
        html_base=None,
        published_at=_fast_published(fields.get("published"), fields.get("updated")),
        author=_atom_person(fields["author"]) if "author" in fields else None,
        categories=tuple(categories),
    )


def _uri_text(element: Any) -> str:
    """A link-like element's text: resolved (feedparser's resolve_uri), then repaired."""
    if len(element) or element.attrib:
        raise Unsupported(element.tag)
    return fp_text(fp_urljoin((element.text or "").strip()))


def _atom_category(element: Any) -> str:
    attrs = element.attrib
    if len(element) or (element.text or "").strip() or set(attrs) - {"term", "scheme", "label"}:
        raise Unsupported("category")
    return str(attrs.get("label") or attrs.get("term") or "")


def _atom_person(element: Any) -> str | None:
    """An author's name (else email) as feedparser's author_detail/author give it."""
    parts = {fp_name(child): child for child in element}
    if element.attrib or len(parts) != len(element) or set(parts) - {"name", "email", "uri"}:
        raise Unsupported("person")
    if not parts:
        return fp_author_name(_plain_text(element))
    if (element.text or "").strip() or any((c.tail or "").strip() for c in element):
        raise Unsupported("person text")
    # name and email are pushed without text handling: stripped, never repaired
    name, mail = (_bare_text(parts[key]) if key in parts else None for key in ("name", "email"))
    return name or mail or None


def _bare_text(element: Any) -> str:
    if len(element) or element.attrib:
        raise Unsupported(element.tag)
    return (element.text or "").strip()


def _atom_text(element: Any) -> tuple[str, str]:
    """(content type, value) of an Atom text construct of type text or html."""
    kind = _atom_type(element, "text/plain")
    if kind == "application/xhtml+xml" or len(element):
        raise Unsupported("inline markup")
    return kind, fp_text(element.text)


def _atom_type(element: Any, default: str) -> str:
    attrs = element.attrib
    if set(attrs) - {"type", "{http://www.w3.org/XML/1998/namespace}lang"}:
        raise Unsupported("content attributes")
    kind = str(attrs.get("type", default)).lower()
    kind = _CONTENT_TYPES.get(kind, kind)
    if kind not in ("text/plain", "text/html", "application/xhtml+xml"):
        raise Unsupported(f"content type {kind}")
    return kind


def _atom_body(element: Any) -> str:
    if _atom_type(element, "text/plain") == "application/xhtml+xml":
        return fp_text(_xhtml(element))
    kind, value = _atom_text(element)
    return body_html({"type": kind, "value": value})


def _xhtml(element: Any) -> str:
    """Inline XHTML content serialised as feedparser does, one enclosing <div> removed."""
    children = list(element)
    if (
        len(children) == 1
        and _xhtml_tag(children[0]) == "div"
        and not (element.text or "").strip()
        and not (children[0].tail or "").strip()
    ):
        element, children = children[0], list(children[0])
    pieces = [xml_escape(element.text or "")]
    for child in children:
        _xhtml_pieces(child, pieces)
    return "".join(pieces)


def _xhtml_pieces(element: Any, pieces: list[str]) -> None:
    tag = _xhtml_tag(element)
    if tag in ("svg", "math"):
        raise Unsupported(tag)
    attrs = []
    for key, value in element.attrib.items():
        if key.startswith("{"):
            namespace, local = key[1:].split("}", 1)
            if namespace != "http://www.w3.org/XML/1998/namespace":
                raise Unsupported("namespaced attribute")
            key = "xml:" + local
        key = key.lower()
        value = value.lower() if key in ("rel", "type") else value
        attrs.append(f' {key}="{xml_escape(value, {chr(34): "&quot;"})}"')
    pieces.append(f"<{tag}{''.join(attrs)}>")
    pieces.append(xml_escape(element.text or ""))
    for child in element:
        _xhtml_pieces(child, pieces)
    pieces.append(f"</{tag}>")
    pieces.append(xml_escape(element.tail or ""))


def _xhtml_tag(element: Any) -> str:
    tag = element.tag
    if not isinstance(tag, str):
        raise Unsupported("entity")
    return (tag.rsplit("}", 1)[-1]).lower()
