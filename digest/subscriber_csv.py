"""Subscriber CSV files, read and written (pure: bytes in, records out, and back).

An import file has a header line with an ``email`` column (and optionally ``name``; other
columns are ignored). Each line is checked on its own: a bare ASCII address on one line, a
name without control characters, no address twice. The export has one line per subscriber:
``address, name, state, since, how, reason, bounces``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import parseaddr

from digest.models import Subscriber
from digest.settings_models import check_address

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
EXPORT_COLUMNS = ("address", "name", "state", "since", "how", "reason", "bounces")


@dataclass(frozen=True, slots=True, kw_only=True)
class CsvReaders:
    """What an import file holds: the good lines' (address, name) and each bad line's problem
    ("line 7: 'x': is not an email address ...")."""

    readers: tuple[tuple[str, str | None], ...]
    problems: tuple[str, ...]
    lines: int  # data lines read (the header not counted)


def normalised_address(address: str) -> str:
    """The address with its domain in lower case and its local part as given."""
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}"


def read_subscriber_csv(data: bytes) -> CsvReaders:
    """Read an import file (UTF-8, with or without a BOM); raise ValueError if it is not one
    at all (not UTF-8, no ``email`` column)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start}): save it as UTF-8 CSV") from None
    rows = csv.reader(io.StringIO(text, newline=""))
    header = [cell.strip().lower() for cell in next(rows, [])]
    if "email" not in header:
        raise ValueError(f"line 1: no 'email' column in the header (found: {', '.join(header)})")
    columns = (header.index("email"), header.index("name") if "name" in header else None)
    readers: list[tuple[str, str | None]] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    count, end = 0, rows.line_num
    for row in rows:
        number, end = end + 1, rows.line_num  # a quoted field may span lines: its first
        if not any(cell.strip() for cell in row):
            continue
        count += 1
        try:
            reader = _reader(row, columns)
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
            continue
        key = reader[0].lower()
        if key in first_line:
            problems.append(f"line {number}: {reader[0]!r} is listed twice (first on line"
                            f" {first_line[key]})")  # fmt: skip
            continue
        first_line[key] = number
        readers.append(reader)
    return CsvReaders(readers=tuple(readers), problems=tuple(problems), lines=count)


def _reader(row: list[str], columns: tuple[int, int | None]) -> tuple[str, str | None]:
    email_at, name_at = columns
    value = row[email_at].strip(" \t") if email_at < len(row) else ""
    if not value:
        raise ValueError("no address in the email column")
    try:
        check_address(value)
    except ValueError as exc:
        raise ValueError(f"{value!r}: {exc}") from None
    if parseaddr(value)[1] != value:
        raise ValueError(f"{value!r}: give the bare address (a name goes in the name column)")
    name = row[name_at].strip() if name_at is not None and name_at < len(row) else ""
    if _CONTROL.search(name):
        raise ValueError(f"name {name!r}: has a line break or control character")
    return normalised_address(value), name or None


def write_subscriber_csv(subscribers: Iterable[Subscriber]) -> str:
    """The export: one line per subscriber, times in UTC (ISO 8601)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for s in subscribers:
        since = s.state_changed_at.isoformat()
        writer.writerow(
            (s.address, s.name or "", s.state, since, s.how, s.reason or "", s.bounce_count)
        )
    return out.getvalue()
