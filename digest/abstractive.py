"""Summarize, abstractive: story text -> a new short summary written by a seq2seq model.

Any Hugging Face summarization model (BART, PEGASUS, T5, ...) named in ``[summarize].model``:
a local folder, or a hub id looked up in the local Hugging Face cache only. Nothing is
downloaded unless ``[summarize].allow_download = true``. A missing model is a
``SummarizerError`` saying how to get it, or, with ``fallback = "extractive"``, a logged
warning and the extractive summarizer instead.

The model reads the story text without its headline: the digest prints the headline right
above the summary, and news-trained models copy the first line of their input, so a headline
in the input is mostly spent restating it. A story longer than the model's input is cut
into sentence-aligned chunks of at most ``max_input_tokens`` tokens; each chunk is
summarised and, while the joined chunk summaries are still over the word budget, they are
summarised again (a few rounds at most). All chunks of all stories in a call are generated
together, in batches of similar length. The model loads once, when the summarizer is built.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digest.errors import SummarizerError
from digest.model_files import missing_model
from digest.summarize import (
    ExtractiveSummarizer,
    Summarizer,
    SummaryRequest,
    split_sentences,
    word_count,
)

if TYPE_CHECKING:
    from digest.config import SummarizeSettings

logger = logging.getLogger(__name__)

NAME = "abstractive"
# A story's first chunks only: news puts what matters first, and it bounds a long page's cost.
MAX_CHUNKS = 8
# Rounds of summarising the joined chunk summaries again; each round shrinks them a lot.
MAX_ROUNDS = 3
BATCH_SIZE = 8
# For models that state no input limit (T5's relative positions have none).
DEFAULT_MAX_INPUT_TOKENS = 512

_TAG = re.compile(r"</?[A-Za-z_][^<>]{0,40}>")  # <pad>, </s>, <extra_id_0>, stray HTML
_SPACE = re.compile(r"\s+")


class AbstractiveSummarizer:
    """A loaded seq2seq model that writes one summary per request, within ``words`` words."""

    def __init__(
        self, tokenizer: Any, model: Any, settings: SummarizeSettings, *, device: str
    ) -> None:
        self._tokenizer = tokenizer
        self._model = model
        # max/min_new_tokens decide the length: the model's own lengths (BART-CNN asks for at
        # least 56 tokens) must not override the word budget, nor warn on every call.
        model.generation_config.max_length = model.generation_config.min_length = None
        self.device = device
        self.words = words = settings.words
        self.max_input_tokens = _max_input_tokens(tokenizer, model, settings.max_input_tokens)
        self.prefix = _task_prefix(model)
        self.generation = _generation_kwargs(settings)
        self.model_id = _model_id(
            settings.model, model, self.generation, max_input=self.max_input_tokens, words=words
        )

    def summarize(self, requests: Sequence[SummaryRequest]) -> list[str]:
        # A text within the budget is shown as is; the others are chunked with their line
        # breaks, which tell the sentence splitter where paragraphs and headings end.
        summaries = [_SPACE.sub(" ", request.text).strip() for request in requests]
        pending = {
            i: request.text
            for i, request in enumerate(requests)
            if word_count(request.text) > self.words
        }
        for _ in range(MAX_ROUNDS):
            if not pending:
                break
            pending = self._round(pending, summaries)
        for index, text in pending.items():
            summaries[index] = fit_words(text, self.words)
        return summaries

    def _round(self, pending: dict[int, str], summaries: list[str]) -> dict[int, str]:
        """Summarise each pending text once; return those whose joined summaries are still long."""
        chunks = {index: self.chunk(text)[:MAX_CHUNKS] for index, text in pending.items()}
        flat = [piece for pieces in chunks.values() for piece in pieces]
        outputs = iter(self.generate(flat))
        still_long = {}
        for index, pieces in chunks.items():
            joined = " ".join(filter(None, (next(outputs) for _ in pieces)))
            if len(pieces) > 1 and word_count(joined) > self.words:
                still_long[index] = joined
            else:
                # An empty generation is no summary: the text's first sentences stand in.
                summaries[index] = fit_words(joined or pending[index], self.words)
        return still_long

    def chunk(self, text: str) -> list[str]:
        """Whole sentences packed into pieces of at most the model's input, in tokens; a
        sentence longer than that is cut between words."""
        limit = self.max_input_tokens - self._tokenizer.num_special_tokens_to_add()
        limit -= self.count_tokens(self.prefix) if self.prefix else 0
        units: list[str] = []
        for sentence in split_sentences(text):
            if self.count_tokens(sentence) > limit:
                units.extend(pack(sentence.split(), self.count_tokens, limit))
            else:
                units.append(sentence)
        return pack(units, self.count_tokens, limit)

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` adds after a space: an upper bound of its cost inside a chunk."""
        return len(self._tokenizer(" " + text, add_special_tokens=False)["input_ids"])

    def generate(self, texts: Sequence[str]) -> list[str]:
        """One cleaned generation per text, in batches of similar length."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        outputs = [""] * len(texts)
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            generated = self._generate_batch([texts[i] for i in batch])
            for index, output in zip(batch, generated, strict=True):
                outputs[index] = output
        return outputs

    def _generate_batch(self, texts: Sequence[str]) -> list[str]:
        import torch

        inputs = self._tokenizer(
            [self.prefix + text for text in texts],
            padding=True,
            truncation=True,
            max_length=self.max_input_tokens,
            return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode():
            ids = self._model.generate(**inputs, **self.generation)
        decoded = self._tokenizer.batch_decode(ids, skip_special_tokens=True)
        return [clean_output(text) for text in decoded]


def pack(units: Iterable[str], count: Callable[[str], int], limit: int) -> list[str]:
    """Join consecutive units with spaces into pieces of at most ``limit`` (by ``count``)."""
    pieces: list[str] = []
    current: list[str] = []
    used = 0
    for unit in units:
        cost = count(unit)
        if current and used + cost > limit:
            pieces.append(" ".join(current))
            current, used = [], 0
        current.append(unit)
        used += cost
    if current:
        pieces.append(" ".join(current))
    return pieces


def clean_output(text: str) -> str:
    """A generation as plain text: special tokens, tags and control characters removed."""
    text = html.unescape(text.replace("<n>", " "))  # PEGASUS writes newlines as <n>
    text = _TAG.sub(" ", text)
    text = "".join(c if c.isprintable() else " " for c in text)
    return _SPACE.sub(" ", text).strip()


def fit_words(text: str, words: int) -> str:
    """The first whole sentences of ``text`` within ``words`` words; an overlong first
    sentence is cut and ends in an ellipsis."""
    if word_count(text) <= words:
        return text
    chosen: list[str] = []
    used = 0
    for sentence in split_sentences(text):
        used += word_count(sentence)
        if used > words:
            break
        chosen.append(sentence)
    if chosen:
        return " ".join(chosen)
    return " ".join(text.split()[:words]) + "…"


# Settings -> generation


def _generation_kwargs(settings: SummarizeSettings) -> dict[str, Any]:
    """``generate`` arguments for everything that decides the output's length and wording."""
    max_new = settings.max_new_tokens or 2 * settings.words
    min_new = settings.words // 2 if settings.min_new_tokens is None else settings.min_new_tokens
    return {
        "num_beams": settings.num_beams,
        "max_new_tokens": max_new,
        "min_new_tokens": min(min_new, max_new),
        "no_repeat_ngram_size": settings.no_repeat_ngram_size,
        "length_penalty": settings.length_penalty,
        "early_stopping": settings.num_beams > 1,
        "do_sample": False,
    }


def _max_input_tokens(tokenizer: Any, model: Any, configured: int | None) -> int:
    """The configured limit, never above what the model's position embeddings allow."""
    stated = [tokenizer.model_max_length, getattr(model.config, "max_position_embeddings", None)]
    # Tokenizers without a limit report a huge sentinel (1e30).
    known = [n for n in stated if isinstance(n, int) and 0 < n <= 1_000_000]
    model_limit = min(known) if known else None
    if configured is None:
        return model_limit or DEFAULT_MAX_INPUT_TOKENS
    return min(configured, model_limit) if model_limit else configured


def _task_prefix(model: Any) -> str:
    """The input prefix a model asks for (t5-small: 'summarize: '), or none."""
    params = getattr(model.config, "task_specific_params", None) or {}
    prefix = params.get("summarization", {}).get("prefix", "")
    return prefix if isinstance(prefix, str) else ""


def _model_id(
    source: str, model: Any, generation: dict[str, Any], *, max_input: int, words: int
) -> str:
    """The model, its revision and every setting that changes the output (the cache key)."""
    keys = ("num_beams", "max_new_tokens", "min_new_tokens", "no_repeat_ngram_size")
    chosen = [f"{key}={generation[key]}" for key in keys]
    chosen += [f"length_penalty={generation['length_penalty']}", f"max_input={max_input}"]
    return f"{NAME}/{_revision(source, model)}/words={words},{','.join(chosen)}"


def _revision(source: str, model: Any) -> str:
    """'org/name@commit' for a cached hub model; 'folder@fingerprint' for a local folder,
    the fingerprint taken from its files' names, sizes and modification times."""
    folder = Path(source)
    if not folder.is_dir():
        commit = getattr(model.config, "_commit_hash", None)
        return f"{source}@{commit[:12]}" if commit else source
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.iterdir() if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return f"{folder.name}@{digest.hexdigest()[:12]}"


# Loading


def load_abstractive(settings: SummarizeSettings) -> Summarizer:
    """Load ``[summarize].model`` once; if it cannot be loaded, raise SummarizerError, or
    with ``fallback = "extractive"`` log why and return the extractive summarizer."""
    try:
        tokenizer, model, device = _load_model(settings)
    except SummarizerError as exc:
        if settings.fallback != "extractive":
            raise
        logger.warning("%s; using the extractive summarizer instead", exc.message)
        return ExtractiveSummarizer(settings.words)
    return AbstractiveSummarizer(tokenizer, model, settings, device=device)


def _load_model(settings: SummarizeSettings) -> tuple[Any, Any, str]:
    source = settings.model
    if Path(source).is_absolute() and not Path(source).is_dir():
        raise missing_model(settings, f"no such folder: {source}")
    device = _device(settings.device)
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    local_only = not settings.allow_download
    try:
        with _hub_offline(local_only):
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
            model = AutoModelForSeq2SeqLM.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError) as exc:  # missing files; ValueError: not a seq2seq model
        raise missing_model(settings, _reason(settings, exc)) from exc
    return tokenizer, model.to(device).eval(), device


def _reason(settings: SummarizeSettings, exc: Exception, *, offline: bool = False) -> str:
    """Why loading failed, in our words where transformers' would mislead (it says it
    could not connect, though a cache-only lookup never tries)."""
    is_hub_id = not Path(settings.model).is_absolute()
    if isinstance(exc, OSError) and is_hub_id and (offline or not settings.allow_download):
        from huggingface_hub import constants

        return f"not found, complete, in the local Hugging Face cache {constants.HF_HUB_CACHE}"
    return str(exc).splitlines()[0]


@contextlib.contextmanager
def _hub_offline(is_offline: bool) -> Iterator[None]:
    """huggingface_hub's offline switch, on for one load only. Even a cache-only lookup
    calls the hub without it (huggingface_hub 2.x fetches a registry for its User-Agent);
    it reads $HF_HUB_OFFLINE once, at import, so the switch is its module constant."""
    if not is_offline:
        yield
        return
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _device(choice: str) -> str:
    import torch

    has_cuda = torch.cuda.is_available()
    if choice == "cuda" and not has_cuda:
        raise SummarizerError(
            '[summarize].device = "cuda", but torch sees no CUDA device',
            hint='set [summarize].device = "auto" or "cpu", or install a CUDA build of torch',
        )
    if choice == "auto":
        return "cuda" if has_cuda else "cpu"
    return choice
