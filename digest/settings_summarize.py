"""The ``[summarize]`` table of ``settings.toml``: which summarizer, its word budget, and the
keys of the abstractive and llm summarizers (pure, but for resolving a model folder against
the settings file's folder).

The llm summarizer's prompt is a ``str.format`` template; its default, and the placeholders
it may use, live here so that loading the settings checks a user's prompt without importing
the HTTP client.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from digest.settings_base import Section, settings_source
from digest.urls import is_web_url

PROMPT_FIELDS = ("title", "text", "words", "language")
DEFAULT_PROMPT = """\
Summarise the news story below in at most {words} words of plain text. Write in {language}. \
Give only the summary: no title, no preamble such as "Here is a summary", no bullet points, \
no markdown. Use complete sentences and state only what the story says.

Title: {title}

{text}"""


class SummarizeSettings(Section):
    summarizer: str = "extractive"
    words: StrictInt = Field(default=60, ge=10, le=400)
    # abstractive: a Hugging Face model (folder or hub id); llm: the name the server knows.
    model: str = Field(default="sshleifer/distilbart-cnn-12-6", min_length=1, validate_default=True)
    allow_download: StrictBool = False
    fallback: Literal["error", "extractive"] = "error"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_beams: StrictInt = Field(default=4, ge=1, le=16)
    max_new_tokens: StrictInt | None = Field(default=None, ge=8, le=1024)
    min_new_tokens: StrictInt | None = Field(default=None, ge=0, le=1024)
    no_repeat_ngram_size: StrictInt = Field(default=3, ge=0, le=10)
    length_penalty: StrictFloat = Field(default=1.0, ge=-10, le=10)
    max_input_tokens: StrictInt | None = Field(default=None, ge=16, le=16384)
    # llm: an OpenAI-compatible chat-completions endpoint (the API key: $DIGEST_LLM_API_KEY).
    base_url: str | None = None
    prompt: str | None = Field(default=None, min_length=1)  # None: DEFAULT_PROMPT
    timeout_seconds: StrictFloat = Field(default=120.0, gt=0, le=3600)
    concurrency: StrictInt = Field(default=4, ge=1, le=16)
    retries: StrictInt = Field(default=3, ge=0, le=10)
    retry_backoff_seconds: StrictFloat = Field(default=1.0, ge=0, le=300)

    @field_validator("model")
    @classmethod
    def _folder_beside_settings(cls, value: str, info: ValidationInfo) -> str:
        source = settings_source(info)
        if source is None or info.data.get("summarizer") == "llm":  # a server's model name
            return value
        return _resolve_model(value, source.folder)

    @field_validator("base_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and not is_web_url(value):
            raise ValueError(
                "must be an http:// or https:// URL of an OpenAI-compatible API, like "
                "'http://127.0.0.1:11434/v1' (Ollama)"
            )
        return value.rstrip("/") if value is not None else None

    @field_validator("prompt")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            problem = prompt_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _min_below_max(self) -> SummarizeSettings:
        low, high = self.min_new_tokens, self.max_new_tokens
        if low is not None and high is not None and low > high:
            raise ValueError(f"min_new_tokens ({low}) is larger than max_new_tokens ({high})")
        return self

    @model_validator(mode="after")
    def _llm_endpoint_and_model(self) -> SummarizeSettings:
        if self.summarizer != "llm":
            return self
        if self.base_url is None:
            raise ValueError(
                'base_url is required when summarizer = "llm": the OpenAI-compatible API to '
                'ask, like base_url = "http://127.0.0.1:11434/v1" (Ollama)'
            )
        if "model" not in self.model_fields_set:
            raise ValueError(
                'model is required when summarizer = "llm": the model name the server knows, '
                'like model = "llama3.2:3b"'
            )
        return self

    @property
    def prompt_template(self) -> str:
        """The llm summarizer's prompt: the user's, else the documented default."""
        return self.prompt if self.prompt is not None else DEFAULT_PROMPT


def prompt_problem(template: str) -> str | None:
    """What is wrong with a prompt template (unknown or positional placeholders, unbalanced
    braces), or None."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        return f"is not a valid template ({exc}); write a literal brace as {{{{ or }}}}"
    unknown = sorted({n for n in names if n.split(".")[0].split("[")[0] not in PROMPT_FIELDS})
    if unknown:
        known = ", ".join(f"{{{name}}}" for name in PROMPT_FIELDS)
        shown = ", ".join(f"{{{name}}}" for name in unknown)
        return f"uses {shown}; a prompt may use {known} (a literal brace: {{{{ or }}}})"
    if "text" not in names:
        return "never uses {text}: the model would not see the story"
    return None


def _resolve_model(model: str, base: Path) -> str:
    """A folder (relative to the config file) as an absolute path; a hub id such as
    'org/name' as it is, unless a folder of that name exists next to the config file."""
    path = Path(model).expanduser()
    is_path = path.is_absolute() or model.startswith((".", "~")) or "\\" in model
    if is_path or model.count("/") > 1 or (base / path).is_dir():
        return str((base / path).resolve())
    return model
