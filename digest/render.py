"""Render: a Digest -> RenderedDigest (subject, email-safe HTML, plain text). Pure given the
template environment.

Templates come from the user's ``[render].template_dir`` first, then the built-ins; a user
template can extend a built-in one as ``default:digest.html.j2``. Autoescaping is on for
HTML and undefined variables fail loudly. CSS is inlined after rendering, since most mail
clients drop ``<style>``.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import css_inline
import jinja2

from digest.errors import TemplateError
from digest.models import (
    Cluster,
    Digest,
    DigestItem,
    FeedFailure,
    RenderedDigest,
    Story,
    Summary,
)

HTML_TEMPLATE = "digest.html.j2"
TEXT_TEMPLATE = "digest.txt.j2"
DEFAULT_SECTION = "Top stories"

_INLINER = css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False)


def bundled_template_dir() -> Path:
    """The built-in templates: inside the wheel, or at the repository root when editable."""
    packaged = importlib.resources.files("digest") / "templates"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "templates"


def make_environment(template_dir: Path | None = None) -> jinja2.Environment:
    """A Jinja environment searching ``template_dir`` before the built-ins."""
    bundled = bundled_template_dir()
    search = [*([template_dir] if template_dir else []), bundled]
    loader = jinja2.ChoiceLoader(
        [
            jinja2.FileSystemLoader(search),
            jinja2.PrefixLoader({"default": jinja2.FileSystemLoader(bundled)}, delimiter=":"),
        ]
    )
    env = jinja2.Environment(
        loader=loader,
        autoescape=jinja2.select_autoescape(["html", "html.j2"], default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["searched_dirs"] = tuple(str(p) for p in search)
    return env


def check_templates(env: jinja2.Environment) -> list[str]:
    """Problems loading or compiling the two top-level templates (and what they include)."""
    problems = []
    context = _context(_sample_digest(), "Sample", ZoneInfo("UTC"))
    for name in (HTML_TEMPLATE, TEXT_TEMPLATE):
        try:
            _render(env, name, context)
        except TemplateError as exc:
            problems.append(str(exc))
    return problems


def _sample_digest() -> Digest:
    moment = datetime(2024, 1, 1, 7, tzinfo=UTC)
    story = Story(
        story_id="sample",
        feed_url="https://example.org/feed",
        source_name="Example",
        category=None,
        url="https://example.org/story",
        title="Sample headline",
        published_at=moment,
        text="Sample text.",
    )
    cluster = Cluster(cluster_id="sample", lead=story, others=(story,))
    summary = Summary(cluster_id="sample", text="Sample summary.", model_id="sample")
    item = DigestItem(cluster=cluster, summary=summary)
    failure = FeedFailure(feed_url="https://example.org/x", name="X", error="HTTP 500")
    return Digest(
        edition_on=moment.date(), generated_at=moment, items=(item,), failed_feeds=(failure,)
    )


def render_digest(
    digest: Digest, env: jinja2.Environment, *, title: str, tz: ZoneInfo
) -> RenderedDigest:
    """Render both parts and the subject line of one edition."""
    context = _context(digest, title, tz)
    html = _INLINER.inline(_render(env, HTML_TEMPLATE, context))
    text = _render(env, TEXT_TEMPLATE, context)
    return RenderedDigest(
        edition_on=digest.edition_on, subject=_subject(context), html=html, text=text
    )


def _render(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    searched = ", ".join(env.globals["searched_dirs"])  # type: ignore[arg-type]
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(
            f"template {exc.name!r} not found (needed by {name}); searched: {searched}"
        ) from exc
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"template {exc.filename or exc.name}, line {exc.lineno}: {exc.message}"
        ) from exc
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template {name}: {exc.message}") from exc


def _subject(context: dict[str, Any]) -> str:
    top = context["items"][0]["headline"] if context["items"] else "nothing new today"
    return " ".join(f"{context['title']}, {context['edition_date']}: {top}".split())


def _context(digest: Digest, title: str, tz: ZoneInfo) -> dict[str, Any]:
    items = [_item(n, item, tz) for n, item in enumerate(digest.items, start=1)]
    return {
        "title": title,
        "edition_date": f"{digest.edition_on:%A, %-d %B %Y}",
        "generated_at": _local(digest.generated_at, tz),
        "items": items,
        "sections": _sections(items),
        "preheader": " · ".join(i["headline"] for i in items[:3]),
        "failed_feeds": [{"name": f.name, "error": f.error} for f in digest.failed_feeds],
    }


def _item(number: int, item: DigestItem, tz: ZoneInfo) -> dict[str, Any]:
    lead = item.cluster.lead
    seen = {lead.source_name}
    also = []
    for other in item.cluster.others:
        if other.source_name not in seen:
            seen.add(other.source_name)
            also.append({"name": other.source_name, "url": other.url})
    return {
        "number": number,
        "anchor": f"story-{number}",
        "headline": lead.title,
        "url": lead.url,
        "source": lead.source_name,
        "section": lead.category or DEFAULT_SECTION,
        "also": also,
        "summary": item.summary.text,
        "is_from_full_text": item.summary.is_from_full_text,
        "published": _local(lead.published_at, tz) if lead.published_at else None,
    }


def _sections(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group items by section, sections ordered by their best item."""
    sections: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        sections.setdefault(item["section"], []).append(item)
    return [{"name": name, "items": group} for name, group in sections.items()]


def _local(moment: datetime, tz: ZoneInfo) -> str:
    return f"{moment.astimezone(tz):%-d %b %Y, %H:%M %Z}"
