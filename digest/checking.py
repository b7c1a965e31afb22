"""Check: ``digest check``, the problems in the settings that validation alone cannot see.

Reads files (feeds, templates, the abstractive model's files) and loads no model: it imports
no numpy, torch or transformers. The network only for the llm summarizer (its endpoint is
asked which models it serves) and a PostgreSQL store (its server is asked its version and
the store's migrations; nothing is written).
"""

from __future__ import annotations

import logging
import os

from digest.config import Settings, SummarizeSettings
from digest.model_files import bundled_model_problem, find_model
from digest.models import StoreCheck
from digest.plugins import make_plugin_manager, summarizer_factories
from digest.preflight import mailer_problems
from digest.reader_links import reader_link_warnings
from digest.render import check_templates, make_environment
from digest.render_settings import render_options
from digest.runtime import read_smtp_password

logger = logging.getLogger(__name__)


def check_settings(settings: Settings) -> list[str]:
    """Problems that validation alone cannot see: missing files, unknown names, templates."""
    problems = []
    for number, feed in enumerate(settings.feeds, start=1):
        if not feed.url.startswith(("http://", "https://")) and not os.path.isfile(feed.url):
            problems.append(f"[[feeds]] #{number}.url: no such file: {feed.url}")
    factories = summarizer_factories(make_plugin_manager())
    if settings.summarize.summarizer not in factories:
        problems.append(
            f"[summarize].summarizer = {settings.summarize.summarizer!r}: no such summarizer "
            f"(choose one of: {', '.join(sorted(factories))})"
        )
    if settings.summarize.summarizer == "abstractive":
        problems.extend(_check_abstractive_model(settings.summarize))
    if settings.summarize.summarizer == "llm":
        problems.extend(_check_llm_endpoint(settings.summarize))
    template_dir = settings.render.template_dir
    if template_dir is not None and not template_dir.is_dir():
        problems.append(f"[render].template_dir: no such folder: {template_dir}")
    else:
        problems.extend(check_templates(make_environment(template_dir), render_options(settings)))
    encoder_missing = bundled_model_problem()
    if encoder_missing:
        problems.append(encoder_missing)
    problems.extend(mailer_problems(settings, read_smtp_password()))
    for warning in reader_link_warnings(settings):  # a warning: the check still passes
        logger.warning("%s", warning)
    return problems


def check_store(settings: Settings) -> StoreCheck:
    """The store's engine, version and migrations (applied, pending), or why it cannot be
    read; nothing is written, and a store not made yet is not made."""
    if settings.store.url is not None:
        from digest.pg_store import check_store as check_postgres  # psycopg: only for it

        return check_postgres(settings.store.url)
    from digest.sqlite_store import check_store as check_sqlite

    return check_sqlite(settings.store.path, settings.store.busy_timeout_seconds)


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


def _check_llm_endpoint(settings: SummarizeSettings) -> list[str]:
    """Whether the llm endpoint lists the model: a problem, or only a logged warning when
    runs would still work (each story then falls back to extractive)."""
    from digest.llm import model_listing_problem, read_api_key  # aiohttp: only for llm

    problem = model_listing_problem(settings, read_api_key())
    if problem is None:
        logger.info("[summarize]: %s serves the model %r", settings.base_url, settings.model)
        return []
    if settings.fallback == "extractive":
        logger.warning("%s; runs will summarise with extractive instead", problem)
        return []
    return [problem]
