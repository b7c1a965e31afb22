"""The llm summarizer against a real OpenAI-compatible chat-completions server on 127.0.0.1:
what it sends, how it retries and falls back, what it caches, and how ``digest check`` and
``digest preview`` use it."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.config import SummarizeSettings, load_settings
from digest.editions import CachedSummarizer
from digest.errors import ConfigError, SummarizerError
from digest.llm import LlmSummarizer, clean_answer, llm_model_id
from digest.plugins import make_plugin_manager, summarizer_factories
from digest.settings_summarize import DEFAULT_PROMPT
from digest.sqlite_store import SQLiteStore
from digest.summarize import LeadSummarizer, SummaryRequest
from tests.conftest import REPO, FeedServer, free_port, serving, write_settings

ANSWER = "The council voted to close the bridge. Repairs start in May."


@dataclass
class Reply:
    status: int = 200
    body: bytes | None = None  # None: a chat completion whose content is ``content``
    content: str = ANSWER
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class ChatServer:
    """An OpenAI-compatible server: ``POST /v1/chat/completions`` answers the first queued
    reply whose key occurs in the prompt (else ``Reply()``); ``GET /v1/models`` lists
    ``models``. It records each request's body and headers, and the most requests it had in
    flight at once."""

    base_url: str = ""
    replies: dict[str, deque[Reply]] = field(default_factory=dict)
    models: tuple[str, ...] = ("llama3.2:latest", "qwen2.5:7b")
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def queue(self, key: str, *replies: Reply) -> None:
        self.replies.setdefault(key, deque()).extend(replies)

    def prompts(self) -> list[str]:
        return [body["messages"][0]["content"] for body in self.bodies]

    def next_reply(self, prompt: str) -> Reply:
        with self.lock:
            for key, queued in self.replies.items():
                if key in prompt and queued:
                    return queued.popleft()
        return Reply()


def _handler(server: ChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path != "/v1/models":
                return self._send(404, {}, b'{"error": {"message": "not found"}}')
            data = [{"id": name, "object": "model"} for name in server.models]
            self._send(200, {}, json.dumps({"object": "list", "data": data}).encode())

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with server.lock:
                server.bodies.append(body)
                server.headers.append(dict(self.headers))
                server.times.append(time.monotonic())
                server.in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server.in_flight)
            try:
                reply = server.next_reply(body["messages"][0]["content"])
                time.sleep(reply.delay)
                self._send(reply.status, reply.headers, _body(reply, body["model"]))
            finally:
                with server.lock:
                    server.in_flight -= 1

        def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up first, as the timeout test intends

    return Handler


def _body(reply: Reply, model: str) -> bytes:
    if reply.body is not None:
        return reply.body
    message = {"role": "assistant", "content": reply.content}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    completion = {"id": "chatcmpl-1", "object": "chat.completion", "model": model}
    return json.dumps({**completion, "choices": [choice]}).encode()


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    state = ChatServer()
    with serving(_handler(state)) as base_url:
        state.base_url = f"{base_url}/v1"
        yield state


def _settings(base_url: str, **keys: Any) -> SummarizeSettings:
    values = {
        "summarizer": "llm",
        "base_url": base_url,
        "model": "llama3.2",
        "words": 20,
        "retry_backoff_seconds": 0.0,
        "fallback": "extractive",
        **keys,
    }
    return SummarizeSettings.model_validate(values)


def _llm(settings: SummarizeSettings, api_key: str | None = None) -> LlmSummarizer:
    # lead stands in for extractive here: the same fallback path, without loading MiniLM
    fallback = LeadSummarizer(settings.words) if settings.fallback == "extractive" else None
    return LlmSummarizer(settings, api_key=api_key, fallback=fallback)


STORY = SummaryRequest(
    title="Bridge to close",
    text="The city council voted on Monday to close the old bridge. It is unsafe. " * 3,
    language="en",
)
LEAD = "The city council voted on Monday to close the old bridge. It is unsafe."


def test_a_story_is_one_non_streaming_chat_completion_with_the_model_and_prompt(
    chat_server: ChatServer,
) -> None:
    summarizer = _llm(_settings(chat_server.base_url))
    assert summarizer.summarize_attributed([STORY]) == [(ANSWER, summarizer.model_id)]
    (body,) = chat_server.bodies
    assert body["stream"] is False
    assert body["model"] == "llama3.2"
    assert body["messages"] == [{"role": "user", "content": chat_server.prompts()[0]}]
    prompt = chat_server.prompts()[0]
    assert "Title: Bridge to close" in prompt and STORY.text.strip() in prompt
    assert "at most 20 words" in prompt and "Write in English." in prompt
    assert "Authorization" not in chat_server.headers[0]  # a local server needs no key


def test_a_429_is_retried_after_its_retry_after_seconds(chat_server: ChatServer) -> None:
    chat_server.queue("Bridge", Reply(status=429, headers={"Retry-After": "1"}))
    summarizer = _llm(_settings(chat_server.base_url, retries=2))
    assert summarizer.summarize([STORY]) == [ANSWER]
    first, second = chat_server.times
    assert second - first >= 0.95  # the backoff alone (0 s) would not wait


def test_a_500_is_retried_with_backoff(chat_server: ChatServer) -> None:
    chat_server.queue("Bridge", Reply(status=500, body=b"upstream busy"))
    summarizer = _llm(_settings(chat_server.base_url, retries=1, retry_backoff_seconds=0.3))
    assert summarizer.summarize_attributed([STORY]) == [(ANSWER, summarizer.model_id)]
    first, second = chat_server.times
    assert second - first >= 0.25


def test_a_story_failing_every_retry_falls_back_with_a_warning_naming_it(
    chat_server: ChatServer, caplog: pytest.LogCaptureFixture
) -> None:
    chat_server.queue("Bridge", *[Reply(status=500, body=b'{"error": {"message": "OOM"}}')] * 3)
    other = SummaryRequest(title="Other story", text="The ferry will not run on Sunday. " * 30)
    summarizer = _llm(_settings(chat_server.base_url, retries=2))
    with caplog.at_level(logging.WARNING, logger="digest.llm"):
        results = summarizer.summarize_attributed([STORY, other])
    assert results == [(LEAD, LeadSummarizer(20).model_id), (ANSWER, summarizer.model_id)]
    assert sum("Bridge to close" in p for p in chat_server.prompts()) == 3  # 1 + 2 retries
    (warning,) = caplog.messages
    assert "'Bridge to close'" in warning
    assert f"{chat_server.base_url}/chat/completions" in warning
    assert "(HTTP 500: OOM; 3 attempts)" in warning


def test_a_timeout_falls_back_without_a_retry(
    chat_server: ChatServer, caplog: pytest.LogCaptureFixture
) -> None:
    chat_server.queue("Bridge", Reply(delay=2.0))
    summarizer = _llm(_settings(chat_server.base_url, timeout_seconds=0.3, retries=3))
    started = time.monotonic()
    assert summarizer.summarize([STORY]) == [LEAD]
    assert time.monotonic() - started < 1.5
    assert len(chat_server.bodies) == 1
    assert "no answer within 0.3 s" in caplog.text


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>Bad Gateway</html>", "the answer is not JSON"),
        (b'{"object": "chat.completion"}', "the answer has no choices"),
        (b'{"choices": []}', "the answer has no choices"),
        (b'{"choices": [{"message": {"role": "assistant", "content": "  "}}]}', "no content"),
        (b'{"choices": [{"message": {"role": "assistant", "content": null}}]}', "no content"),
    ],
)
def test_a_malformed_answer_falls_back(
    chat_server: ChatServer, caplog: pytest.LogCaptureFixture, body: bytes, reason: str
) -> None:
    chat_server.queue("Bridge", Reply(body=body))
    assert _llm(_settings(chat_server.base_url)).summarize([STORY]) == [LEAD]
    assert len(chat_server.bodies) == 1  # not retried: it would answer the same
    assert reason in caplog.text


def test_a_4xx_is_not_retried(chat_server: ChatServer, caplog: pytest.LogCaptureFixture) -> None:
    refusal = b'{"error": {"message": "model \\"llama3.2\\" not found, try pulling it first"}}'
    chat_server.queue("Bridge", Reply(status=404, body=refusal))
    assert _llm(_settings(chat_server.base_url)).summarize([STORY]) == [LEAD]
    assert len(chat_server.bodies) == 1
    assert 'HTTP 404: model "llama3.2" not found, try pulling it first' in caplog.text


def test_a_refused_connection_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    assert _llm(_settings(base_url, retries=1)).summarize([STORY]) == [LEAD]
    assert "cannot connect" in caplog.text and base_url in caplog.text


def test_with_fallback_error_a_failed_story_is_a_summarizer_error(chat_server: ChatServer) -> None:
    chat_server.queue("Bridge", Reply(status=400, body=b'{"error": {"message": "bad"}}'))
    summarizer = _llm(_settings(chat_server.base_url, fallback="error"))
    with pytest.raises(SummarizerError) as caught:
        summarizer.summarize([STORY, SummaryRequest(title="Fine", text="Fine text.")])
    message = str(caught.value)
    assert f"{chat_server.base_url}/chat/completions" in message
    assert "'Bridge to close': HTTP 400: bad" in message and "fallback" in message


def test_requests_in_flight_never_exceed_the_concurrency(chat_server: ChatServer) -> None:
    chat_server.queue("Story", *[Reply(delay=0.5)] * 8)
    stories = [SummaryRequest(title=f"Story {n}", text=f"Text {n}.") for n in range(8)]
    summarizer = _llm(_settings(chat_server.base_url, concurrency=3))
    assert summarizer.summarize(stories) == [ANSWER] * 8
    assert chat_server.max_in_flight == 3


def test_the_api_key_comes_from_the_environment(
    chat_server: ChatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_LLM_API_KEY", "sk-test-123")
    factory = summarizer_factories(make_plugin_manager(load_entry_points=False))["llm"]
    summarizer = factory(_settings(chat_server.base_url))
    assert summarizer.summarize([STORY]) == [ANSWER]
    assert chat_server.headers[0]["Authorization"] == "Bearer sk-test-123"


def test_summaries_are_cached_but_a_fallback_is_asked_again(
    chat_server: ChatServer, tmp_path: Path
) -> None:
    other = SummaryRequest(title="Other story", text="The ferry will not run on Sunday. " * 30)
    chat_server.queue("Other story", Reply(status=503))
    settings = _settings(chat_server.base_url, retries=0)
    now = datetime(2024, 3, 1, tzinfo=UTC)
    with SQLiteStore.open(tmp_path / "digest.db") as store:
        cached = CachedSummarizer(_llm(settings), store, lambda: now)
        first = cached.summarize([STORY, other])
        assert first == [ANSWER, "The ferry will not run on Sunday."]  # lead's, as the fallback
        second = cached.summarize([STORY, other])
        assert second == [ANSWER, ANSWER]  # the endpoint answers the fallen-back story now
        assert sum("Bridge to close" in p for p in chat_server.prompts()) == 1
        assert sum("Other story" in p for p in chat_server.prompts()) == 2
        cached.summarize([STORY, other])
        assert len(chat_server.bodies) == 3  # both cached under the llm's model_id
        changed = _settings(chat_server.base_url, prompt="Shorter: {text}")
        CachedSummarizer(_llm(changed), store, lambda: now).summarize([STORY])
        assert len(chat_server.bodies) == 4  # a changed prompt summarises again


def test_the_model_id_names_endpoint_model_prompt_and_budget() -> None:
    settings = _settings("http://127.0.0.1:11434/v1")
    model_id = llm_model_id(settings)
    assert model_id.startswith("llm/http://127.0.0.1:11434/v1/llama3.2/prompt=sha256:")
    assert model_id.endswith("/words=20")
    variants = [
        _settings("http://127.0.0.1:8080/v1"),
        _settings("http://127.0.0.1:11434/v1", model="qwen2.5:7b"),
        _settings("http://127.0.0.1:11434/v1", prompt="Other {text}"),
        _settings("http://127.0.0.1:11434/v1", words=30),
    ]
    assert len({model_id, *(llm_model_id(v) for v in variants)}) == 5


def test_a_prompt_override_is_filled_in(chat_server: ChatServer) -> None:
    prompt = "In {language}, at most {words} words, no {{markdown}}.\n{title}\n---\n{text}"
    summarizer = _llm(_settings(chat_server.base_url, prompt=prompt))
    german = SummaryRequest(title="Brücke", text="Der Rat stimmte zu.", language="de")
    unknown = SummaryRequest(title="Untitled", text="Some text.")
    summarizer.summarize([german, unknown])
    assert sorted(chat_server.prompts()) == [
        "In German, at most 20 words, no {markdown}.\nBrücke\n---\nDer Rat stimmte zu.",
        "In the language the story is written in, at most 20 words, no {markdown}.\n"
        "Untitled\n---\nSome text.",
    ]


def test_a_long_answer_is_cut_at_a_sentence_end(chat_server: ChatServer) -> None:
    sentences = [f"Sentence {n} has exactly seven words here." for n in range(1, 6)]
    chat_server.queue("Bridge", Reply(content=" ".join(sentences)))
    (summary,) = _llm(_settings(chat_server.base_url, words=20)).summarize([STORY])
    assert summary == " ".join(sentences[:2])


def test_a_chinese_answer_is_cut_at_a_sentence_end_within_the_character_budget(
    chat_server: ChatServer,
) -> None:
    # 20 words are 40 characters in Chinese: the first two sentences (17 + 17) fit, not a third.
    sentences = ["市议会周一投票决定关闭这座老桥梁。", "工程师认为这座桥已经不再安全了。"]
    answer = "".join([*sentences, "维修工作预计将持续到明年夏天才能完成。"])
    chat_server.queue("大桥", Reply(content=answer))
    story = SummaryRequest(title="大桥将关闭", text="市议会投票决定关闭老桥。" * 400, language="zh")
    (summary,) = _llm(_settings(chat_server.base_url, words=20)).summarize([story])
    assert summary == "".join(sentences)
    assert len(chat_server.prompts()[0]) < 4000  # the story's text is capped in characters too


def test_an_answer_cut_by_the_token_limit_loses_its_unfinished_sentence(
    chat_server: ChatServer,
) -> None:
    chat_server.queue("Bridge", Reply(content="The bridge closes. Repairs will take until the"))
    (summary,) = _llm(_settings(chat_server.base_url)).summarize([STORY])
    assert summary == "The bridge closes."


def test_the_answer_is_cleaned_of_markdown_preambles_and_reasoning() -> None:
    answer = (
        "<think>The user wants a summary.</think>\n## Summary\n"
        "Here is a summary of the story:\n\n"
        "- **The council** voted to close the bridge.\n* Repairs start in `May`.\n"
    )
    assert clean_answer(answer) == "The council voted to close the bridge.\nRepairs start in May."
    assert clean_answer("Summary: The bridge closes.") == "The bridge closes."
    sure = "Sure! Here is a 20-word summary of the story:\nThe bridge closes."
    assert clean_answer(sure) == "The bridge closes."


def test_a_first_sentence_over_the_budget_is_kept_whole_up_to_twice_it(
    chat_server: ChatServer, caplog: pytest.LogCaptureFixture
) -> None:
    long = " ".join(["word"] * 30) + "."
    chat_server.queue("Bridge", Reply(content=f"{long} Second sentence."))
    chat_server.queue("Bridge", Reply(content=" ".join(["word"] * 41) + "."))
    summarizer = _llm(_settings(chat_server.base_url, words=20))
    assert summarizer.summarize([STORY]) == [long]
    assert summarizer.summarize([STORY]) == [LEAD]
    assert "first sentence has 41 words, over twice the budget of 20" in caplog.text


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"model": "llama3.2"}, '[summarize]: base_url is required when summarizer = "llm"'),
        ({"base_url": "http://127.0.0.1:11434/v1"}, "model is required when summarizer"),
        (
            {"base_url": "localhost:11434", "model": "m"},
            "[summarize].base_url = 'localhost:11434': must be an http",
        ),
        (
            {"base_url": "http://h/v1", "model": "m", "prompt": "{title} {story}"},
            "[summarize].prompt = '{title} {story}': uses {story}; a prompt may use {title}, {text}",
        ),
        ({"base_url": "http://h/v1", "model": "m", "prompt": "{title}"}, "never uses {text}"),
        ({"base_url": "http://h/v1", "model": "m", "prompt": "{text"}, "not a valid template"),
    ],
)
def test_llm_settings_errors_name_the_key(
    tmp_path: Path, keys: dict[str, str], message: str
) -> None:
    config = write_settings(
        tmp_path,
        [{"url": "https://example.org/feed"}],
        sections={"summarize": {"summarizer": "llm", **keys}},
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert message in str(caught.value)


def test_an_llm_model_name_is_not_taken_for_a_folder(tmp_path: Path) -> None:
    (tmp_path / "org" / "a").mkdir(parents=True)
    summarize = {"summarizer": "llm", "base_url": "http://h/v1/", "model": "org/a"}
    config = write_settings(
        tmp_path, [{"url": "https://e.org/f"}], sections={"summarize": summarize}
    )
    settings = load_settings(config).summarize
    assert (settings.model, settings.base_url) == ("org/a", "http://h/v1")


def test_the_readme_shows_the_default_prompt() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"```text\n{DEFAULT_PROMPT}\n```" in readme


def _check(tmp_path: Path, base_url: str, **summarize: Any) -> Any:
    keys = {"summarizer": "llm", "base_url": base_url, "model": "llama3.2", **summarize}
    feeds = [{"url": str(REPO / "tests" / "fixtures" / "feeds" / "nasa.xml")}]
    config = write_settings(tmp_path, feeds, sections={"summarize": keys})
    return CliRunner().invoke(cli, ["--config", str(config), "check"])


def test_check_asks_the_endpoint_whether_it_serves_the_model(
    tmp_path: Path, chat_server: ChatServer
) -> None:
    served = _check(tmp_path, chat_server.base_url)
    assert served.exit_code == 0, served.output
    missing = _check(tmp_path, chat_server.base_url, model="mistral")
    assert missing.exit_code == 1
    assert (
        f"[summarize].model = 'mistral' is not among the models {chat_server.base_url}/models "
        "lists: llama3.2:latest, qwen2.5:7b"
    ) in missing.output
    down = f"http://127.0.0.1:{free_port()}/v1"
    unreachable = _check(tmp_path, down)
    assert unreachable.exit_code == 1
    assert f"cannot list the models at {down}/models" in unreachable.output
    assert "is the server running?" in unreachable.output
    tolerated = _check(tmp_path, down, fallback="extractive")
    assert tolerated.exit_code == 0, tolerated.output


def test_preview_summarises_each_story_with_the_llm(
    tmp_path: Path, feed_server: FeedServer, chat_server: ChatServer
) -> None:
    feeds = [{"url": feed_server.url("feeds/nasa.xml"), "category": "Space"}]
    summarize = {"summarizer": "llm", "base_url": chat_server.base_url, "model": "llama3.2"}
    config = write_settings(tmp_path, feeds, sections={"summarize": summarize})
    result = CliRunner().invoke(cli, ["--config", str(config), "preview", "--text"])
    assert result.exit_code == 0, result.output
    assert "NASA Television to Broadcast" in result.output
    assert ANSWER in result.output
    assert chat_server.bodies and all(body["stream"] is False for body in chat_server.bodies)
    assert any("NASA Television to Broadcast" in prompt for prompt in chat_server.prompts())
    assert all("Write in English." in prompt for prompt in chat_server.prompts())


def test_the_batch_command_passes_each_line_s_language_to_the_prompt(
    tmp_path: Path, chat_server: ChatServer
) -> None:
    summarize = {"summarizer": "llm", "base_url": chat_server.base_url, "model": "llama3.2"}
    config = write_settings(
        tmp_path, [{"url": "https://e.org/f"}], sections={"summarize": summarize}
    )
    lines = [
        {"id": 1, "title": "Brücke gesperrt", "text": "Der Rat stimmte zu.", "language": "de-DE"},
        {
            "id": 2,
            "title": "Pont fermé",
            "text": "Le conseil municipal a voté lundi la fermeture "
            "du vieux pont, jugé dangereux par les ingénieurs de la ville.",
        },
    ]
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    args = ["--config", str(config), "summarize", "--input", str(source), "--output", str(target)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["summary"] for line in target.read_text().splitlines()] == [ANSWER] * 2
    german, french = sorted(chat_server.prompts(), key=lambda p: "Pont" in p)
    assert "Write in German." in german and "Write in French." in french  # declared, detected
