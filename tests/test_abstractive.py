"""The abstractive summarizer, on a tiny T5 that a session fixture builds and saves itself.

The model is random (2 layers, d_model 32) and byte-level (ByT5's tokenizer needs no vocab
file), so it writes nonsense, but it is loaded, chunked for and generated with through the
same code as a real BART or PEGASUS. Nothing here can reach a network.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import pytest

from digest.abstractive import (
    MAX_CHUNKS,
    AbstractiveSummarizer,
    clean_output,
    fit_words,
    load_abstractive,
)
from digest.checking import check_settings
from digest.config import SummarizeSettings, load_settings
from digest.errors import SummarizerError
from digest.plugins import make_plugin_manager, summarizer_factories
from digest.summarize import ExtractiveSummarizer, SummaryRequest, split_sentences, word_count
from tests.conftest import write_settings

ARTICLE = (
    "The city council voted on Tuesday to expand the tram network by twelve kilometres. "
    "Construction of the new line will begin next spring and is expected to last three years. "
    "The mayor said the project would cut car traffic in the centre by a fifth. "
    "Opposition members questioned the cost, which has risen twice since the plan was announced. "
    "Residents along the route will be able to comment on the design until the end of March. "
    "The council also approved a new bus depot in the northern district."
)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer T5 with a byte-level tokenizer, saved the way a real model is."""
    import torch
    from transformers import ByT5Tokenizer, T5Config, T5ForConditionalGeneration

    folder = tmp_path_factory.mktemp("models") / "tiny-t5"
    tokenizer = ByT5Tokenizer()
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_ff=64,
        d_kv=16,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config.decoder_start_token_id = tokenizer.pad_token_id  # not in T5Config's typed signature
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(config)
    # Random weights write random bytes; the model's own generation config keeps it to "a",
    # "b" and spaces, so that (with no_repeat_ngram_size) its output is words, not control
    # characters, and a long enough generation has several words.
    allowed = {tokenizer.eos_token_id} | {tokenizer.convert_tokens_to_ids(c) for c in "ab "}
    model.generation_config.suppress_tokens = [i for i in range(len(tokenizer)) if i not in allowed]
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """A model this small runs fastest on one thread, and stays fast on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


LOOPBACK = ("127.0.0.1", "::1", "localhost")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Hub offline mode, and a test fails if anything tried to look up or connect to a host
    beyond loopback.

    huggingface_hub reads HF_HUB_OFFLINE once, at import, so the variable alone may not
    hold; the guards do, and they record attempts that a library would retry or swallow."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    attempts: list[object] = []
    getaddrinfo, connect = socket.getaddrinfo, socket.socket.connect

    def resolve_loopback_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in (None, *LOOPBACK):
            attempts.append(host)
            raise socket.gaierror(socket.EAI_NONAME, f"tests never look up {host!r}")
        return getaddrinfo(host, *args, **kwargs)

    def connect_loopback_only(sock: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in LOOPBACK:
            attempts.append(address)
            raise ConnectionRefusedError(f"tests never connect to {address!r}")
        return connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", resolve_loopback_only)
    monkeypatch.setattr(socket.socket, "connect", connect_loopback_only)
    yield
    assert not attempts, f"tried to reach the network: {attempts}"


def _settings(model: Path | str, **values: Any) -> SummarizeSettings:
    defaults: dict[str, Any] = {
        "summarizer": "abstractive",
        "words": 20,
        "num_beams": 2,
        "max_new_tokens": 16,  # short generations keep the tests fast
        "min_new_tokens": 4,
    }
    return SummarizeSettings(model=str(model), **{**defaults, **values})


def _load(model: Path | str, **values: Any) -> AbstractiveSummarizer:
    summarizer = load_abstractive(_settings(model, **values))
    assert isinstance(summarizer, AbstractiveSummarizer)
    return summarizer


def test_the_plugin_loads_the_model_offline_and_summarises_a_batch(
    tiny_model: Path, offline: None
) -> None:
    factories = summarizer_factories(make_plugin_manager(load_entry_points=False))
    summarizer = factories["abstractive"](_settings(tiny_model))
    assert isinstance(summarizer, AbstractiveSummarizer)
    requests = [
        SummaryRequest(title="Trams", text=ARTICLE),
        SummaryRequest(title="Depot", text=" ".join(reversed(ARTICLE.split(". ")))),
        SummaryRequest(title="Shorter", text=" ".join(split_sentences(ARTICLE)[:3])),
    ]
    summaries = summarizer.summarize(requests)
    assert len(summaries) == 3
    for summary in summaries:
        assert summary.strip() and summary == clean_output(summary)
        assert word_count(summary) <= 20
        assert summary not in ARTICLE  # written by the model, not copied from the story
    assert summarizer.summarize(requests) == summaries  # beam search is deterministic


def test_greedy_decoding_is_deterministic_too(tiny_model: Path, offline: None) -> None:
    summarizer = _load(tiny_model, num_beams=1)
    request = [SummaryRequest(title="Trams", text=ARTICLE)]
    assert summarizer.summarize(request) == summarizer.summarize(request)
    assert summarizer.summarize(request)[0]


def test_a_relative_model_folder_is_found_next_to_the_settings_file(
    tiny_model: Path, offline: None
) -> None:
    config = write_settings(
        tiny_model.parent,
        [{"url": "https://example.org/rss"}],
        sections={"summarize": {"summarizer": "abstractive", "model": tiny_model.name}},
    )
    settings = load_settings(config).summarize
    assert settings.model == str(tiny_model)
    assert isinstance(load_abstractive(settings), AbstractiveSummarizer)


def test_a_hub_id_is_kept_as_a_hub_id(tmp_path: Path) -> None:
    config = write_settings(
        tmp_path,
        [{"url": "https://example.org/rss"}],
        sections={"summarize": {"model": "google/pegasus-xsum"}},
    )
    assert load_settings(config).summarize.model == "google/pegasus-xsum"


def test_long_text_is_cut_into_token_bounded_chunks(tiny_model: Path, offline: None) -> None:
    summarizer = _load(tiny_model, max_input_tokens=96)
    long_text = " ".join([ARTICLE] * 4) + " " + "and the line runs on " * 40 + "to the end."
    chunks = summarizer.chunk(long_text)
    limit = 96 - summarizer._tokenizer.num_special_tokens_to_add()
    assert len(chunks) > 4
    for chunk in chunks:
        assert len(summarizer._tokenizer(chunk, add_special_tokens=False)["input_ids"]) <= limit
    assert " ".join(chunks).split() == long_text.split()  # nothing lost, nothing reordered
    assert set(split_sentences(ARTICLE)) <= {s for c in chunks for s in split_sentences(c)}


def test_chunk_summaries_still_too_long_are_summarised_again(
    tiny_model: Path, offline: None
) -> None:
    summarizer = _load(
        tiny_model, words=10, max_input_tokens=96, min_new_tokens=24, max_new_tokens=24
    )
    long_text = " ".join([ARTICLE] * 4)
    first_round = " ".join(summarizer.generate(summarizer.chunk(long_text)[:MAX_CHUNKS]))
    assert word_count(first_round) > 10  # so the joined chunk summaries need another round
    (summary,) = summarizer.summarize([SummaryRequest(title="Long", text=long_text)])
    assert summary and word_count(summary) <= 10
    assert summary != fit_words(first_round, 10)


def test_input_is_truncated_to_the_models_limit(tiny_model: Path, offline: None) -> None:
    summarizer = _load(tiny_model)
    assert summarizer.max_input_tokens == 512  # T5 states no limit of its own
    assert _load(tiny_model, max_input_tokens=64).max_input_tokens == 64


def test_a_short_text_is_shown_as_is(tiny_model: Path, offline: None) -> None:
    summarizer = _load(tiny_model, words=20)
    short = "The council  approved a new\nbus depot."
    assert summarizer.summarize([SummaryRequest(title="t", text=short)]) == [
        "The council approved a new bus depot."
    ]


def test_model_id_names_the_model_and_every_setting_that_changes_output(
    tiny_model: Path, offline: None
) -> None:
    model_id = _load(tiny_model, num_beams=3, max_new_tokens=30, length_penalty=1.5).model_id
    assert model_id.startswith("abstractive/tiny-t5@")
    for part in ("num_beams=3", "max_new_tokens=30", "length_penalty=1.5", "words=20"):
        assert part in model_id
    assert "no_repeat_ngram_size=3" in model_id and "max_input=512" in model_id
    assert _load(tiny_model, num_beams=3, max_new_tokens=30, length_penalty=1.5).model_id == (
        model_id
    )
    assert _load(tiny_model, num_beams=2, max_new_tokens=30, length_penalty=1.5).model_id != (
        model_id
    )
    assert "min_new_tokens=10" in _load(tiny_model, min_new_tokens=None).model_id  # words // 2


def test_a_model_not_in_the_cache_is_an_error_that_says_how_to_get_it(offline: None) -> None:
    missing = "digest-tests/no-such-model-anywhere"
    offline_before = huggingface_hub.constants.HF_HUB_OFFLINE
    with pytest.raises(SummarizerError) as caught:
        load_abstractive(_settings(missing))
    assert offline_before == huggingface_hub.constants.HF_HUB_OFFLINE  # switched back after
    message = str(caught.value)
    assert missing in message
    assert f"hf download {missing}" in message
    assert "not found, complete, in the local Hugging Face cache" in message
    assert "allow_download = true" in message and "fallback" in message


def test_a_missing_model_folder_is_an_error_naming_the_folder(tmp_path: Path) -> None:
    with pytest.raises(SummarizerError, match="no such folder") as caught:
        load_abstractive(_settings(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in str(caught.value)


def test_fallback_to_extractive_is_logged(offline: None, caplog: pytest.LogCaptureFixture) -> None:
    missing = "digest-tests/no-such-model-anywhere"
    with caplog.at_level(logging.WARNING, logger="digest.abstractive"):
        summarizer = load_abstractive(_settings(missing, fallback="extractive"))
    assert isinstance(summarizer, ExtractiveSummarizer)
    (record,) = [r for r in caplog.records if r.name == "digest.abstractive"]
    assert missing in record.getMessage() and "extractive" in record.getMessage()


def _check(folder: Path, model: Path | str, **summarize: Any) -> list[str]:
    config = write_settings(
        folder,
        [{"url": "https://example.org/rss"}],
        sections={"summarize": {"summarizer": "abstractive", "model": str(model), **summarize}},
    )
    return check_settings(load_settings(config))


def test_check_finds_a_saved_model_folder_without_loading_it(
    tiny_model: Path, tmp_path: Path, offline: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert _check(tmp_path, tiny_model) == []
    # The test settings' example.org sender is warned about; nothing about the model is.
    assert not [r for r in caplog.records if "model" in r.getMessage()]


@pytest.mark.parametrize("where", ["hub id", "folder", "folder without weights"])
def test_check_names_a_missing_model_and_how_to_get_it(
    tiny_model: Path, tmp_path: Path, offline: None, where: str
) -> None:
    if where == "hub id":
        model: Path | str = "digest-tests/no-such-model-anywhere"
    elif where == "folder":
        model = tmp_path / "nowhere"
    else:
        model = tmp_path / "no-weights"
        model.mkdir()
        for file in tiny_model.iterdir():
            if not file.name.endswith((".safetensors", ".bin")):
                (model / file.name).write_bytes(file.read_bytes())
    (problem,) = _check(tmp_path, model)
    assert problem.startswith(f"[summarize].model = {str(model)!r}: ")
    assert "not available" in problem and "hint:" in problem
    assert 'fallback = "extractive"' in problem
    if where == "hub id":
        assert f"hf download {model}" in problem
    else:
        assert f"put a saved seq2seq model (config.json, weights, tokenizer) in {model}" in problem
    assert ("weights are not" in problem) == (where == "folder without weights")


def test_check_only_warns_when_a_run_would_fall_back_or_download(
    tmp_path: Path, offline: None, caplog: pytest.LogCaptureFixture
) -> None:
    missing = "digest-tests/no-such-model-anywhere"
    with caplog.at_level(logging.WARNING, logger="digest.checking"):
        assert _check(tmp_path, missing, fallback="extractive") == []
        assert _check(tmp_path, missing, allow_download=True) == []
    fallback, download = (m for r in caplog.records if "[summarize]" in (m := r.getMessage()))
    assert missing in fallback and "use the extractive summarizer instead" in fallback
    assert missing in download and "first run will download it" in download


def test_check_refuses_a_model_that_is_not_seq2seq(tmp_path: Path, offline: None) -> None:
    from transformers import BertConfig, ByT5Tokenizer

    folder = tmp_path / "encoder-only"
    config = BertConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=1)
    config.save_pretrained(folder)
    ByT5Tokenizer().save_pretrained(folder)
    (problem,) = _check(tmp_path, folder)
    assert "a bert model is not a seq2seq model" in problem


def test_output_markup_and_special_tokens_are_removed() -> None:
    raw = "<pad> The mayor said<n>the plan &amp; cost\x18 rose.</s> <extra_id_0>"
    assert clean_output(raw) == "The mayor said the plan & cost rose."


def test_a_summary_is_kept_to_whole_sentences_within_the_budget() -> None:
    text = "One two three. Four five six seven. Eight."
    assert fit_words(text, 5) == "One two three."
    assert fit_words("One two three four five six", 4) == "One two three four…"
    assert fit_words(text, 8) == text


def test_min_new_tokens_above_max_new_tokens_is_refused() -> None:
    with pytest.raises(ValueError, match="min_new_tokens"):
        SummarizeSettings(min_new_tokens=50, max_new_tokens=20)


def _cache_model(cache: Path, repo_id: str, folder: Path, *, weights: bool = True) -> None:
    """Lay a saved model out as huggingface_hub's cache does (refs/main -> a snapshot)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    for file in folder.iterdir():
        if weights or not file.name.endswith((".safetensors", ".bin")):
            (snapshot / file.name).write_bytes(file.read_bytes())


def test_check_finds_a_hub_model_in_the_local_cache_by_its_files(
    tiny_model: Path, tmp_path: Path, offline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    _cache_model(cache, "digest-tests/tiny-t5", tiny_model)
    _cache_model(cache, "digest-tests/no-weights", tiny_model, weights=False)
    assert _check(tmp_path, "digest-tests/tiny-t5") == []
    (problem,) = _check(tmp_path, "digest-tests/no-weights")
    assert "its config and tokenizer are here, its weights are not" in problem
    (problem,) = _check(tmp_path, "digest-tests/elsewhere")
    assert f"not found, complete, in the local Hugging Face cache {cache}" in problem
