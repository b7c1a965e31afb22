"""The SQLite store's connection: its transactions, its failures in words, and how its
columns hold datetimes.

Every SQLite failure comes out of ``Connection`` as a ``StoreError`` that names the file, says
the cause in words (a full disk, a lock held too long, a damaged file, ...) and what to do, so
no query can let a raw ``sqlite3`` error out. ``Connection.atomic()`` is a transaction; nested
calls become savepoints.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from digest.errors import StoreError


def to_text(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


def to_datetime(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def from_text(text: str) -> datetime:
    return datetime.fromisoformat(text)


def storage_error(path: Path, exc: sqlite3.Error, busy_timeout: float) -> StoreError:
    """A failed SQLite call on the store at ``path`` as one message: the file, the cause in
    words, and what to do."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None  # e.g. SQLITE_IOERR_WRITE: IOERR
    if primary == sqlite3.SQLITE_IOERR and _is_disk_full(path):
        primary = sqlite3.SQLITE_FULL  # a write cut short by a full disk can be an "I/O error"
    cause, hint = _explanation(primary, path, busy_timeout) or (str(exc), None)
    return StoreError(f"{path}: {cause} (SQLite: {exc})", path=path, cause=cause, hint=hint)


def _explanation(code: int | None, path: Path, busy_timeout: float) -> tuple[str, str] | None:
    file, folder = shlex.quote(str(path)), shlex.quote(str(path.parent))
    recover = (
        f"keep a copy of the file, then rebuild what can be read: `sqlite3 {file} .recover"
        f" | sqlite3 {file}.recovered`, and set [store].path to the new file"
    )
    match code:
        case sqlite3.SQLITE_FULL:
            return "the disk is full", (
                f"free space on the disk that holds {folder} (`df -h {folder}` shows it), then"
                " run the command again; what was recorded before the failure is kept"
            )
        case sqlite3.SQLITE_BUSY | sqlite3.SQLITE_LOCKED:
            return f"the store is locked: another process held it for over {busy_timeout:g} s", (
                f"another digest process, or a program with the file open (`fuser {file}`"
                " names it), is writing to it: run the command again once it has finished;"
                " [store].busy_timeout_seconds sets how long digest waits"
            )
        case sqlite3.SQLITE_CORRUPT:
            return "the store file is damaged", recover
        case sqlite3.SQLITE_NOTADB:
            return "the file is not a SQLite database", (
                f"check [store].path; if this is digest's store, it is damaged: {recover}"
            )
        case sqlite3.SQLITE_READONLY:
            return "the store cannot be written (read-only)", (
                f"check that this user can write {file}, its folder and its -wal and -shm"
                " files, and that the disk is not mounted read-only"
            )
        case sqlite3.SQLITE_CANTOPEN | sqlite3.SQLITE_PERM:
            return "the store file cannot be opened", (
                f"check [store].path, and that this user can read and write {file} and its folder"
            )
        case sqlite3.SQLITE_IOERR:
            return "the disk failed to read or write the file (I/O error)", (
                f"check the disk (`dmesg` shows its errors) and keep a copy of {file}; then run"
                " the command again"
            )
    return None


def _is_disk_full(path: Path) -> bool:
    try:
        return shutil.disk_usage(path.parent).free < 1024 * 1024
    except OSError:
        return False


def connect(
    path: Path, busy_timeout: float, *, read_only_flags: str | None = None
) -> sqlite3.Connection:
    is_uri = read_only_flags is not None
    target = f"{path.resolve().as_uri()}?{read_only_flags}" if is_uri else str(path)
    try:
        return sqlite3.connect(target, isolation_level=None, timeout=busy_timeout, uri=is_uri)
    except sqlite3.Error as exc:
        raise storage_error(path, exc, busy_timeout) from exc


class Connection:
    """The store's SQLite connection, through which every failure comes out explained: the
    one place where storage faults get their words, and where transactions begin and end."""

    def __init__(self, raw: sqlite3.Connection, path: Path, busy_timeout: float) -> None:
        self.raw = raw
        self.path = path
        self.busy_timeout = busy_timeout
        self._depth = 0  # atomic() blocks open: 1 is the transaction, more are savepoints

    def explain(self, exc: sqlite3.Error) -> StoreError:
        return storage_error(self.path, exc, self.busy_timeout)

    @contextmanager
    def explained(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self.explain(exc) from exc

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Rows:
        with self.explained():
            return Rows(self.raw.execute(sql, parameters), self)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Rows:
        with self.explained():
            return Rows(self.raw.executemany(sql, rows), self)

    def close(self) -> None:
        self.raw.close()

    def atomic(self) -> contextlib.AbstractContextManager[None]:
        """A transaction; nested calls become savepoints. BEGIN IMMEDIATE takes the write lock.

        SQLite may roll a whole transaction back itself (a full disk, an I/O error): a block
        that goes on after that writes nothing more, its next atomic() and its end raise.
        """
        return self._savepoint() if self._depth else self._transaction()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
            self._require_transaction()
            self.execute("COMMIT")
        except BaseException as exc:
            self._undo("ROLLBACK")  # also after a failed COMMIT, which can leave it open
            if isinstance(exc, sqlite3.Error):  # from a migration, on the raw connection
                raise self.explain(exc) from exc
            raise
        finally:
            self._depth = 0

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        self._require_transaction()
        name = f"sp{self._depth}"
        self.execute(f"SAVEPOINT {name}")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._undo(f"ROLLBACK TO {name}", f"RELEASE {name}")
            raise
        finally:
            self._depth -= 1
        self._require_transaction()
        self.execute(f"RELEASE {name}")

    def _require_transaction(self) -> None:
        """Raise if SQLite has rolled back the transaction an atomic() block is in."""
        if self.raw.in_transaction:
            return
        cause = "the transaction was rolled back after an earlier failure in it"
        raise StoreError(
            f"{self.path}: {cause}; nothing of it was recorded",
            path=self.path,
            cause=cause,
            hint="run the command again; if it fails again, the first error says what to fix",
        )

    def _undo(self, *statements: str) -> None:
        """Roll back the transaction or savepoint being left, unless SQLite has rolled back
        the whole transaction already: then no savepoint of it is left to roll back to."""
        if not self.raw.in_transaction:
            return
        # The failure that brought us here is the one to report, not one while undoing it.
        with contextlib.suppress(sqlite3.Error):
            for statement in statements:
                self.raw.execute(statement)


class Rows:
    """A cursor's rows: reading them, where SQLite may come upon a damaged page, is explained
    too."""

    def __init__(self, cursor: sqlite3.Cursor, conn: Connection) -> None:
        self._cursor, self._conn = cursor, conn

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def fetchone(self) -> Any:
        with self._conn.explained():
            return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        with self._conn.explained():
            return self._cursor.fetchall()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


def refuse_unmerged_wal(path: Path, error: StoreError) -> None:
    """Raise if the store's ``-wal`` file holds changes, which an immutable reader would miss."""
    wal = path.with_name(f"{path.name}-wal")
    if wal.exists() and wal.stat().st_size:
        raise StoreError(
            f"{path}: cannot read the store: {error.cause}; its folder is read-only, and"
            f" {wal.name} holds changes not yet in the store file",
            path=path,
            cause=error.cause,
            hint="let a digest command that writes (collect, say) open it once where its folder"
            " is writable: closing, it moves those changes into the store file",
        ) from error
