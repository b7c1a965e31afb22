"""The embedding cache: each story's headline + lead is embedded once per model and kept in
the store; the model loads only when something is missing; preview reads and never writes.

The encoder is the real bundled MiniLM, wrapped to count the texts it is asked to embed; the
store is a real SQLite file; the commands are real ``python -m digest`` processes.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from digest.collecting import collect_once
from digest.config import load_settings
from digest.dedupe import cluster_stories
from digest.embeddings import CachedEncoder, text_hash
from digest.encoder import SentenceEncoder, has_native_bf16, load_encoder, model_key
from digest.models import FeedSource, FetchResult, Story
from digest.parse import parse_feed
from digest.runtime import Runtime
from digest.sending import send_edition
from digest.sqlite_store import SQLiteStore
from digest.store import Store
from digest.summarize import LeadSummarizer
from tests.conftest import FEEDS, write_settings

NOW = datetime(2017, 1, 8, 6, tzinfo=UTC)
FIXTURE_FEEDS = ("japantoday.xml", "nasa.xml", "jsonfeed.json")


class CountingEncoder:
    """The real encoder, counting the texts it embeds."""

    languages = frozenset({"en"})

    def __init__(self, bf16: bool) -> None:
        self.inner: SentenceEncoder = load_encoder(bf16=bf16)
        self.texts = 0

    def encode(self, texts: Sequence[str], *, max_length: int = 128) -> npt.NDArray[np.float32]:
        self.texts += len(texts)
        return self.inner.encode(texts, max_length=max_length)


class Loader:
    """What CachedEncoder calls to load the model: counts the loads."""

    def __init__(self, bf16: bool = False) -> None:
        self.encoder = CountingEncoder(bf16)
        self.loads = 0

    def __call__(self) -> CountingEncoder:
        self.loads += 1
        return self.encoder


def _stories() -> list[Story]:
    stories: list[Story] = []
    for name in FIXTURE_FEEDS:
        source = FeedSource(url=str(FEEDS / name))
        result = FetchResult(
            source=source, fetched_at=NOW, status=200, body=(FEEDS / name).read_bytes()
        )
        stories += parse_feed(result).stories
    return stories


def _cached(store: Store, loader: Loader, *, bf16: bool = False) -> CachedEncoder:
    return CachedEncoder(store, lambda: NOW, bf16=bf16, load=loader)


def test_vectors_are_computed_once_and_read_back_exactly_as_computed(tmp_path: Path) -> None:
    texts = ["Florida airport shooting", "Nishikori beats Wawrinka", "JSON Feed is announced"]
    with SQLiteStore.open(tmp_path / "digest.db") as store:
        first_loader, again_loader = Loader(), Loader()
        first = _cached(store, first_loader).encode(texts)
        again = _cached(store, again_loader).encode([texts[2], texts[0], texts[2]])
    assert (first_loader.loads, first_loader.encoder.texts) == (1, 3)
    assert (again_loader.loads, again_loader.encoder.texts) == (0, 0)
    assert np.array_equal(again, first[[2, 0, 2]])
    assert np.allclose(first, load_encoder(bf16=False).encode(texts), atol=1e-6)


def test_a_second_build_with_nothing_new_loads_no_model(tmp_path: Path) -> None:
    stories = _stories()
    with SQLiteStore.open(tmp_path / "digest.db") as store:
        first_loader, again_loader = Loader(), Loader()
        first = cluster_stories(stories, encoder=_cached(store, first_loader))
        again = cluster_stories(stories, encoder=_cached(store, again_loader))
        stored = store.cached_embeddings(model_key(bf16=False, max_length=128), _all(store))
    assert first_loader.encoder.texts == len(stories) == len(stored)
    assert again_loader.loads == 0 and again_loader.encoder.texts == 0
    assert again == first


def _all(store: SQLiteStore) -> list[str]:
    with sqlite3.connect(store.path) as conn:
        hashes = [row[0] for row in conn.execute("SELECT text_hash FROM embeddings")]
    conn.close()
    return hashes


def test_a_changed_headline_is_embedded_again_and_only_it(tmp_path: Path) -> None:
    stories = _stories()
    changed = [replace(stories[0], title=stories[0].title + " (updated)"), *stories[1:]]
    with SQLiteStore.open(tmp_path / "digest.db") as store:
        cluster_stories(stories, encoder=_cached(store, Loader()))
        loader = Loader()
        cluster_stories(changed, encoder=_cached(store, loader))
    assert (loader.loads, loader.encoder.texts) == (1, 1)


def test_another_precision_or_token_limit_does_not_share_vectors(tmp_path: Path) -> None:
    texts = ["Florida airport shooting", "Nishikori beats Wawrinka"]
    with SQLiteStore.open(tmp_path / "digest.db") as store:
        _cached(store, Loader()).encode(texts)
        bf16 = Loader(bf16=True)
        _cached(store, bf16, bf16=True).encode(texts)
        shorter = Loader()
        _cached(store, shorter).encode(texts, max_length=16)
        fp32 = Loader()
        _cached(store, fp32).encode(texts)
    assert bf16.encoder.texts == 2 and shorter.encoder.texts == 2
    assert fp32.encoder.texts == 0


def test_a_damaged_stored_vector_is_computed_again_not_a_crash(tmp_path: Path) -> None:
    texts = ["Florida airport shooting", "Nishikori beats Wawrinka"]
    path = tmp_path / "digest.db"
    with SQLiteStore.open(path) as store:
        first = _cached(store, Loader()).encode(texts)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "UPDATE embeddings SET vector = substr(vector, 1, 100) WHERE text_hash = ?",
            (text_hash(texts[1]),),
        )
    conn.close()
    with SQLiteStore.open(path) as store:
        loader = Loader()
        again = _cached(store, loader).encode(texts)
        repaired = Loader()
        _cached(store, repaired).encode(texts)
    assert loader.encoder.texts == 1 and repaired.encoder.texts == 0
    assert np.allclose(again, first, atol=1e-6)


def test_a_read_only_store_gives_its_vectors_and_keeps_the_rest_in_memory(
    tmp_path: Path,
) -> None:
    path = tmp_path / "digest.db"
    with SQLiteStore.open(path) as store:
        _cached(store, Loader()).encode(["Florida airport shooting"])
    before = path.read_bytes()
    reader = SQLiteStore.open_read_only(path)
    assert reader is not None
    with reader:
        loader = Loader()
        _cached(reader, loader).encode(["Florida airport shooting", "Nishikori beats Wawrinka"])
        again = Loader()
        _cached(reader, again).encode(["Nishikori beats Wawrinka"])
    assert loader.encoder.texts == 1 and again.encoder.texts == 1  # nothing was written
    assert path.read_bytes() == before


def test_send_keeps_the_vectors_it_computed(tmp_path: Path) -> None:
    feeds = [{"url": str(FEEDS / name)} for name in FIXTURE_FEEDS]
    settings = load_settings(write_settings(tmp_path, feeds))
    with Runtime.open(settings, clock=lambda: NOW) as runtime:
        collect_once(runtime, summarize=False)
    assert _count(tmp_path / "digest.db") == 0
    with Runtime.open(settings, clock=lambda: NOW, summarizer=LeadSummarizer(40)) as runtime:
        send_edition(runtime, collect=False)
    assert _count(tmp_path / "digest.db") == len(_stories())


def _count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        found = int(conn.execute("SELECT count(*) FROM embeddings").fetchone()[0])
    conn.close()
    return found


def _digest(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-X", "importtime", "-m", "digest", "--config", str(config)]
    done = subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _imported(done: subprocess.CompletedProcess[str]) -> set[str]:
    """Top-level packages a ``-X importtime`` run imported."""
    return {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def test_after_collect_preview_uses_the_stored_vectors_and_writes_nothing(
    tmp_path: Path,
) -> None:
    feeds = [{"url": str(FEEDS / name)} for name in FIXTURE_FEEDS]
    config = write_settings(tmp_path, feeds)
    collect = _digest(config, "collect")
    assert "torch" in _imported(collect)  # collect embedded the new stories ...
    assert _count(tmp_path / "digest.db") == len(_stories())  # ... and kept them
    before = (tmp_path / "digest.db").read_bytes()
    preview = _digest(config, "preview", "--no-collect", "--out", str(tmp_path / "p.html"))
    assert {"torch", "transformers"}.isdisjoint(_imported(preview))  # no model was loaded
    assert (tmp_path / "digest.db").read_bytes() == before
    # SQLite's reader of a WAL store makes its shared-memory index and an empty log.
    wal = tmp_path / "digest.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    assert "Florida airport" in (tmp_path / "p.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("fpu sse2 avx512f avx512bw avx512vl avx512dq", False),
        ("fpu sse2 avx512f avx512_bf16 avx512_vnni", True),
        ("fpu sse2 amx_tile amx_bf16", True),
    ],
)
def test_bf16_is_read_from_the_cpu_flags(tmp_path: Path, flags: str, expected: bool) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n", encoding="utf-8")
    assert has_native_bf16(cpuinfo) is expected
    assert has_native_bf16(tmp_path / "none") is False


def test_dedupe_and_the_summarizer_share_one_loaded_model() -> None:
    # Dedupe asks for load_encoder(), the extractive summarizer for load_encoder(model_dir).
    assert load_encoder() is load_encoder(None) is load_encoder(None, bf16=has_native_bf16())
