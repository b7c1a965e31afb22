"""The ``[web]`` table of ``settings.toml``: where ``digest web`` is reached and its limits (pure).

The signing key is never here: it comes from the environment (``DIGEST_SECRET_KEY``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, StrictInt, field_validator

from digest.settings_base import Section


class WebSettings(Section):
    """``digest web``: its public address behind the reverse proxy, and its limits."""

    base_url: str | None = None  # e.g. "https://news.example.org"; None: no per-reader links
    confirm_hours: StrictInt = Field(default=48, ge=1, le=24 * 30)
    emails_per_address_per_day: StrictInt = Field(default=3, ge=1, le=100)
    posts_per_client_per_hour: StrictInt = Field(default=20, ge=1, le=100_000)
    max_body_bytes: StrictInt = Field(default=16_384, ge=1024, le=1_048_576)

    @field_validator("base_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{value!r} is not an http(s) address like 'https://news.example.org'")
        if parts.query or parts.fragment or any(c.isspace() for c in value):
            raise ValueError(f"{value!r}: give the site's address without query or spaces")
        return value.rstrip("/")
