"""Summarize, llm: story text -> a summary written by a language model behind any
OpenAI-compatible chat-completions endpoint (Ollama, llama.cpp's server, vLLM, LM Studio, or a
hosted API). HTTP I/O with aiohttp; the prompt, the cleaning and the cut are pure.

Each story is one ``POST {base_url}/chat/completions`` with ``stream: false``, at most
``concurrency`` at once, within ``timeout_seconds``. A 429, a 5xx or a broken connection is
retried (``retries`` times, after the server's Retry-After or an exponential backoff); a
timeout, another 4xx or a malformed answer is not. The answer's ``choices[0].message.content``
is cleaned of markdown, preambles and reasoning blocks, then cut to the word budget at a
sentence end. A story whose request fails gets the ``fallback`` summarizer's summary (with a
logged warning naming the story, the endpoint and the reason), or, with ``fallback = "error"``,
a ``SummarizerError``. The API key comes only from ``$DIGEST_LLM_API_KEY``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import aiohttp
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from digest.errors import SummarizerError
from digest.sentences import (
    budget_length,
    is_measured_in_characters,
    join_sentences,
    split_sentences,
    text_length,
)
from digest.summarize import Summarizer, SummaryRequest

if TYPE_CHECKING:
    from digest.config import SummarizeSettings

logger = logging.getLogger(__name__)

NAME = "llm"
API_KEY_ENV_VAR = "DIGEST_LLM_API_KEY"
# The story text the prompt carries at most: local servers' default context (Ollama: 2,048
# or 4,096 tokens) silently drops the start of a longer prompt, instructions included.
MAX_INPUT_WORDS = 1500
MAX_RETRY_AFTER_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 60.0

_THINKING = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL | re.IGNORECASE)
_HEADING = re.compile(r"^\s*#{1,6}\s")
_BULLET = re.compile(r"^\s*(?:[-*+\u2022]|\d{1,2}[.)])\s+")
_PREAMBLE = re.compile(
    r"^\s*(?:(?:sure|certainly|okay|ok)\b[,.!]?\s*)?"
    r"(?:(?:here(?:'s|\u2019s| is)|below is)\b[^:\n]{0,80}|summary|tl;?dr)\s*:\s*",
    re.I,
)
_EMPHASIS = re.compile(r"\*\*|__|`")
_SENTENCE_END = re.compile("[.!?\u2026\u3002\uff01\uff1f][\"'\u201d\u2019)\\]]*$")


def read_api_key() -> str | None:
    """The endpoint's API key, from the environment only (none for a local server)."""
    return os.environ.get(API_KEY_ENV_VAR) or None


class EndpointError(Exception):
    """One story's request failed: ``reason`` says how, for the warning or the error."""

    def __init__(
        self, reason: str, *, is_retryable: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.is_retryable = is_retryable
        self.retry_after = retry_after


class LlmSummarizer:
    """Asks an OpenAI-compatible endpoint for each story's summary; a failed story gets the
    ``fallback`` summarizer's (None: a SummarizerError)."""

    def __init__(
        self, settings: SummarizeSettings, *, api_key: str | None, fallback: Summarizer | None
    ) -> None:
        if settings.base_url is None:
            raise SummarizerError(
                '[summarize].base_url is required when summarizer = "llm"',
                hint="set base_url (and model) in the settings file's [summarize] table, like "
                'base_url = "http://127.0.0.1:11434/v1"',
            )
        self.endpoint = f"{settings.base_url}/chat/completions"
        self.model = settings.model
        self.words = settings.words
        self.template = settings.prompt_template
        self.timeout = settings.timeout_seconds
        self.concurrency = settings.concurrency
        self.retries = settings.retries
        self.backoff = settings.retry_backoff_seconds
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.fallback = fallback
        self.model_id = llm_model_id(settings)

    def summarize(self, requests: Sequence[SummaryRequest]) -> list[str]:
        return [text for text, _ in self.summarize_attributed(requests)]

    def summarize_attributed(self, requests: Sequence[SummaryRequest]) -> list[tuple[str, str]]:
        """Each summary with the model_id of what wrote it: this one's, or the fallback's."""
        outcomes = asyncio.run(self._ask_all(requests))
        failed = {i: o for i, o in enumerate(outcomes) if isinstance(o, EndpointError)}
        stand_ins = iter(self._stand_ins([requests[i] for i in failed], list(failed.values())))
        fallback_id = self.fallback.model_id if self.fallback else ""
        return [
            (next(stand_ins), fallback_id) if isinstance(o, EndpointError) else (o, self.model_id)
            for o in outcomes
        ]

    def _stand_ins(
        self, requests: Sequence[SummaryRequest], errors: Sequence[EndpointError]
    ) -> list[str]:
        if not requests:
            return []
        if self.fallback is None:
            raise SummarizerError(
                f"{self.endpoint} could not summarise {len(requests)} of the stories; the "
                f"first, {requests[0].title!r}: {errors[0].reason}",
                hint="is the server running, and does it know the model? `digest check` asks it; "
                '[summarize].fallback = "extractive" summarises such stories without it',
            )
        for request, error in zip(requests, errors, strict=True):
            logger.warning(
                "summary of %r: %s failed (%s); using the %s summarizer instead",
                request.title,
                self.endpoint,
                error.reason,
                self.fallback.model_id.split("/")[0],
            )
        return self.fallback.summarize(requests)

    async def _ask_all(self, requests: Sequence[SummaryRequest]) -> list[str | EndpointError]:
        slots = asyncio.Semaphore(self.concurrency)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(headers=self.headers, timeout=timeout) as session:
            return await asyncio.gather(*(self._ask(session, slots, r) for r in requests))

    async def _ask(
        self, session: aiohttp.ClientSession, slots: asyncio.Semaphore, request: SummaryRequest
    ) -> str | EndpointError:
        """The story's summary, or why there is none (after the retries)."""
        body = request_body(self.model, render_prompt(self.template, request, self.words))
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, EndpointError) and e.is_retryable),
            stop=stop_after_attempt(self.retries + 1),
            wait=self._wait,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    async with slots:  # not held while waiting to retry
                        content = await self._post(session, body)
            return fit_answer(content, self.words, request.language)
        except EndpointError as error:
            if error.is_retryable and self.retries:
                return EndpointError(f"{error.reason}; {self.retries + 1} attempts")
            return error

    async def _post(self, session: aiohttp.ClientSession, body: Mapping[str, Any]) -> str:
        try:
            async with session.post(self.endpoint, json=body) as response:
                raw = await response.read()
                return answer_content(response.status, response.headers.get("Retry-After"), raw)
        except TimeoutError:
            raise EndpointError(f"no answer within {self.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            reason = f"cannot connect: {exc}" if str(exc) else type(exc).__name__
            raise EndpointError(reason, is_retryable=True) from None

    def _wait(self, state: RetryCallState) -> float:
        """The server's Retry-After (capped) if it sent one, else exponential backoff."""
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, EndpointError) and error.retry_after is not None:
            return min(error.retry_after, MAX_RETRY_AFTER_SECONDS)
        return float(wait_exponential(multiplier=self.backoff, max=MAX_BACKOFF_SECONDS)(state))


def llm_model_id(settings: SummarizeSettings) -> str:
    """What an llm summary depends on besides the story: endpoint, model, prompt and budget."""
    prompt = hashlib.sha256(settings.prompt_template.encode()).hexdigest()[:16]
    return f"llm/{settings.base_url}/{settings.model}/prompt=sha256:{prompt}/words={settings.words}"


def request_body(model: str, prompt: str) -> dict[str, Any]:
    """The chat-completions request: one user message, the whole answer at once."""
    return {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": False}


def render_prompt(template: str, request: SummaryRequest, words: int) -> str:
    """The prompt for one story: the template with its title, text (the first
    ``MAX_INPUT_WORDS`` words), word budget and language name filled in."""
    return template.format(
        title=request.title,
        text=_first_words(request.text, MAX_INPUT_WORDS, request.language),
        words=words,
        language=language_name(request.language),
    )


def language_name(code: str | None) -> str:
    """A language's English name ("de" -> "German"), from Babel's CLDR data; for an unknown
    code, words that still tell the model what to do."""
    from babel import Locale, UnknownLocaleError

    try:
        return str(Locale.parse(code).english_name) if code else _SAME_LANGUAGE
    except (UnknownLocaleError, ValueError, TypeError):
        return _SAME_LANGUAGE


_SAME_LANGUAGE = "the language the story is written in"


def _first_words(text: str, limit: int, language: str | None) -> str:
    if is_measured_in_characters(language):
        return text[: budget_length(limit, language)]
    words = list(re.finditer(r"\S+", text))
    return text if len(words) <= limit else text[: words[limit - 1].end()]


def answer_content(status: int, retry_after: str | None, raw: bytes) -> str:
    """``choices[0].message.content`` of a chat-completions answer, or an EndpointError
    saying what is wrong with it (retryable for 429 and 5xx)."""
    if status == 429 or status >= 500:
        raise EndpointError(
            f"HTTP {status}{_detail(raw)}", is_retryable=True, retry_after=_seconds(retry_after)
        )
    if not 200 <= status < 300:
        raise EndpointError(f"HTTP {status}{_detail(raw)}")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise EndpointError(f"the answer is not JSON: {raw[:80]!r}") from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise EndpointError("the answer has no choices")
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str) or not content.strip():
        raise EndpointError("the answer's message has no content")
    return content


def _detail(raw: bytes) -> str:
    """The server's error message (OpenAI's ``{"error": {"message": ...}}``), or its start."""
    try:
        error = json.loads(raw).get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        message = raw[:120].decode("utf-8", "replace")
    return f": {' '.join(str(message).split())[:200]}" if message else ""


def _seconds(retry_after: str | None) -> float | None:
    """Retry-After as seconds to wait: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if retry_after is None:
        return None
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(retry_after)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def fit_answer(content: str, words: int, language: str | None = None) -> str:
    """The model's answer as a summary: cleaned, then its first sentences within ``words``
    (in the language's unit: characters for Chinese, Japanese, Korean). A first sentence
    longer than that is kept whole rather than cut mid-sentence, up to twice the budget; a
    longer one makes the answer a failure (the story falls back)."""
    sentences = split_sentences(clean_answer(content), language)
    if len(sentences) > 1 and not _SENTENCE_END.search(sentences[-1]):
        sentences.pop()  # the model stopped mid-sentence (its token limit)
    if not sentences:
        raise EndpointError("the answer has no text once cleaned")
    budget = budget_length(words, language)
    unit = "characters" if is_measured_in_characters(language) else "words"
    first = text_length(sentences[0], language)
    if first > 2 * budget:
        raise EndpointError(
            f"the answer's first sentence has {first} {unit}, over twice the budget of "
            f"{budget}: it cannot be cut at a sentence end"
        )
    kept, used = [sentences[0]], first
    for sentence in sentences[1:]:
        used += text_length(sentence, language)
        if used > budget:
            break
        kept.append(sentence)
    return join_sentences(kept, language)


def clean_answer(content: str) -> str:
    """Plain text: no reasoning block, headings, bullets, emphasis or "Summary:" preamble."""
    lines = []
    for line in _THINKING.sub("", content).splitlines():
        if _HEADING.match(line):
            continue
        line = _PREAMBLE.sub("", _EMPHASIS.sub("", _BULLET.sub("", line)))
        if line.strip():
            lines.append(" ".join(line.split()))
    return "\n".join(lines)


def model_listing_problem(settings: SummarizeSettings, api_key: str | None) -> str | None:
    """Why ``GET {base_url}/models`` does not list the configured model (unreachable, refused,
    malformed, or not among them), or None when it does."""
    url = f"{settings.base_url}/models"
    try:
        listed = asyncio.run(_listed_models(url, api_key, min(settings.timeout_seconds, 10.0)))
    except EndpointError as error:
        return f"[summarize].base_url: cannot list the models at {url}: {error.reason}"
    # Ollama lists "llama3.2:latest" and answers to "llama3.2" as well.
    if settings.model in listed or f"{settings.model}:latest" in listed:
        return None
    shown = ", ".join(sorted(listed)[:10]) or "none"
    return f"[summarize].model = {settings.model!r} is not among the models {url} lists: {shown}"


async def _listed_models(url: str, api_key: str | None, timeout: float) -> set[str]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limit = aiohttp.ClientTimeout(total=timeout)
    try:
        async with (
            aiohttp.ClientSession(headers=headers, timeout=limit) as session,
            session.get(url) as response,
        ):
            status, raw = response.status, await response.read()
    except TimeoutError:
        raise EndpointError(f"no answer within {timeout:g} s") from None
    except aiohttp.ClientError as exc:
        raise EndpointError(f"{exc or type(exc).__name__} (is the server running?)") from None
    if status != 200:
        hint = f" (is ${API_KEY_ENV_VAR} set?)" if status in (401, 403) else ""
        raise EndpointError(f"HTTP {status}{_detail(raw)}{hint}")
    try:
        models = json.loads(raw)["data"]
        return {str(model["id"]) for model in models}
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise EndpointError(f"not a model list ({type(exc).__name__})") from None
