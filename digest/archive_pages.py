"""The public archive of ``digest web``: past editions as sent, and an Atom feed of them
(RFC 4287). Reads the store's editions; the Atom document is built by a pure function.

An archived edition holds the placeholder of each reader's own unsubscribe link (the messages
got their token instead): in the archive that link goes to the subscribe page, so a page
that everyone can read carries no one's token and no broken link.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from xml.etree import ElementTree

import jinja2

from digest.messages import UNSUBSCRIBE_TOKEN
from digest.models import RenderedDigest
from digest.render import bundled_template_dir
from digest.runtime import Runtime

ATOM = "http://www.w3.org/2005/Atom"
_READER_LINK = re.compile(r"[^\s\"'<>]*/unsubscribe/" + UNSUBSCRIBE_TOKEN)


def edition_list(runtime: Runtime) -> tuple[tuple[date, str], ...]:
    """Every archived edition's date and subject, newest first."""
    return runtime.store.edition_subjects()


def web_templates() -> jinja2.Environment:
    """The readers' pages' templates (``templates/web``), as ``digest web`` renders them."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(bundled_template_dir() / "web"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def archive_index(
    templates: jinja2.Environment,
    *,
    title: str,
    base_url: str,
    editions: Sequence[tuple[date, str]],
) -> str:
    """The archive's list page: each edition (newest first) linking to its own page."""
    page = templates.get_template("archive.html.j2")
    return page.render(title=title, editions=editions, base=base_url)


def public_edition(runtime: Runtime, day: date, base_url: str) -> RenderedDigest | None:
    """``day``'s edition as sent, with the per-reader links pointing at the subscribe page."""
    found = runtime.store.edition(day)
    if found is None:
        return None
    subscribe = f"{base_url}/subscribe"
    return RenderedDigest(
        edition_on=found.edition_on,
        subject=found.subject,
        html=_neutralised(found.html, subscribe),
        text=_neutralised(found.text, subscribe),
    )


def _neutralised(text: str, subscribe_url: str) -> str:
    return _READER_LINK.sub(subscribe_url, text).replace(UNSUBSCRIBE_TOKEN, "")


def atom_feed(
    *, title: str, base_url: str, editions: Sequence[tuple[date, str]], now: datetime
) -> bytes:
    """An Atom feed of the editions (newest first), each linking to its archive page."""
    ElementTree.register_namespace("", ATOM)
    feed = ElementTree.Element(f"{{{ATOM}}}feed")
    stamps = [_stamp(day) for day, _ in editions]
    _add(feed, "id", f"{base_url}/feed.atom")
    _add(feed, "title", title)
    _add(feed, "updated", max(stamps, default=now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")))
    _link(feed, "self", f"{base_url}/feed.atom", "application/atom+xml")
    _link(feed, "alternate", f"{base_url}/archive/", "text/html")
    author = ElementTree.SubElement(feed, f"{{{ATOM}}}author")
    _add(author, "name", title)
    for (day, subject), stamp in zip(editions, stamps, strict=True):
        entry = ElementTree.SubElement(feed, f"{{{ATOM}}}entry")
        page = f"{base_url}/archive/{day.isoformat()}/"
        _add(entry, "id", page)
        _add(entry, "title", subject)
        _add(entry, "updated", stamp)
        _link(entry, "alternate", page, "text/html")
    return bytes(ElementTree.tostring(feed, encoding="utf-8", xml_declaration=True))


def _stamp(day: date) -> str:
    return datetime.combine(day, time(), tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _add(parent: ElementTree.Element, name: str, text: str) -> None:
    ElementTree.SubElement(parent, f"{{{ATOM}}}{name}").text = text


def _link(parent: ElementTree.Element, rel: str, href: str, kind: str) -> None:
    ElementTree.SubElement(parent, f"{{{ATOM}}}link", rel=rel, href=href, type=kind)
