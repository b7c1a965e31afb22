"""What the settings say about an edition's look: ``RenderOptions`` and ``SectionRules`` (pure)."""

from __future__ import annotations

from digest.config import Settings
from digest.messages import UNSUBSCRIBE_TOKEN, html_part_size
from digest.rank import SectionRules
from digest.render import RenderOptions


def render_options(settings: Settings) -> RenderOptions:
    """What the settings say about an edition's look."""
    render = settings.render
    return RenderOptions(
        title=render.title,
        subject=render.subject,
        archive_url=render.archive_url,
        unsubscribe_url=_unsubscribe_link(settings),
        max_html_bytes=render.max_html_bytes,
        html_size=html_part_size,
        images=render.images,
    )


def _unsubscribe_link(settings: Settings) -> str | None:
    """The footer's unsubscribe link: each reader's own page with ``[web].base_url`` (the
    placeholder becomes their token as each message is made), else the one static one-click
    page, else a mail to the unsubscribe address."""
    delivery = settings.delivery
    if settings.web.base_url:
        return f"{settings.web.base_url}/unsubscribe/{UNSUBSCRIBE_TOKEN}"
    if delivery.unsubscribe_url:
        return delivery.unsubscribe_url
    return f"mailto:{delivery.unsubscribe_mailto}" if delivery.unsubscribe_mailto else None


def section_rules(settings: Settings) -> SectionRules:
    """How the settings group stories into sections and cap them."""
    return SectionRules(
        order=settings.render.sections,
        max_per_section=settings.render.max_per_section,
        max_total=settings.render.max_stories,
        priorities={feed.url: feed.priority for feed in settings.feed_sources},
    )
