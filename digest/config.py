"""Settings: ``settings.toml`` -> a frozen, validated ``Settings`` (file I/O at the edge).

The file is found from ``--config``, then ``$DIGEST_CONFIG``, then ``./settings.toml``.
Validation is strict (unknown keys are errors) and every problem is reported at once,
each naming the file, the ``[section].key``, the bad value and what would be valid.
Relative paths are relative to the config file. The ``[delivery].recipients_file`` is read
before validation, and the models (``digest.settings_models``) resolve their paths while
validating, so ``Settings`` is built once, frozen and complete. Secrets never live here:
the SMTP password comes from ``$DIGEST_SMTP_PASSWORD``.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from digest.errors import ConfigError
from digest.settings_models import (
    DEFAULT_CONFIG_NAME,
    CollectSettings,
    DeliverySettings,
    FeedSettings,
    FilterSettings,
    RenderSettings,
    ScheduleSettings,
    Settings,
    SettingsSource,
    SmtpSettings,
    StoreSettings,
    SummarizeSettings,
    check_address,
    is_section,
)
from digest.store_urls import hide_password

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_CONFIG_NAME",
    "CollectSettings",
    "DeliverySettings",
    "FeedSettings",
    "FilterSettings",
    "RenderSettings",
    "ScheduleSettings",
    "Settings",
    "SmtpSettings",
    "StoreSettings",
    "SummarizeSettings",
    "find_config_path",
    "load_settings",
    "validate_settings",
]

CONFIG_ENV_VAR = "DIGEST_CONFIG"
_MAX_URL_SHOWN = 80  # a feed named by its url in a message: long ones are shortened


def find_config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config file to use: ``--config``, then ``$DIGEST_CONFIG``, then ``./settings.toml``."""
    if explicit:
        return Path(explicit)
    if env_value := os.environ.get(CONFIG_ENV_VAR):
        return Path(env_value)
    return Path(DEFAULT_CONFIG_NAME)


def load_settings(path: str | os.PathLike[str]) -> Settings:
    """Read and validate one config file; raise ConfigError listing every problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found",
            path=str(path),
            hint=f"pass --config FILE, set ${CONFIG_ENV_VAR}, or create ./{DEFAULT_CONFIG_NAME} "
            "(the settings.toml in the repository is a documented example)",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}", path=str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid TOML: {exc}",
            path=str(path),
            hint="see https://toml.io for the syntax",
        ) from exc
    return validate_settings(raw, path)


def validate_settings(raw: dict[str, Any], path: Path) -> Settings:
    """Validate an already-parsed TOML document that came from ``path``."""
    if "config_path" in raw:
        raise ConfigError(f"{path}: invalid settings", problems=("config_path: unknown key",))
    config_path = path.resolve()
    recipients_file = _read_recipients_file(raw, config_path.parent)
    source = SettingsSource(
        folder=config_path.parent,
        file_recipients=recipients_file.addresses if recipients_file else (),
    )
    try:
        settings = Settings.model_validate({**raw, "config_path": config_path}, context=source)
    except ValidationError as exc:
        problems = tuple(_describe(error, raw) for error in exc.errors())
        raise ConfigError(
            f"{path}: {len(problems)} problem(s) in the settings",
            path=str(path),
            problems=problems,
        ) from None
    _check_recipients(settings, recipients_file)
    return settings


def _check_recipients(settings: Settings, recipients_file: _RecipientsFile | None) -> None:
    """Raise ConfigError if the recipients file has a bad line. No recipient at all is fine
    here: the store's subscribers may be the readers (``digest send`` says if nobody is)."""
    if recipients_file and recipients_file.problems:
        raise ConfigError(
            f"{recipients_file.path}: {len(recipients_file.problems)} problem(s) in "
            "[delivery].recipients_file",
            path=str(recipients_file.path),
            problems=recipients_file.problems,
            hint="one address per line; lines starting with # are comments",
        )


@dataclass(frozen=True, slots=True)
class _RecipientsFile:
    path: Path
    addresses: tuple[str, ...]
    problems: tuple[str, ...]  # "line 3: ...": reported once the settings themselves are valid


def _read_recipients_file(raw: dict[str, Any], folder: Path) -> _RecipientsFile | None:
    """``[delivery].recipients_file``'s addresses, each line checked, before validation: the
    validated list gets them from the ``SettingsSource``. None if no file is named (or the
    name is not text, which validation reports)."""
    delivery = raw.get("delivery")
    if not isinstance(delivery, dict) or not isinstance(delivery.get("recipients_file"), str):
        return None
    listed = delivery.get("recipients")
    listed = listed if isinstance(listed, list) else []
    seen = {parseaddr(r)[1].lower() for r in listed if isinstance(r, str)}
    path = folder / Path(delivery["recipients_file"]).expanduser()
    addresses, problems = _read_recipients(path, seen)
    return _RecipientsFile(path=path, addresses=tuple(addresses), problems=tuple(problems))


def _read_recipients(path: Path, seen: set[str]) -> tuple[list[str], list[str]]:
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [f"cannot read it: {exc}"]
    added: list[str] = []
    problems: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        value = line.strip(" \t")
        if not value or value.startswith("#"):
            continue
        try:
            if "\r" in value:
                raise ValueError("has a carriage return (CRLF line ends?): save it with LF ends")
            check_address(value)
        except ValueError as exc:
            problems.append(f"line {number}: {value!r}: {exc}")
            continue
        address = parseaddr(value)[1].lower()
        if address in seen:
            problems.append(f"line {number}: {address!r} is listed twice")
        seen.add(address)
        added.append(value)
    return added, problems


def _describe(error: ErrorDetails, raw: dict[str, Any]) -> str:
    loc = error["loc"]
    where = _key_name(loc, raw)
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key{_suggest(loc)}"
    if error["type"] == "missing":
        if loc == ("feeds",):
            return "[[feeds]]: at least one [[feeds]] table with a url is required"
        return f"{where}: required, but not set"
    message = _PLAIN_MESSAGES.get(error["type"], error["msg"].removeprefix("Value error, "))
    if isinstance(error["input"], dict):  # a check across a table's keys: no single value
        return f"{where}: {message}"
    return f"{where} = {hide_password(repr(error['input']))}: {message}"


# pydantic's wording for a value of the wrong TOML type, said as the file is written.
_PLAIN_MESSAGES = {
    "string_type": 'must be text in double quotes, like "…"',
    "bool_type": "must be true or false, without quotes",
    "bool_parsing": "must be true or false, without quotes",
}


def _key_name(loc: tuple[int | str, ...], raw: dict[str, Any]) -> str:
    """Where a problem is, as the file reads: ('smtp', 'port') -> '[smtp].port';
    ('feeds', 2, 'nmae') -> '[[feeds]] #3 (https://…).nmae', the feed named by its url."""
    if not loc:
        return "(top level)"
    head, *rest = ["from" if part == "from_" else part for part in loc]
    if not rest:
        is_table = is_section(getattr(Settings.model_fields.get(str(head)), "annotation", None))
        return f"[{head}]" if is_table else str(head)
    if head == "feeds" and isinstance(rest[0], int):
        section, rest = _feed_name(rest[0], raw, rest[1:]), rest[1:]
    else:
        section = f"[{head}]"
    keys = "".join(f" #{p + 1}" if isinstance(p, int) else f".{p}" for p in rest)
    return f"{section}{keys}"


def _feed_name(index: int, raw: dict[str, Any], keys: list[int | str]) -> str:
    """'[[feeds]] #3 (its url)', or without the url when there is none or the problem is it."""
    name = f"[[feeds]] #{index + 1}"
    feeds = raw.get("feeds")
    table = feeds[index] if isinstance(feeds, list) and index < len(feeds) else None
    url = table.get("url") if isinstance(table, dict) else None
    if not isinstance(url, str) or not url or keys[:1] == ["url"]:
        return name
    if len(url) > _MAX_URL_SHOWN:
        url = url[: _MAX_URL_SHOWN - 1] + "…"
    return f"{name} ({url})"


def _suggest(loc: tuple[int | str, ...]) -> str:
    model: type[BaseModel] = Settings
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        args = getattr(annotation, "__args__", ())
        nested = next((a for a in (annotation, *args) if is_section(a)), None)
        if nested is None:
            return ""
        model = nested
    valid = sorted(
        (info.alias or name) for name, info in model.model_fields.items() if name != "config_path"
    )
    close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
    did_you_mean = f"; did you mean {close[0]!r}?" if close else ""
    return f"{did_you_mean} (valid keys: {', '.join(valid)})"


# A feed's identity among the configured ones
