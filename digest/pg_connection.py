"""The PostgreSQL store's connections: its pool, its transactions, and its failures in words.

Every psycopg failure comes out of ``Connection`` as a ``StoreError`` that names the server
(host:port/database, never a password), says the cause in words (the server unreachable, a
failed login, a missing database, a full disk, a deadlock, a lock held too long, a read-only
store, ...) and what to do. ``Connection.atomic()`` is a transaction; nested calls become
savepoints (psycopg's own ``transaction()``).

Connections come from one small ``psycopg_pool.ConnectionPool`` per server and access per
process: a store holds one connection for its life (one thread uses it, as with SQLite), and
a thread that opens its own store gets its own connection from the same pool.
"""

from __future__ import annotations

import atexit
import contextlib
import getpass
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout

from digest.errors import StoreError
from digest.store_urls import hide_password

POOL_SIZE = 8  # a process's stores at once: a command's, the daemon's jobs, --workers
_CONNECT_TIMEOUT_SECONDS = 10
_PASSWORD_SOURCES = "$PGPASSWORD, a ~/.pgpass file or a pg_service.conf service"


def server_name(conninfo: str) -> str:
    """The server and database a connection string names, as ``host:port/database`` (libpq's
    defaults filled in, the password never shown)."""
    params = conninfo_to_dict(conninfo)
    if "service" in params and "host" not in params:
        return f"PostgreSQL service {params['service']}"
    host = str(params.get("host") or os.environ.get("PGHOST") or "localhost")
    port = str(params.get("port") or os.environ.get("PGPORT") or 5432)
    user = params.get("user") or os.environ.get("PGUSER") or getpass.getuser()
    database = params.get("dbname") or os.environ.get("PGDATABASE") or user
    return f"{host}:{port}/{database}"


def session_conninfo(conninfo: str, *, is_read_only: bool, lock_timeout: float) -> str:
    """``conninfo`` with what every store session needs: UTC timestamps, a connect timeout,
    how long to wait for another session's lock (``[store].busy_timeout_seconds``) and, for
    a read-only store, transactions that refuse every write."""
    params = conninfo_to_dict(conninfo)
    settings = ["-c TimeZone=UTC", f"-c lock_timeout={round(lock_timeout * 1000)}"]
    if is_read_only:
        settings.append("-c default_transaction_read_only=on")
    options = " ".join([str(params.get("options") or ""), *settings]).strip()
    timeout = params.get("connect_timeout") or _CONNECT_TIMEOUT_SECONDS
    return make_conninfo(conninfo, options=options, connect_timeout=timeout)


def storage_error(server: str, exc: psycopg.Error) -> StoreError:
    """A failed psycopg call on the store at ``server`` as one message: the server, the cause
    in words, and what to do."""
    cause, hint = _explanation(server, exc)
    said = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    said = hide_password(said)  # libpq never says it; a URL quoted in a message might
    return StoreError(f"{server}: {cause} (PostgreSQL: {said})", cause=cause, hint=hint)


def _explanation(server: str, exc: psycopg.Error) -> tuple[str, str | None]:
    state = exc.sqlstate or ""
    if explained := _BY_SQLSTATE.get(state) or _BY_SQLSTATE.get(state[:2]):
        return explained
    if state:
        return str(exc).strip() or state, None
    return _connection_explanation(server, str(exc))


def _connection_explanation(server: str, text: str) -> tuple[str, str | None]:
    """A failure with no SQLSTATE: libpq's own, while connecting or on a lost connection."""
    said = text.lower()
    refusals = ("password authentication failed", "no password supplied", "role ")
    if any(refusal in said for refusal in refusals) and "database" not in said:
        return _BY_SQLSTATE["28P01"]
    if "database" in said and "does not exist" in said:
        return _BY_SQLSTATE["3D000"]
    if "too many clients" in said or "remaining connection slots" in said:
        return _BY_SQLSTATE["53300"]
    if "server closed the connection" in said or "connection is closed" in said:
        return "the connection to the server was lost", (
            "the server restarted or the network failed: run the command again once the server"
            " answers; what was committed before is kept"
        )
    return "the server is unreachable", (
        f"check that PostgreSQL runs and listens where [store].url says ({server.split('/')[0]};"
        " `pg_isready -h HOST -p PORT` says whether it answers)"
    )


_AUTHENTICATION = (
    "authentication failed",
    f"check the user in [store].url and the password in {_PASSWORD_SOURCES} (never the"
    " settings file), and that pg_hba.conf lets this user in from here",
)
_LOCK_WAIT = (
    "a lock was held too long by another session (lock or statement timeout)",
    "another digest process, or a session (`SELECT * FROM pg_stat_activity`), holds what this"
    " command writes: run the command again once it has finished",
)
_SERIALIZATION = (
    "a serialization failure or deadlock with another process rolled this transaction back",
    "nothing of it was recorded: run the command again",
)

_BY_SQLSTATE: dict[str, tuple[str, str | None]] = {
    "28P01": _AUTHENTICATION,
    "28000": _AUTHENTICATION,
    "3D000": (
        "the database does not exist",
        "create it (`createdb -h HOST -p PORT -U USER NAME`, as in [store].url), or correct"
        " the database name in [store].url",
    ),
    "53100": (
        "the server's disk is full",
        "free space on the disk that holds the server's data directory (ask its"
        " administrator), then run the command again; what was recorded before is kept",
    ),
    "53300": (
        "the server has no connection slot left (max_connections)",
        "fewer digest processes at once, or a larger max_connections on the server",
    ),
    "40001": _SERIALIZATION,
    "40P01": _SERIALIZATION,
    "55P03": _LOCK_WAIT,
    "57014": _LOCK_WAIT,
    "25006": (
        "the store cannot be written (read-only)",
        "this command opened the store to read only; a command that writes refused here"
        " means the server is read-only (a standby: `SELECT pg_is_in_recovery()`, or"
        " default_transaction_read_only set for this user or database)",
    ),
    "25P02": (
        "the transaction was rolled back after an earlier failure in it",
        "nothing of it was recorded: run the command again; if it fails again, the first"
        " error says what to fix",
    ),
    "42501": (
        "the user may not do this (permission denied)",
        "grant the user of [store].url the rights on the database and its schema"
        " (`GRANT CREATE, USAGE ON SCHEMA ... TO ...`), or connect as the store's owner",
    ),
    "3F000": (
        "the schema to create the store in does not exist (search_path)",
        "create the schema, or correct search_path in the options of [store].url",
    ),
    "23505": ("it is recorded already (a unique key)", None),
    "57P01": (
        "the server shut down the connection",
        "run the command again once the server is back; what was committed before is kept",
    ),
    "08": (
        "the connection to the server was lost",
        "run the command again once the server answers; what was committed before is kept",
    ),
}


class Connection:
    """One store session on the server, through which every failure comes out explained:
    the one place where storage faults get their words, and where transactions begin and
    end. ``close`` gives the connection back to its pool."""

    def __init__(self, raw: psycopg.Connection[Any], server: str, pool: ConnectionPool) -> None:
        self.raw = raw
        self.server = server
        self._pool = pool

    def explain(self, exc: psycopg.Error) -> StoreError:
        return storage_error(self.server, exc)

    @contextmanager
    def explained(self) -> Iterator[None]:
        try:
            yield
        except psycopg.Error as exc:
            raise self.explain(exc) from exc

    def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> Any:
        """The cursor of ``sql`` run with ``parameters``; its rows are read already."""
        with self.explained():
            return self.raw.execute(sql.encode(), parameters or None)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        """Run ``sql`` once per row (pipelined); how many rows it changed in all."""
        with self.explained(), self.raw.cursor() as cursor:
            cursor.executemany(sql.encode(), rows)
            return cursor.rowcount

    def close(self) -> None:
        # Given back even when the server has closed it: the pool then makes a new one.
        with contextlib.suppress(psycopg.Error):
            self._pool.putconn(self.raw)

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """A transaction; nested calls become savepoints. A block whose transaction failed
        on the server (an error it went on after) commits nothing and raises at its end."""
        is_outer = self.raw.info.transaction_status == TransactionStatus.IDLE
        with self.explained(), self.raw.transaction():
            yield
            if is_outer and self.raw.info.transaction_status == TransactionStatus.INERROR:
                raise self.explain(pg_errors.InFailedSqlTransaction())


_pools: dict[str, ConnectionPool] = {}
_pools_lock = threading.Lock()


def open_connection(session: str) -> Connection:
    """A session (a ``session_conninfo``) from the process's pool for it: the pool is made,
    and the server asked, on first use."""
    server = server_name(session)
    pool = _pool(session, server)
    try:
        raw = pool.getconn()
    except PoolTimeout as exc:
        _probe(session, server)  # why, if the server says
        cause = f"all {POOL_SIZE} of this process's connections to the server are in use"
        raise StoreError(
            f"{server}: {cause}",
            cause=cause,
            hint="fewer stores open at once in this process (threads, --workers)",
        ) from exc
    return Connection(raw, server, pool)


def _pool(session: str, server: str) -> ConnectionPool:
    # One pool per server and kind of session, shared by the process's stores (as psycopg
    # advises), closed when the process ends.
    with _pools_lock:
        if pool := _pools.get(session):
            return pool
        _probe(session, server)  # the first failure in words, not a pool's timeout
        pool = ConnectionPool(
            session,
            kwargs={"autocommit": True},
            min_size=1,
            max_size=POOL_SIZE,
            open=True,
            check=ConnectionPool.check_connection,
            timeout=_CONNECT_TIMEOUT_SECONDS * 3,
            name=f"digest {server}",
        )
        _pools[session] = pool
        return pool


def _probe(session: str, server: str) -> None:
    try:
        psycopg.connect(session, autocommit=True).close()
    except psycopg.Error as exc:
        raise storage_error(server, exc) from exc


def connect_alone(session: str) -> psycopg.Connection[Any]:
    """A connection of its own, outside the pool (the send lock's: closing it releases it)."""
    try:
        return psycopg.connect(session, autocommit=True)
    except psycopg.Error as exc:
        raise storage_error(server_name(session), exc) from exc


@atexit.register
def close_pools() -> None:
    """Close every pool this process opened (at exit; tests, after each test)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()
