"""Render: a Digest -> RenderedDigest (subject, email-safe HTML, plain text). Pure given the
template environment.

Templates come from the user's ``[render].template_dir`` first, then the built-ins; a user
template can extend a built-in one as ``default:digest.html.j2``. Autoescaping is on for
HTML and undefined variables fail loudly. CSS is inlined after rendering, since most mail
clients drop ``<style>``. The HTML part is kept under ``max_html_bytes`` as measured by
``options.html_size`` (``digest.messages.html_part_size``: the part as sent, quoted-printable
encoded; Gmail clips a message past 102 KB), by leaving out the least important stories,
and the result says so. Which stories an edition holds, in which order and sections, is
decided before anything is summarised (``digest.rank``).
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import re
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import css_inline
import jinja2
import jinja2.sandbox

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
from digest.rank import in_sections, other_outlets, section_of

HTML_TEMPLATE = "digest.html.j2"
TEXT_TEMPLATE = "digest.txt.j2"
DEFAULT_SUBJECT = "{{ title }}, {{ date }}: {{ top_headline }}"
GMAIL_CLIP_BYTES = 102 * 1024

# A feed cannot make one story outgrow the email: longer text is cut with an ellipsis.
_MAX_HEADLINE_CHARS = 300
_MAX_SUMMARY_CHARS = 3000
_MAX_NAME_CHARS = 100  # a source's name is the feed's own <title> unless the settings name it
_MAX_ERROR_CHARS = 300
_LINK_SCHEMES = frozenset({"http", "https"})
_MAX_URL_CHARS = 2048  # longer than any article's address; past it, no link at all

_INLINER = css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False)


def _utf8_size(html: str) -> int:
    return len(html.encode())


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderOptions:
    """What the settings decide about an edition's look: ``[render]`` and the footer links."""

    title: str = "Daily Digest"
    subject: str = DEFAULT_SUBJECT
    archive_url: str | None = None  # "{date}" is replaced by the edition's ISO date
    unsubscribe_url: str | None = None
    max_html_bytes: int = 100_000
    html_size: Callable[[str], int] = _utf8_size  # how the cap counts the HTML part
    images: bool = True  # each story's lead image, referenced by its address


# Templates


def bundled_template_dir() -> Path:
    """The built-in templates: inside the wheel, or at the repository root when editable."""
    packaged = importlib.resources.files("digest") / "templates"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "templates"


# The most a template may build with * or ** (characters, items, or digits of a number).
_MAX_BUILT = 1_000_000


class _BoundedSandbox(jinja2.sandbox.SandboxedEnvironment):
    """Templates and the subject line come from the settings: the sandbox keeps them off
    Python's internals and caps ``range`` (MAX_RANGE); this also caps what ``*`` and ``**``
    build, so no template (``{{ "x" * 10**10 }}``) can take the machine's memory."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        if operator == "*" and _built_size(left, right) > _MAX_BUILT:
            raise jinja2.exceptions.SecurityError(f"a '*' that builds over {_MAX_BUILT:,} items")
        is_power = operator == "**" and isinstance(left, int | float)
        if is_power and isinstance(right, int | float) and abs(right) * _digits(left) > _MAX_BUILT:
            raise jinja2.exceptions.SecurityError(f"a '**' of over {_MAX_BUILT:,} digits")
        return super().call_binop(context, operator, left, right)


def _built_size(left: Any, right: Any) -> int:
    """How many items ``left * right`` builds when it repeats a sequence (else 0)."""
    for sequence, times in ((left, right), (right, left)):
        if isinstance(sequence, str | list | tuple) and isinstance(times, int):
            return len(sequence) * times
    return 0


def _digits(number: float) -> int:
    return max(len(str(abs(int(number)))), 1) if abs(number) >= 2 else 0


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
    env = _BoundedSandbox(
        loader=loader,
        autoescape=jinja2.select_autoescape(["html", "html.j2"], default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["searched_dirs"] = tuple(str(p) for p in search)
    return env


def template_files(env: jinja2.Environment) -> tuple[Path, ...]:
    """Every template file the environment can find: what a live preview watches."""
    folders = [Path(p) for p in env.globals["searched_dirs"]]  # type: ignore[attr-defined]
    return tuple(sorted(f for folder in folders if folder.is_dir() for f in folder.glob("*.j2")))


def check_templates(env: jinja2.Environment, options: RenderOptions | None = None) -> list[str]:
    """Problems loading or rendering the templates (and the subject line) on a sample."""
    problems = []
    sample, options = _sample_digest(), options or RenderOptions()
    context = _context(sample, sample.items, options, ZoneInfo("UTC"))
    for name in (HTML_TEMPLATE, TEXT_TEMPLATE):
        try:
            _render(env, name, context)
        except TemplateError as exc:
            problems.append(str(exc))
    try:
        _subject(options, context)
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
        text_source="article",  # so that a template's use of reading_minutes is tried too
        image_url="https://example.org/image.jpg",
    )
    cluster = Cluster(cluster_id="sample", lead=story, others=(story,))
    summary = Summary(cluster_id="sample", text="Sample summary.", model_id="sample")
    item = DigestItem(cluster=cluster, summary=summary)
    failure = FeedFailure(feed_url="https://example.org/x", name="X", error="HTTP 500")
    return Digest(
        edition_on=moment.date(), generated_at=moment, items=(item,), failed_feeds=(failure,)
    )


# Rendering


def render_digest(
    digest: Digest, env: jinja2.Environment, *, tz: ZoneInfo, options: RenderOptions
) -> RenderedDigest:
    """Render the subject line and both parts of one edition, leaving out its least
    important stories if the HTML part would be over ``options.max_html_bytes`` (all but
    the most important one at most: an edition of news never says "nothing new")."""
    items = digest.items
    html, text, subject = _render_all(digest, items, env, tz, options)
    size = options.html_size(html)
    empty_size: int | None = None
    while size > options.max_html_bytes and len(items) > 1:
        if empty_size is None:
            empty_size = options.html_size(_render_all(digest, (), env, tz, options)[0])
        items = items[: _fewer(len(items), size, empty_size, options.max_html_bytes)]
        html, text, subject = _render_all(digest, items, env, tz, options)
        size = options.html_size(html)
    return RenderedDigest(
        edition_on=digest.edition_on,
        subject=subject,
        html=html,
        text=text,
        trimmed_stories=len(digest.items) - len(items),
    )


def _fewer(count: int, size: int, empty_size: int, budget: int) -> int:
    """How many stories to try next: what fits at this edition's bytes per story."""
    per_story = max(1, (size - empty_size) // count)
    return max(1, min(count - 1, (budget - empty_size) // per_story))


def _render_all(
    digest: Digest,
    items: Sequence[DigestItem],
    env: jinja2.Environment,
    tz: ZoneInfo,
    options: RenderOptions,
) -> tuple[str, str, str]:
    context = _context(digest, items, options, tz)
    html = _INLINER.inline(_render(env, HTML_TEMPLATE, context))
    return html, _render(env, TEXT_TEMPLATE, context), _subject(options, context)


# What a user's template can raise while it renders (besides Jinja's own errors): each
# becomes a TemplateError naming the file and line, never a traceback.
_TEMPLATE_FAULTS = (
    jinja2.TemplateError,
    TypeError,
    ValueError,
    AttributeError,
    ArithmeticError,
    LookupError,
    RecursionError,
)


def _render(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    try:
        return env.get_template(name).render(context)
    except _TEMPLATE_FAULTS as exc:
        raise _template_error(exc, name, env) from exc


def _template_error(exc: Exception, name: str, env: jinja2.Environment) -> TemplateError:
    """Name the template file, the line and the folders searched, whatever went wrong."""
    searched = ", ".join(env.globals["searched_dirs"])  # type: ignore[arg-type]
    hint = f"template folders searched: {searched}"
    if isinstance(exc, jinja2.TemplateSyntaxError):
        where = f"{exc.filename or exc.name}, line {exc.lineno}"
        return TemplateError(f"template {where}: {exc.message}", hint=hint)
    where = _where_in_templates(exc) or name
    if isinstance(exc, jinja2.TemplateNotFound):
        message = f"template {exc.name!r} not found (needed by {where})"
    elif isinstance(exc, RecursionError):
        message = f"template {where}: it extends or includes itself"
        hint = f'to extend a built-in template, name it with "default:" ("default:{name}"); {hint}'
    else:
        detail = exc.message if isinstance(exc, jinja2.TemplateError) else str(exc)
        message = f"template {where}: {detail}"
    return TemplateError(message, hint=hint)


def _where_in_templates(exc: Exception) -> str | None:
    """'file, line N' of the innermost template frame: Jinja maps its frames onto the
    template files, so the traceback knows the template's own line."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
    if not frames:
        return None
    return f"{frames[-1].filename}, line {frames[-1].lineno}"


def _subject(options: RenderOptions, context: dict[str, Any]) -> str:
    try:
        subject = _subject_template(options.subject).render(context)
    except _TEMPLATE_FAULTS as exc:
        detail = exc.message if isinstance(exc, jinja2.TemplateError) else str(exc)
        line = getattr(exc, "lineno", None) or 1
        raise TemplateError(
            f"[render].subject, line {line}: {detail}",
            hint="it may use title, date, iso_date, top_headline and story_count",
        ) from exc
    return " ".join(subject.split())  # one header line, whatever a headline holds


@functools.lru_cache(maxsize=8)
def _subject_template(source: str) -> jinja2.Template:
    env = _BoundedSandbox(undefined=jinja2.StrictUndefined, autoescape=False)
    return env.from_string(source)


def _context(
    digest: Digest, items: Sequence[DigestItem], options: RenderOptions, tz: ZoneInfo
) -> dict[str, Any]:
    shown = [_item(n, item, tz, images=options.images) for n, item in enumerate(items, start=1)]
    sections = _sections(shown, digest.section_order)
    reading = [item for section in sections for item in section["items"]]
    for number, item in enumerate(reading, start=1):
        item["number"], item["anchor"] = number, f"story-{number}"
    lead = reading[0] if reading else None
    if lead is not None:
        lead["is_lead"] = True
        _after_the_lead(sections[0])
    date = f"{digest.edition_on:%A, %-d %B %Y}"
    return {
        "title": options.title,
        "date": date,
        "edition_date": date,
        "iso_date": digest.edition_on.isoformat(),
        "top_headline": lead["headline"] if lead else "nothing new today",
        "story_count": len(shown),
        "generated_at": _local(digest.generated_at, tz),
        "lead": lead,
        "items": reading,
        "sections": sections,
        "preheader": " · ".join(i["headline"] for i in reading[:3]),
        "failed_feeds": [_failure(f) for f in digest.failed_feeds],
        "trimmed": len(digest.items) - len(items),
        "archive_url": _archive_link(options.archive_url, digest),
        "unsubscribe_url": _safe_url(options.unsubscribe_url, extra=("mailto",)),
    }


def _after_the_lead(section: dict[str, Any]) -> None:
    """The lead's section goes on after the lead block: its next story opens it, and if it
    has none, its link in the contents goes to the lead block."""
    rest = section["items"][1:]
    if rest:
        rest[0]["is_first_in_section"] = True
    else:
        section["anchor"] = section["items"][0]["anchor"]


def _item(rank: int, item: DigestItem, tz: ZoneInfo, *, images: bool) -> dict[str, Any]:
    lead = item.cluster.lead
    headline = _clip(lead.title, _MAX_HEADLINE_CHARS)
    return {
        "rank": rank,
        "headline": headline,
        "url": _safe_url(lead.url),
        "source": _clip(lead.source_name, _MAX_NAME_CHARS),
        "section": section_of(lead),
        "also": _also_in(item.cluster),
        "summary": _clip(item.summary.text, _MAX_SUMMARY_CHARS),
        "is_from_full_text": item.summary.is_from_full_text,
        "published": _local(lead.published_at, tz) if lead.published_at else None,
        "is_first_in_section": False,
        "is_lead": False,
        "image": _image(item.cluster, headline) if images else None,
        "reading_minutes": reading_minutes(lead.text) if lead.text_source == "article" else None,
    }


# The column's width in the built-in template (600 px less 24 px padding each side): an
# image's width attribute, for the clients that ignore CSS max-width.
IMAGE_WIDTH = 552


def _image(cluster: Cluster, headline: str) -> dict[str, Any] | None:
    """The lead story's image, else the first other outlet's: its address, its alt text
    (the headline: what a reader who blocks images reads in its place) and its width."""
    for story in (cluster.lead, *cluster.others):
        if url := _safe_url(story.image_url):
            return {"url": url, "alt": headline, "width": IMAGE_WIDTH}
    return None


# Reading speeds: ~230 words a minute for text written with spaces between words; Chinese,
# Japanese and Korean are read at ~500 characters a minute (no spaces to count words by).
WORDS_PER_MINUTE = 230
CJK_CHARACTERS_PER_MINUTE = 500
_CJK = re.compile(
    r"[\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]"
)


def reading_minutes(text: str) -> int:
    """Minutes to read ``text``, rounded up, at least 1: its CJK characters at
    CJK_CHARACTERS_PER_MINUTE, the words of the rest at WORDS_PER_MINUTE."""
    characters = len(_CJK.findall(text))
    words = len(_CJK.sub(" ", text).split())
    minutes = characters / CJK_CHARACTERS_PER_MINUTE + words / WORDS_PER_MINUTE
    return max(1, math.ceil(minutes))


def _also_in(cluster: Cluster) -> list[dict[str, str | None]]:
    return [
        {"name": _clip(other.source_name, _MAX_NAME_CHARS), "url": _safe_url(other.url)}
        for other in other_outlets(cluster)
    ]


def _failure(failure: FeedFailure) -> dict[str, str]:
    return {
        "name": _clip(failure.name, _MAX_NAME_CHARS),
        "error": _clip(failure.error, _MAX_ERROR_CHARS),
    }


def _sections(items: Sequence[dict[str, Any]], order: Sequence[str]) -> list[dict[str, Any]]:
    """The items (most important first) by section, in the reading order ``in_sections``
    defines: what the contents, the lead block and the subject line all follow."""
    grouped = in_sections(items, lambda item: str(item["section"]), order)
    for _, group in grouped:
        group[0]["is_first_in_section"] = True  # under the section's rule: none of its own
    return [
        {"name": name, "anchor": f"section-{number}", "items": group}
        for number, (name, group) in enumerate(grouped, start=1)
    ]


def _safe_url(url: str | None, extra: tuple[str, ...] = ()) -> str | None:
    """The URL if a reader's click can only open a page (or a mail); else no link at all."""
    if not url or len(url) > _MAX_URL_CHARS:
        return None
    url = url.strip()
    scheme = urlsplit(url).scheme.lower()
    return url if scheme in _LINK_SCHEMES or scheme in extra else None


def _archive_link(archive_url: str | None, digest: Digest) -> str | None:
    if not archive_url:
        return None
    return _safe_url(archive_url.replace("{date}", digest.edition_on.isoformat()))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _local(moment: datetime, tz: ZoneInfo) -> str:
    return f"{moment.astimezone(tz):%-d %b %Y, %H:%M %Z}"
