"""The built-in summarizers, registered through the same hook third parties use.

Each factory imports its summarizer's module (numpy, sentencex; torch and transformers for
the abstractive one; aiohttp for llm) only when a summarizer is built: listing the names, as
``digest check`` does, imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from digest.hookspecs import hookimpl

if TYPE_CHECKING:
    from digest.config import SummarizeSettings
    from digest.summarize import Summarizer


def lead_summarizer(settings: SummarizeSettings) -> Summarizer:
    """The first sentences of each story, within the word budget."""
    from digest.summarize import LeadSummarizer

    return LeadSummarizer(settings.words)


def extractive_summarizer(settings: SummarizeSettings) -> Summarizer:
    """The most central sentences of each story (MiniLM embeddings)."""
    from digest.summarize import ExtractiveSummarizer

    return ExtractiveSummarizer(settings.words)


def abstractive_summarizer(settings: SummarizeSettings) -> Summarizer:
    """A seq2seq model's summary of each story (or the extractive one, as configured)."""
    from digest.abstractive import load_abstractive

    return load_abstractive(settings)


def llm_summarizer(settings: SummarizeSettings) -> Summarizer:
    """Each story's summary from an OpenAI-compatible chat-completions endpoint."""
    from digest.llm import LlmSummarizer, read_api_key
    from digest.summarize import ExtractiveSummarizer

    fallback = ExtractiveSummarizer(settings.words) if settings.fallback == "extractive" else None
    return LlmSummarizer(settings, api_key=read_api_key(), fallback=fallback)


@hookimpl
def register_summarizers(register: Callable[..., Any]) -> None:
    register("lead", lead_summarizer)
    register("extractive", extractive_summarizer)
    register("abstractive", abstractive_summarizer)
    register("llm", llm_summarizer)
