"""A PostgreSQL store's tables row by row (``TableRows``), for ``digest store migrate``: a
source read in one snapshot through a server-side cursor, a target written in batches.
psycopg gives and takes ``timestamptz``, ``date``, ``boolean`` and ``bytea`` as the plain
values of ``digest.store_tables`` already; only lists change (``text[]`` is a Python list).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from digest.errors import StoreError
from digest.pg_connection import Connection, open_connection, session_conninfo
from digest.pg_migrations import applied_migrations, pending_migrations
from digest.pg_store import PostgresStore
from digest.store_tables import CopiedTable, Kind, Row

_LOCK_TIMEOUT_SECONDS = 30.0


def _read(table: CopiedTable, row: Sequence[object]) -> Row:
    return tuple(
        tuple(value) if kind is Kind.STRINGS and isinstance(value, list) else value
        for (_, kind), value in zip(table.columns, row, strict=True)
    )


def _written(table: CopiedTable, row: Row) -> Row:
    return tuple(
        list(value) if kind is Kind.STRINGS and value is not None else value
        for (_, kind), value in zip(table.columns, row, strict=True)
    )


class PostgresTables:
    """A PostgreSQL store's tables, in the session's schema (a ``TableRows``). Build with
    ``open_source`` or ``open_target``."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.location = conn.server
        rows = conn.execute(
            "SELECT table_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND column_name = 'seq'"
        )
        self._sequenced = {row[0] for row in rows}  # tables that number rows as inserted

    @classmethod
    def open_source(cls, url: str) -> PostgresTables:
        """The store at ``url`` to copy from, read-only and in one snapshot (a digest
        writing it meanwhile changes nothing read); it must be fully migrated."""
        session = session_conninfo(url, is_read_only=True, lock_timeout=_LOCK_TIMEOUT_SECONDS)
        conn = open_connection(session)
        try:
            _require_migrated(conn)
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            return cls(conn)
        except BaseException:
            conn.close()
            raise

    @classmethod
    def open_target(cls, url: str) -> PostgresTables:
        """The store at ``url`` to copy into, its tables made or migrated to the latest."""
        PostgresStore.open(url, lock_timeout=_LOCK_TIMEOUT_SECONDS).close()
        session = session_conninfo(url, is_read_only=False, lock_timeout=_LOCK_TIMEOUT_SECONDS)
        return cls(open_connection(session))

    def close(self) -> None:
        if self._conn.raw.info.transaction_status:  # a source's snapshot: given back clean
            self._conn.execute("ROLLBACK")
        self._conn.close()

    def count_rows(self, table: CopiedTable) -> int:
        return int(self._conn.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0])

    def read_rows(self, table: CopiedTable, batch_size: int) -> Iterator[Row]:
        """Every row, ``batch_size`` at a time; a history table's by key, then as inserted."""
        order = list(table.key if not table.is_unique_key else ())
        order.append("seq" if table.name in self._sequenced else ", ".join(table.key))
        query = f"SELECT {', '.join(table.column_names)} FROM {table.name} ORDER BY "
        # A server-side cursor: the server keeps the rows, they come batch_size at a time.
        with (
            self._conn.explained(),
            self._conn.raw.transaction(),
            self._conn.raw.cursor(name=f"copy_{table.name}") as cursor,
        ):
            cursor.itersize = batch_size
            cursor.execute(query + ", ".join(order))
            yield from (_read(table, row) for row in cursor)

    def rows_with_keys(self, table: CopiedTable, keys: Sequence[Row]) -> list[Row]:
        arrays = [f"%s::{table.kind(name).value}[]" for name in table.key]
        columns = [list(column) for column in zip(*keys, strict=True)] if keys else []
        rows = self._conn.execute(
            f"SELECT {', '.join(table.column_names)} FROM {table.name}"
            f" WHERE ({', '.join(table.key)}) IN (SELECT * FROM unnest({', '.join(arrays)}))",
            columns,
        )
        return [_read(table, row) for row in rows]

    def add_rows(self, table: CopiedTable, rows: Sequence[Row]) -> int:
        marks = ", ".join(["%s"] * len(table.columns))
        with self._conn.atomic():
            return self._conn.executemany(
                f"INSERT INTO {table.name} ({', '.join(table.column_names)}) VALUES ({marks})"
                " ON CONFLICT DO NOTHING",
                [_written(table, row) for row in rows],
            )


def _require_migrated(conn: Connection) -> None:
    if not applied_migrations(conn):
        raise StoreError(
            f"{conn.server}: holds no digest store (no migrations table in its schema)",
            hint="check --from: the database, and the schema its search_path names",
        )
    if missing := pending_migrations(conn):
        raise StoreError(
            f"{conn.server}: the store is not at this version's schema: {len(missing)}"
            f" migration(s) not applied ({', '.join(missing)})",
            hint="run a digest command that writes the store (`digest collect`, with this"
            " version and a settings file whose [store].url names it) once, which migrates"
            " it; then run this again",
        )
