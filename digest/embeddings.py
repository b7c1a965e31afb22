"""The embedding cache: texts -> sentence vectors, from the store when it has them.

A text's vector is computed once and kept in the store, keyed by ``digest.encoder.model_key``
(model, precision, token cut) and the SHA-256 of the text, as summaries are. The encoder
(about 2-3 s to load, more to run) is loaded only when some text has no stored vector. A
read-only store (``digest preview``) is read, never written: what it lacks is computed in
memory only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime

import numpy as np

from digest.dedupe import Encoder
from digest.encoder import (
    DIMENSIONS,
    MODEL_LANGUAGES,
    Vectors,
    has_native_bf16,
    load_encoder,
    model_key,
)
from digest.models import Embedding
from digest.store import Store


class CachedEncoder:
    """An encoder behind the store's embedding cache (``digest.dedupe.Encoder``).

    ``load`` builds the real encoder, called at most once and only for a text not in the
    store; it must run at the precision given by ``bf16`` (default: the CPU's native one).
    It reads the languages of the bundled model, the one it keys vectors by.
    """

    languages = MODEL_LANGUAGES

    def __init__(
        self,
        store: Store,
        clock: Callable[[], datetime],
        *,
        bf16: bool | None = None,
        load: Callable[[], Encoder] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.bf16 = has_native_bf16() if bf16 is None else bf16
        self._load = load or (lambda: load_encoder(bf16=self.bf16))
        self._encoder: Encoder | None = None

    def encode(self, texts: Sequence[str], *, max_length: int = 128) -> Vectors:
        """One unit vector per text: stored ones as stored, the rest computed (and stored)."""
        key = model_key(bf16=self.bf16, max_length=max_length)
        hashes = [text_hash(text) for text in texts]
        known = self._stored(key, hashes)
        todo = {h: t for h, t in zip(hashes, texts, strict=True) if h not in known}
        if todo:
            fresh = self._encode(list(todo.values()), max_length)
            known.update(zip(todo, fresh, strict=True))
            self._save(key, dict(zip(todo, fresh, strict=True)))
        vectors = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        for row, hashed in enumerate(hashes):
            vectors[row] = known[hashed]
        return vectors

    def _stored(self, key: str, hashes: Sequence[str]) -> dict[str, Vectors]:
        unique = list(dict.fromkeys(hashes))
        return {
            e.text_hash: np.frombuffer(e.vector, dtype="<f4")
            for e in self.store.cached_embeddings(key, unique)
            if e.dimensions == DIMENSIONS
        }

    def _encode(self, texts: list[str], max_length: int) -> Vectors:
        if self._encoder is None:
            self._encoder = self._load()
        return self._encoder.encode(texts, max_length=max_length)

    def _save(self, key: str, vectors: dict[str, Vectors]) -> None:
        if self.store.is_read_only:
            return
        embeddings = [
            Embedding(
                model_key=key,
                text_hash=hashed,
                dimensions=len(vector),
                vector=vector.astype("<f4").tobytes(),
            )
            for hashed, vector in vectors.items()
        ]
        self.store.save_embeddings(embeddings, self.clock())


def text_hash(text: str) -> str:
    """The key of a text in the cache: its SHA-256, prefixed."""
    return f"sha256:{hashlib.sha256(text.encode()).hexdigest()}"
