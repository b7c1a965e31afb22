"""The shape of ``settings.toml``: one frozen pydantic model per table, and the rule for each
key (pure, but for resolving a path against the settings file's folder).

``Settings`` is validated by ``digest.config.validate_settings``, which passes a
``SettingsSource`` as pydantic's validation context: the folder relative paths start from
and the addresses read from ``[delivery].recipients_file``. Sections built in code, without
it, keep their paths as given.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import time
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from digest.filters import term_problem
from digest.models import FeedSource, FilterField, KeywordRules
from digest.settings_base import Section as _Section
from digest.settings_base import SettingsPath
from digest.settings_base import SettingsSource as SettingsSource  # re-exported
from digest.settings_base import settings_source as _source
from digest.settings_summarize import SummarizeSettings as SummarizeSettings  # re-exported
from digest.settings_web import WebSettings
from digest.store_urls import check_postgres_url, sqlite_url_path
from digest.urls import is_web_url

DEFAULT_CONFIG_NAME = "settings.toml"

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
_HH_MM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)(:[0-5]\d)?$")  # seconds: for tests
_SEND_AT_HINT = 'a quoted 24-hour time in the timezone, like send_at = "07:00"'
_CRON_FIELDS = ("minute", "hour", "day", "month", "day_of_week")


_ADDR_SPEC = re.compile(r"^[^\s@<>(),;:\"\[\]\\]+@[^\s@<>(),;:\"\[\]\\]+\.[^\s@<>(),;:\"\[\]\\.]+$")


def check_address(value: str) -> str:
    """The address, if it is one single-line ASCII address; else ValueError saying why."""
    if any(c in value for c in "\r\n\0"):
        raise ValueError("must be a single line: it contains a line break or NUL")
    if len(getaddresses([value])) != 1:
        raise ValueError("must be one address, not a list")
    _, address = parseaddr(value)
    if not _ADDR_SPEC.match(address):
        raise ValueError("is not an email address like 'reader@example.org'")
    if not address.isascii():
        # SMTP without SMTPUTF8 cannot carry it, and a refused one would stall the session.
        raise ValueError(
            f"{address!r} has non-ASCII characters, which digest cannot send to: write the "
            "domain in its ASCII (xn--) form, and ask the reader for an ASCII address"
        )
    return value


EmailAddress = Annotated[str, AfterValidator(check_address)]


def _network(value: object) -> object:
    """An address or network (``192.168.1.0/24``; host bits are ignored) as a network."""
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} must be a quoted address or network, like '192.168.1.0/24'")
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an address or network like '192.168.1.0/24' or 'fd00:1::/64'"
        ) from None


InternalNetwork = Annotated[
    ipaddress.IPv4Network | ipaddress.IPv6Network, BeforeValidator(_network)
]


class StoreSettings(_Section):
    """Where the store is: a SQLite file (``path``, or ``url = "sqlite:///…"``, which becomes
    ``path``) or a PostgreSQL server (``url = "postgresql://…"``, kept as ``url``)."""

    path: SettingsPath = Field(default=Path("digest.db"), validate_default=True)
    url: str | None = None  # PostgreSQL's; None: the SQLite file at ``path``
    busy_timeout_seconds: StrictFloat = Field(default=30.0, gt=0, le=3600)

    @model_validator(mode="before")
    @classmethod
    def _sqlite_url_as_path(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "url" not in data:
            return data
        if "path" in data:
            raise ValueError(
                'both path and url are set: keep one (url = "sqlite:///digest.db" is the'
                ' same as path = "digest.db")'
            )
        path = sqlite_url_path(data["url"])
        return {**data, "path": path, "url": None} if path is not None else data

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        return None if value is None else check_postgres_url(value)

    @property
    def location(self) -> str:
        """The store as a message names it: the file, or the server and database."""
        if self.url is None:
            return str(self.path)
        from digest.pg_connection import server_name

        return server_name(self.url)


class CollectSettings(_Section):
    max_age_days: StrictInt = Field(default=2, ge=0, le=3650)
    max_entries_per_feed: StrictInt = Field(default=300, ge=1, le=100_000)
    timeout_seconds: StrictFloat = Field(default=30.0, gt=0, le=3600)
    max_bytes: StrictInt = Field(default=10_000_000, gt=0, le=1_000_000_000)
    concurrency: StrictInt = Field(default=16, ge=1, le=256)
    per_host: StrictInt = Field(default=4, ge=1, le=256)
    retries: StrictInt = Field(default=2, ge=0, le=10)
    full_text: StrictBool = True
    full_text_min_words: StrictInt = Field(default=60, ge=0, le=5000)
    page_timeout_seconds: StrictFloat = Field(default=10.0, gt=0, le=600)
    dedupe_similarity: StrictFloat = Field(default=0.54, gt=0, le=1)
    dedupe_window_hours: StrictFloat = Field(default=48.0, gt=0, le=8760)
    min_interval_minutes: StrictInt = Field(default=0, ge=0, le=1440)
    # Internal addresses any feed, redirect or article page may lead to (a LAN of yours).
    allowed_internal_networks: tuple[InternalNetwork, ...] = ()


class _KeywordKeys(_Section):
    """The keys of a keyword filter, in ``[filters]`` and on each ``[[feeds]]`` table."""

    regex: StrictBool = False  # before include and exclude: their check depends on it
    fields: tuple[FilterField, ...] = Field(default=("headline", "text"), min_length=1)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @field_validator("include", "exclude")
    @classmethod
    def _valid_terms(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        is_regex = info.data.get("regex") is True
        for term in value:
            if problem := term_problem(term, is_regex=is_regex):
                raise ValueError(problem)
        return value

    @property
    def keywords(self) -> KeywordRules:
        return KeywordRules(
            include=self.include,
            exclude=self.exclude,
            fields=tuple(dict.fromkeys(self.fields)),
            is_regex=self.regex,
        )


class FilterSettings(_KeywordKeys):
    """The global keyword filter: ``[filters]``."""


class FeedSettings(_KeywordKeys):
    url: str = Field(min_length=1)
    name: str | None = None
    category: str | None = None
    priority: StrictInt = Field(default=0, ge=-100, le=100)  # ranks equal stories in a section
    dedupe: StrictBool = True
    full_text: StrictBool | None = None  # None: as [collect].full_text
    min_interval_minutes: StrictInt | None = Field(default=None, ge=0, le=1440)

    @field_validator("url")
    @classmethod
    def _url_or_path(cls, value: str, info: ValidationInfo) -> str:
        scheme = urlsplit(value).scheme.lower()
        if scheme in ("http", "https"):
            if not is_web_url(value):
                raise ValueError("is an http(s) URL without a host")
        elif scheme not in ("", "file") and len(scheme) > 1:  # one letter: a Windows drive
            raise ValueError("must be an http:// or https:// URL, or a local file path")
        source = _source(info)
        return _resolve_feed_url(value, source.folder) if source else value


class RenderSettings(_Section):
    title: str = "Daily Digest"
    max_stories: StrictInt = Field(default=40, ge=1, le=500)
    template_dir: SettingsPath | None = None
    subject: str = Field(default="{{ title }}, {{ date }}: {{ top_headline }}", min_length=1)
    sections: tuple[str, ...] = ()  # section order; sections not listed follow by importance
    max_per_section: StrictInt = Field(default=10, ge=1, le=500)
    empty_edition: Literal["send", "skip"] = "skip"
    max_html_bytes: StrictInt = Field(default=100_000, ge=10_000, le=10_000_000)
    archive_url: str | None = None  # "view in browser"; {date} becomes the edition's date
    images: StrictBool = True  # each story's lead image, by its address (never fetched by us)

    @field_validator("archive_url")
    @classmethod
    def _web_url(cls, value: str | None) -> str | None:
        if value is not None and not is_web_url(value):
            raise ValueError("must be an http:// or https:// URL")
        return value


class DeliverySettings(_Section):
    backend: Literal["outbox", "smtp", "sendmail"] = "outbox"
    outbox: SettingsPath = Field(default=Path("outbox"), validate_default=True)
    from_: EmailAddress = Field(alias="from")
    # After validation, with the recipients_file's addresses added.
    recipients: tuple[EmailAddress, ...] = Field(default=(), validate_default=True)
    sendmail_command: tuple[str, ...] = Field(
        default=("/usr/sbin/sendmail", "-oi", "-t"), min_length=1
    )
    # One address per line, # comments; read at load and added to `recipients`.
    recipients_file: SettingsPath | None = None
    unsubscribe_url: str | None = None
    unsubscribe_mailto: EmailAddress | None = None
    list_id: str | None = None
    # Consecutive editions refused with a 5xx (other than "user unknown") before a bounce.
    bounce_limit: StrictInt = Field(default=3, ge=1, le=100)
    # Messages per rolling minute / hour, across runs (ESPs and relays impose them); None: no limit.
    max_per_minute: StrictInt | None = Field(default=None, ge=1)
    max_per_hour: StrictInt | None = Field(default=None, ge=1)

    @field_validator("unsubscribe_url", "list_id")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and (_CONTROL.search(value) or not value.strip()):
            raise ValueError("must be one non-empty line without control characters")
        return value

    @field_validator("unsubscribe_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not is_web_url(value):
            raise ValueError("must be an http(s) URL (RFC 8058 one-click wants https)")
        return value

    @field_validator("recipients")
    @classmethod
    def _no_duplicates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        seen: set[str] = set()
        for recipient in value:
            address = parseaddr(recipient)[1].lower()
            if address in seen:
                raise ValueError(f"lists {address!r} twice")
            seen.add(address)
        return value

    @field_validator("recipients")
    @classmethod
    def _with_file_recipients(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        source = _source(info)
        return (*value, *source.file_recipients) if source else value


class SmtpSettings(_Section):
    host: str = "localhost"
    port: StrictInt = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    timeout_seconds: StrictFloat = Field(default=30.0, gt=0, le=3600)
    # A PEM file of the CA(s) to trust instead of the system's (a private or test CA).
    ca_file: SettingsPath | None = None
    max_messages_per_connection: StrictInt = Field(default=100, ge=1, le=100_000)
    retries: StrictInt = Field(default=3, ge=0, le=10)
    retry_backoff_seconds: StrictFloat = Field(default=2.0, ge=0, le=300)


class ScheduleSettings(_Section):
    send_at: str = "07:00"
    days: str = "*"
    cron: tuple[str, ...] = ()
    collect_every_minutes: StrictInt = Field(default=30, ge=1, le=1440)
    misfire_grace_hours: StrictFloat = Field(default=6.0, gt=0, le=24)
    log_file: SettingsPath | None = None

    @field_validator("send_at", mode="before")
    @classmethod
    def _hh_mm(cls, value: object) -> str:
        if isinstance(value, time):  # TOML's unquoted local time, send_at = 07:00:00
            value = value.isoformat()
        if not isinstance(value, str):
            raise ValueError(f"must be {_SEND_AT_HINT}")
        match = _HH_MM.match(value)
        if not match:
            raise ValueError(f"must be {_SEND_AT_HINT} (H:MM and HH:MM:SS work too)")
        hour, minute, seconds = match.groups()
        return f"{int(hour):02d}:{minute}{seconds or ''}"

    @field_validator("days")
    @classmethod
    def _day_names(cls, value: str) -> str:
        return _check_days(value)

    @field_validator("cron", mode="before")
    @classmethod
    def _one_or_more(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @field_validator("cron")
    @classmethod
    def _crontab_lines(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for line in value:
            fields = line.split()
            if len(fields) != 5:
                raise ValueError(f"{line!r} needs 5 fields (minute hour day month weekday)")
            _check_days(fields[4])
            try:
                _cron_trigger().from_crontab(line, timezone="UTC")
            except ValueError as exc:
                raise ValueError(f"{line!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _cron_or_send_at(self) -> ScheduleSettings:
        if self.cron and self.model_fields_set & {"send_at", "days"}:
            raise ValueError("set either cron, or send_at (and days), not both")
        return self

    @property
    def editions(self) -> tuple[dict[str, str], ...]:
        """Each edition schedule as CronTrigger fields (send_at and days make one)."""
        if self.cron:
            return tuple(dict(zip(_CRON_FIELDS, line.split(), strict=True)) for line in self.cron)
        hour, minute, second = (int(part) for part in f"{self.send_at}:00".split(":")[:3])
        return (
            {
                "hour": str(hour),
                "minute": str(minute),
                "second": str(second),
                "day_of_week": self.days,
            },
        )


def _cron_trigger() -> Any:
    # APScheduler (~40 ms) only when a schedule is set: every command loads the settings.
    from apscheduler.triggers.cron import CronTrigger

    return CronTrigger


def _check_days(value: str) -> str:
    # APScheduler 3 counts weekday numbers from Monday, cron from Sunday: only names are
    # unambiguous.
    if any(char.isdigit() for char in value):
        raise ValueError(f"{value!r}: name the weekdays (mon-fri, sat,sun), not numbers")
    try:
        _cron_trigger()(day_of_week=value, timezone="UTC")
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a list of weekdays like 'mon-fri' ({exc})") from None
    return value


class Settings(_Section):
    """Everything digest needs to run, validated. Built by ``digest.config.load_settings``."""

    config_path: Path = Path(DEFAULT_CONFIG_NAME)
    timezone: str = "UTC"
    store: StoreSettings = StoreSettings()
    collect: CollectSettings = CollectSettings()
    feeds: tuple[FeedSettings, ...]
    filters: FilterSettings = FilterSettings()
    summarize: SummarizeSettings = SummarizeSettings()
    render: RenderSettings = RenderSettings()
    delivery: DeliverySettings
    smtp: SmtpSettings = SmtpSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    web: WebSettings = WebSettings()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                "is not an IANA time zone name like 'Europe/Istanbul' or 'UTC'"
            ) from None
        return value

    @field_validator("feeds")
    @classmethod
    def _some_feeds(cls, value: tuple[FeedSettings, ...]) -> tuple[FeedSettings, ...]:
        if not value:
            raise ValueError("needs at least one [[feeds]] table with a url")
        return value

    @model_validator(mode="before")
    @classmethod
    def _absent_tables_as_empty(cls, data: Any) -> Any:
        # pydantic does not validate a default section, so one whose table is absent would
        # keep its default paths unresolved: validate it as an empty table instead.
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields.items()
        optional = [n for n, f in fields if is_section(f.annotation) and not f.is_required()]
        empty: dict[str, Any] = {name: {} for name in optional}
        return empty | data

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def feed_sources(self) -> tuple[FeedSource, ...]:
        return tuple(
            FeedSource(
                url=f.url,
                name=f.name,
                category=f.category,
                is_deduped=f.dedupe,
                full_text=self.collect.full_text if f.full_text is None else f.full_text,
                priority=f.priority,
                min_interval_minutes=(
                    self.collect.min_interval_minutes
                    if f.min_interval_minutes is None
                    else f.min_interval_minutes
                ),
                keywords=f.keywords,
            )
            for f in self.feeds
        )


def _resolve_feed_url(url: str, base: Path) -> str:
    parts = urlsplit(url)
    if parts.scheme.lower() in ("http", "https"):
        return url
    path = Path(parts.path) if parts.scheme.lower() == "file" else Path(url).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def is_section(candidate: object) -> bool:
    """Whether a field's type is a table of its own (a pydantic model)."""
    return isinstance(candidate, type) and issubclass(candidate, BaseModel)
