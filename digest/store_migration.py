"""``digest store migrate``: copy a whole store from one engine to another (SQLite to
PostgreSQL, the other way, or between two of the same), then verify it table by table.

The source is read in one snapshot and must be at this version's schema; the target is
migrated to it first. Rows are copied a batch at a time, each batch in its own transaction,
so a copy cut short keeps what it committed, and running it again copies the rest: a row
whose key the target holds is kept as it is there and counted as "already there" (a second
run copies nothing). A target holding another store's data is refused before anything is
copied: an edition of the same day with another subject or creation time, a delivery of the
same edition and address with another Message-ID, a subscriber id with another list or
address. What is copied, and what is left behind (the migrations, the send lock's holder), is
``digest.store_tables``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from digest.errors import StoreError
from digest.store_tables import COPIED_TABLES, CopiedTable, Row, TableRows
from digest.store_urls import check_postgres_url, hide_password, sqlite_url_path

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000
_EXAMPLES = 5  # differing rows named in a refusal or a note, per table
_SHOWN_CHARACTERS = 60


@dataclass(frozen=True, slots=True, kw_only=True)
class TableCopy:
    """One table's copy: ``present`` is how many of the source's rows the target holds
    after it (by key; a history table's by all their values)."""

    table: str
    source_rows: int
    copied: int
    already_there: int
    present: int
    target_rows: int
    differing: int = 0  # already there, but with other values than the source's (kept)
    differing_examples: tuple[str, ...] = ()
    must_agree: bool = False  # differing rows fail the verification (CopiedTable.must_agree)

    @property
    def is_disagreeing(self) -> bool:
        return self.must_agree and self.differing > 0

    @property
    def is_verified(self) -> bool:
        return self.present == self.source_rows and not self.is_disagreeing


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreMigration:
    source: str
    target: str
    tables: tuple[TableCopy, ...]

    @property
    def is_verified(self) -> bool:
        return all(table.is_verified for table in self.tables)


def migrate_store(
    source_url: str, target_url: str, *, batch_size: int = BATCH_SIZE
) -> StoreMigration:
    """Copy every row of the store at ``source_url`` that the store at ``target_url`` does
    not hold yet, and count, per table, the source's rows the target holds after."""
    source_where, target_where = _where(source_url, "--from"), _where(target_url, "--to")
    if source_where == target_where:
        raise StoreError(
            f"--from and --to name the same store ({hide_password(source_url)})",
            hint="--to names the new store, a PostgreSQL database or another SQLite file",
        )
    source = _open(source_where, is_source=True)
    try:
        target = _open(target_where, is_source=False)
        try:
            _refuse_another_stores_rows(source, target, batch_size)
            tables = tuple(_copy_table(source, target, t, batch_size) for t in COPIED_TABLES)
        finally:
            target.close()
    finally:
        source.close()
    return StoreMigration(source=source.location, target=target.location, tables=tables)


def _where(url: str, option: str) -> Path | str:
    """A SQLite file's path, or a checked PostgreSQL URL."""
    if (path := sqlite_url_path(url)) is not None:
        return Path(path).resolve()
    try:
        return check_postgres_url(url)
    except ValueError as exc:
        raise StoreError(f"{option} {hide_password(url)}: {exc}", hint=None) from None


def _open(where: Path | str, *, is_source: bool) -> TableRows:
    if isinstance(where, Path):
        from digest.sqlite_tables import SQLiteTables

        return SQLiteTables.open_source(where) if is_source else SQLiteTables.open_target(where)
    from digest.pg_tables import PostgresTables  # psycopg: only for a postgresql URL

    return PostgresTables.open_source(where) if is_source else PostgresTables.open_target(where)


def _batches(rows: Iterable[Row], table: CopiedTable, size: int) -> Iterator[list[Row]]:
    """``rows`` in lists of about ``size``; a history table's rows of one key stay in one
    list, so that rows identical in all their values are counted together."""
    batch: list[Row] = []
    for row in rows:
        if len(batch) >= size and (
            table.is_unique_key or table.key_of(row) != table.key_of(batch[-1])
        ):
            yield batch
            batch = []
        batch.append(row)
    if batch:
        yield batch


def _matches(table: CopiedTable, batch: Sequence[Row], target: TableRows) -> list[Row | None]:
    """The target's row for each row of ``batch``, or None: the one with its key, or for a
    history table one with all its values (each target row standing for one source row)."""
    found = target.rows_with_keys(table, list(dict.fromkeys(map(table.key_of, batch))))
    if table.is_unique_key:
        by_key = {table.key_of(row): row for row in found}
        return [by_key.get(table.key_of(row)) for row in batch]
    unmatched = Counter(found)
    matches: list[Row | None] = []
    for row in batch:
        matches.append(row if unmatched[row] > 0 else None)
        unmatched[row] -= 1
    return matches


def _copy_table(
    source: TableRows, target: TableRows, table: CopiedTable, batch_size: int
) -> TableCopy:
    source_rows = copied = already_there = present = 0
    differing: list[str] = []
    for batch in _batches(source.read_rows(table, batch_size), table, batch_size):
        matches = _matches(table, batch, target)
        missing = [row for row, theirs in zip(batch, matches, strict=True) if theirs is None]
        differing += (
            _difference(table, row, theirs, table.column_names)
            for row, theirs in zip(batch, matches, strict=True)
            if theirs is not None and theirs != row
        )
        if missing:
            copied += target.add_rows(table, missing)
            present += sum(m is not None for m in _matches(table, batch, target))
        else:
            present += len(batch)
        source_rows += len(batch)
        already_there += len(batch) - len(missing)
    logger.info("%s: %d rows, %d copied", table.name, source_rows, copied)
    return TableCopy(
        table=table.name,
        source_rows=source_rows,
        copied=copied,
        already_there=already_there,
        present=present,
        target_rows=target.count_rows(table),
        differing=len(differing),
        differing_examples=tuple(differing[:_EXAMPLES]),
        must_agree=table.must_agree,
    )


def _refuse_another_stores_rows(source: TableRows, target: TableRows, batch_size: int) -> None:
    """Raise, before anything is copied, if the target holds rows under the source's keys
    that another store wrote (``CopiedTable.same_store`` differs)."""
    differences: list[str] = []
    for table in COPIED_TABLES:
        if table.same_store and target.count_rows(table):
            differences += _differences(source, target, table, batch_size)
    if differences:
        raise StoreError(
            f"{target.location}: holds another store's data, not {source.location}'s; nothing"
            " was copied:\n" + "\n".join(f"  - {line}" for line in differences),
            cause="the target holds another store's data",
            hint="copy into an empty database (or schema), or into the one this store was"
            " copied to before (its rows from that copy are kept as they are)",
        )


def _differences(
    source: TableRows, target: TableRows, table: CopiedTable, batch_size: int
) -> list[str]:
    found: list[str] = []
    count = 0
    for batch in _batches(source.read_rows(table, batch_size), table, batch_size):
        for row, theirs in zip(batch, _matches(table, batch, target), strict=True):
            if theirs and table.same_store_values(theirs) != table.same_store_values(row):
                count += 1
                if len(found) < _EXAMPLES:
                    found.append(_difference(table, row, theirs, table.same_store))
    if count > len(found):
        found.append(f"{table.name}: {count - len(found)} more")
    return found


def _difference(table: CopiedTable, ours: Row, theirs: Row, columns: Sequence[str]) -> str:
    """``table key ...: column X in the source, Y in the target`` for those of ``columns``
    that differ."""
    key = ", ".join(
        f"{name} {_shown(value)}" for name, value in zip(table.key, table.key_of(ours), strict=True)
    )
    positions = [table.column_names.index(name) for name in columns]
    said = "; ".join(
        f"{table.column_names[i]} {_shown(ours[i])} in the source,"
        f" {_shown(theirs[i])} in the target"
        for i in positions
        if ours[i] != theirs[i]
    )
    return f"{table.name} {key}: {said}"


def _shown(value: object) -> str:
    shown = repr(value) if isinstance(value, str) else str(value)
    return shown if len(shown) <= _SHOWN_CHARACTERS else shown[: _SHOWN_CHARACTERS - 1] + "…"
