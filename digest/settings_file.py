"""The user's settings file, edited: ``[[feeds]]`` tables appended for ``digest feeds add``
and ``digest feeds import`` (file I/O).

Only appends: the user's comments and layout stay as they were. The file is validated with
the new tables before it is written and again after; a failure leaves it unchanged.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from digest.config import load_settings, validate_settings
from digest.errors import ConfigError
from digest.models import FeedSource
from digest.urls import feed_url_key


def append_feeds(
    config_path: Path, feeds: tuple[FeedSource, ...], *, dry_run: bool = False
) -> tuple[FeedSource, ...]:
    """Append a ``[[feeds]]`` table for each feed not configured yet; return those appended.

    The text goes at the end, so the user's comments and layout stay as they were. The whole
    file is validated before it is written and again after; a failure leaves it unchanged.
    """
    settings = load_settings(config_path)
    known = {feed_url_key(feed.url) for feed in settings.feeds}
    new = []
    for feed in feeds:
        if feed_url_key(feed.url) not in known:
            known.add(feed_url_key(feed.url))
            new.append(feed)
    if not new or dry_run:
        _check_appended(config_path, new)
        return tuple(new)
    original = config_path.read_bytes()
    addition = _check_appended(config_path, new)
    with config_path.open("a", encoding="utf-8", newline="") as file:
        file.write(addition)
    try:
        load_settings(config_path)
    except ConfigError:
        with config_path.open("r+b") as file:
            file.truncate(len(original))
        raise
    return tuple(new)


def _check_appended(config_path: Path, feeds: list[FeedSource]) -> str:
    """The text to append for ``feeds``; raise ConfigError if the file would not be valid."""
    text = config_path.read_text(encoding="utf-8")
    addition = "".join(_feed_table(feed) for feed in feeds)
    if addition and text and not text.endswith("\n"):
        addition = "\n" + addition
    try:
        raw = tomllib.loads(text + addition)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{config_path}: adding [[feeds]] tables at the end would not be valid TOML: {exc}",
            path=str(config_path),
            hint="are the feeds an inline array (feeds = [...])? write them as [[feeds]] tables",
        ) from exc
    validate_settings(raw, config_path)
    return addition


def _feed_table(feed: FeedSource) -> str:
    lines = ["", "[[feeds]]", f"url = {_toml_string(feed.url)}"]
    if feed.name:
        lines.append(f"name = {_toml_string(feed.name)}")
    if feed.category:
        lines.append(f"category = {_toml_string(feed.category)}")
    return "\n".join(lines) + "\n"


_TOML_ESCAPES = {code: f"\\u{code:04X}" for code in (*range(0x20), 0x7F)} | {
    ord('"'): '\\"',
    ord("\\"): "\\\\",
    ord("\b"): "\\b",
    ord("\t"): "\\t",
    ord("\n"): "\\n",
    ord("\f"): "\\f",
    ord("\r"): "\\r",
}


def _toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    return '"' + value.translate(_TOML_ESCAPES) + '"'
