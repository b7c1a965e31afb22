"""Check: ``digest check``, the problems in the settings that validation alone cannot see.

Reads files (feeds, templates, the abstractive model's files), never the network, and loads
no model: it imports no numpy, torch or transformers.
"""

from __future__ import annotations

import logging
import os

from digest.config import Settings, SummarizeSettings
from digest.deliver import PASSWORD_ENV_VAR
from digest.model_files import find_model
from digest.plugins import make_plugin_manager, summarizer_factories
from digest.render import check_templates, make_environment
from digest.render_settings import render_options

logger = logging.getLogger(__name__)


def check_settings(settings: Settings) -> list[str]:
    """Problems that validation alone cannot see: missing files, unknown names, templates."""
    problems = []
    for number, feed in enumerate(settings.feeds, start=1):
        if not feed.url.startswith(("http://", "https://")) and not os.path.isfile(feed.url):
            problems.append(f"[[feeds]] #{number} .url: no such file: {feed.url}")
    factories = summarizer_factories(make_plugin_manager())
    if settings.summarize.summarizer not in factories:
        problems.append(
            f"[summarize].summarizer = {settings.summarize.summarizer!r}: no such summarizer "
            f"(choose one of: {', '.join(sorted(factories))})"
        )
    if settings.summarize.summarizer == "abstractive":
        problems.extend(_check_abstractive_model(settings.summarize))
    template_dir = settings.render.template_dir
    if template_dir is not None and not template_dir.is_dir():
        problems.append(f"[render].template_dir: no such folder: {template_dir}")
    else:
        problems.extend(check_templates(make_environment(template_dir), render_options(settings)))
    smtp_login = settings.delivery.backend == "smtp" and settings.smtp.username
    if smtp_login and not os.environ.get(PASSWORD_ENV_VAR):
        problems.append(f"[smtp].username is set but ${PASSWORD_ENV_VAR} is not")
    return problems


def _check_abstractive_model(settings: SummarizeSettings) -> list[str]:
    """The abstractive model's absence as a problem, or only a logged warning when a run
    would still work: it falls back to extractive, or may download the model."""
    missing = find_model(settings)
    if missing is None:
        return []
    if settings.fallback == "extractive":
        note = "runs will use the extractive summarizer instead"
        logger.warning("%s; %s\n  hint: %s", missing.message, note, missing.hint)
    elif settings.allow_download:
        logger.warning("%s; the first run will download it", missing.message)
    else:
        return [str(missing)]
    return []
