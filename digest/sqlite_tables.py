"""A SQLite store's tables row by row (``TableRows``), for ``digest store migrate``: a source
read in one snapshot, a target written in batches; times, days, flags and lists converted
between SQLite's text and integers and the plain values of ``digest.store_tables``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from digest.errors import StoreError
from digest.sqlite_connection import Connection, connect, to_text
from digest.sqlite_migrations import MIGRATIONS
from digest.sqlite_store import SQLiteStore
from digest.store_tables import CopiedTable, Kind, Row

_BUSY_TIMEOUT_SECONDS = 30.0
_KEYS_PER_QUERY = 250  # well under SQLite's limit on a statement's variables


def _to_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_READERS: dict[Kind, Callable[[Any], Any]] = {
    Kind.TIME: _to_time,
    Kind.DAY: date.fromisoformat,
    Kind.FLAG: bool,
    Kind.STRINGS: lambda text: tuple(json.loads(text)),
    Kind.BYTES: bytes,
}
_WRITERS: dict[Kind, Callable[[Any], Any]] = {
    Kind.TIME: to_text,
    Kind.DAY: date.isoformat,
    Kind.FLAG: int,
    Kind.STRINGS: lambda values: json.dumps(list(values), ensure_ascii=False),
}


def _read(kinds: Sequence[Kind], row: Sequence[Any]) -> Row:
    return tuple(
        None if value is None else _READERS.get(kind, _same)(value)
        for kind, value in zip(kinds, row, strict=True)
    )


def _written(kinds: Sequence[Kind], row: Sequence[Any]) -> Row:
    return tuple(
        None if value is None else _WRITERS.get(kind, _same)(value)
        for kind, value in zip(kinds, row, strict=True)
    )


def _same(value: Any) -> Any:
    return value


class SQLiteTables:
    """A SQLite store file's tables (a ``TableRows``). Build with ``open_source`` or
    ``open_target``."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.location = str(conn.path)

    @classmethod
    def open_source(cls, path: Path) -> SQLiteTables:
        """The store at ``path`` to copy from, read-only and in one snapshot (a digest
        writing it meanwhile changes nothing read); it must exist and be fully migrated."""
        if not path.is_file():
            raise StoreError(f"{path}: no such store file", path=path, hint="check --from")
        conn = Connection(
            connect(path, _BUSY_TIMEOUT_SECONDS, read_only_flags="mode=ro"),
            path,
            _BUSY_TIMEOUT_SECONDS,
        )
        try:
            _require_migrated(conn)
            conn.execute("BEGIN")  # the snapshot: every read below sees the same store
        except BaseException:
            conn.close()
            raise
        return cls(conn)

    @classmethod
    def open_target(cls, path: Path) -> SQLiteTables:
        """The store at ``path`` to copy into, made and migrated to the latest if needed."""
        SQLiteStore.open(path, busy_timeout=_BUSY_TIMEOUT_SECONDS).close()
        conn = Connection(connect(path, _BUSY_TIMEOUT_SECONDS), path, _BUSY_TIMEOUT_SECONDS)
        conn.execute("PRAGMA foreign_keys = ON")
        return cls(conn)

    def close(self) -> None:
        self._conn.close()

    def count_rows(self, table: CopiedTable) -> int:
        return int(self._conn.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0])

    def read_rows(self, table: CopiedTable, batch_size: int) -> Iterator[Row]:
        """Every row, ``batch_size`` at a time; a history table's by key, then as inserted."""
        order = ", ".join(table.key if not table.is_unique_key else ())
        order_by = f"{order}, rowid" if order else "rowid"
        kinds = [kind for _, kind in table.columns]
        query = f"SELECT {', '.join(table.column_names)} FROM {table.name} ORDER BY {order_by}"
        with self._conn.explained():
            cursor = self._conn.raw.execute(query)
            while batch := cursor.fetchmany(batch_size):
                yield from (_read(kinds, row) for row in batch)

    def rows_with_keys(self, table: CopiedTable, keys: Sequence[Row]) -> list[Row]:
        key_kinds = [table.kind(name) for name in table.key]
        kinds = [kind for _, kind in table.columns]
        marks = f"({', '.join('?' * len(table.key))})"
        found: list[Row] = []
        # A join, not "(key) IN (VALUES ...)", which SQLite answers with a whole-table scan.
        on = " AND ".join(f"t.{name} = k.column{n}" for n, name in enumerate(table.key, 1))
        columns = ", ".join(f"t.{name}" for name in table.column_names)
        unique_keys = list(dict.fromkeys(keys))
        for start in range(0, len(unique_keys), _KEYS_PER_QUERY):
            chunk = unique_keys[start : start + _KEYS_PER_QUERY]
            rows = self._conn.execute(
                f"SELECT {columns} FROM (VALUES {', '.join([marks] * len(chunk))}) AS k"
                f" JOIN {table.name} AS t ON {on}",
                [value for key in chunk for value in _written(key_kinds, key)],
            )
            found += (_read(kinds, row) for row in rows)
        return found

    def add_rows(self, table: CopiedTable, rows: Sequence[Row]) -> int:
        kinds = [kind for _, kind in table.columns]
        marks = ", ".join("?" * len(table.columns))
        with self._conn.atomic():
            return self._conn.executemany(
                f"INSERT INTO {table.name} ({', '.join(table.column_names)}) VALUES ({marks})"
                " ON CONFLICT DO NOTHING",
                [_written(kinds, row) for row in rows],
            ).rowcount


def _require_migrated(conn: Connection) -> None:
    path = conn.path
    try:
        applied = {row[0] for row in conn.execute("SELECT name FROM migrations")}
    except StoreError as exc:
        raise StoreError(
            f"{path}: is not a digest store ({exc.cause})",
            path=path,
            cause=exc.cause,
            hint="check --from: it names the SQLite file of [store].path",
        ) from exc
    if missing := [name for name, _ in MIGRATIONS if name not in applied]:
        raise StoreError(
            f"{path}: the store is not at this version's schema: {len(missing)} migration(s)"
            f" not applied ({', '.join(missing)})",
            path=path,
            hint="run a digest command that writes the store (`digest collect`, with this"
            " version and a settings file whose [store] names it) once, which migrates it;"
            " then run this again",
        )
