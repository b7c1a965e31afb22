"""Log lines: stamped in the readers' time zone, with its offset, so that they agree with the
tables the commands print (``2026-12-02 15:46:25+03:00 WARNING digest.sending: ...``)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, tzinfo

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ZonedFormatter(logging.Formatter):
    """The log format, its times in one zone (UTC until the settings name theirs)."""

    def __init__(self, tz: tzinfo = UTC) -> None:
        super().__init__(LOG_FORMAT)
        self.tz = tz

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.fromtimestamp(record.created, self.tz)
        return moment.isoformat(sep=" ", timespec="seconds")


def log_in_zone(tz: tzinfo) -> None:
    """Stamp the root logger's digest-formatted lines in ``tz`` from now on."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, ZonedFormatter):
            handler.setFormatter(ZonedFormatter(tz))
