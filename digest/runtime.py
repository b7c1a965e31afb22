"""Runtime: what one command or one daemon job works with, opened once and closed at its end.

A ``Runtime`` holds the settings, the store (one connection; a SQLite connection must not
cross threads, so each daemon job opens its own runtime; a PostgreSQL one comes from the
process's pool), the clock, the summarizer and the
encoder (built on first use; their models load once per process) and, for a runtime that may
write, the mail backend's factory. The SMTP password is read here, once, from the environment.

How the store is opened (``access``):

The store is the SQLite file ``[store].path``, or the PostgreSQL database ``[store].url``:

- ``write``: opened for reading and writing, created and migrated if needed;
- ``read``: read-only, so nothing can be written, and no mailer factory (``digest preview``,
  ``status``, ``send --dry-run``). Where there is no store yet (no file, no tables), an
  empty read-only store stands in: the use cases never branch on "no store";
- ``update``: for commands that only change what is stored already (``digest feeds add``
  reviving a feed): writable if the store exists, else as ``read``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import socket
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from digest.config import Settings, SummarizeSettings
from digest.rate_limits import Sleep, real_sleep
from digest.sqlite_store import SQLiteStore
from digest.store import Store

if TYPE_CHECKING:
    from digest.dedupe import Encoder
    from digest.mailers import Mailer
    from digest.summarize import Summarizer

Clock = Callable[[], datetime]
StoreAccess = Literal["read", "write", "update"]


def utc_now() -> datetime:
    return datetime.now(UTC)


def claim_holder() -> str:
    """This process's name in the store's work claims (``digest.store.WorkClaims``): its
    machine and process id, for people to read, and a random part, as process ids are
    reused and machines' names need not differ."""
    return _claim_holder(os.getpid())


@functools.cache
def _claim_holder(pid: int) -> str:
    # Keyed by the process id, so that a forked child is not taken for its parent.
    return f"{socket.gethostname()}:{pid}:{secrets.token_hex(3)}"


def drop_ended_holders(store: Store) -> None:
    """Give up the claims of holders on this machine whose process has ended (killed, or its
    store failed before it could give them up), rather than wait for their leases to run
    out. Machines are told apart by name: each needs its own."""
    for holder in store.claim_holders():
        if _has_ended(holder):
            store.drop_claims(holder)


def _has_ended(holder: str) -> bool:
    machine, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if machine != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, as another user's
        return False
    return False


class Runtime:
    """One command's (or daemon job's) settings, store, clock, models and mail backend.

    Build it with ``Runtime.open``; ``mailers`` is None for a read-only store."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        clock: Clock = utc_now,
        sleep: Sleep = real_sleep,
        access: StoreAccess = "write",
        mailers: MailerFactory | None = None,
        summarizer: Summarizer | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.sleep = sleep  # the rate limits' waits: with the clock, tests make them instant
        self.mailers = mailers
        self._access = access
        self._summarizer = summarizer
        self._encoder: Encoder | None = None

    @classmethod
    @contextlib.contextmanager
    def open(
        cls,
        settings: Settings,
        *,
        access: StoreAccess = "write",
        clock: Clock = utc_now,
        sleep: Sleep = real_sleep,
        summarizer: Summarizer | None = None,
    ) -> Iterator[Runtime]:
        """Open the store as ``access`` says, for the block; ``summarizer`` replaces the
        configured one (tests)."""
        with _opened_store(settings, access) as store:
            mailers = None if store.is_read_only else MailerFactory(settings, read_smtp_password())
            yield cls(
                settings,
                store,
                clock=clock,
                sleep=sleep,
                access=access,
                mailers=mailers,
                summarizer=summarizer,
            )

    def reopen(self) -> contextlib.AbstractContextManager[Runtime]:
        """A runtime like this one with its own store connection, for another thread."""
        return Runtime.open(
            self.settings,
            access=self._access,
            clock=self.clock,
            sleep=self.sleep,
            summarizer=self._summarizer,
        )

    @property
    def summarizer(self) -> Summarizer:
        """The configured summarizer, built on first use (its model once per process)."""
        if self._summarizer is None:
            self._summarizer = configured_summarizer(self.settings.summarize)
        return self._summarizer

    @property
    def encoder(self) -> Encoder:
        """The sentence encoder behind the store's embedding cache: its model loads only for
        a text not embedded before (and then once per process)."""
        if self._encoder is None:
            from digest.embeddings import CachedEncoder  # numpy: not for the light commands

            self._encoder = CachedEncoder(self.store, self.clock)
        return self._encoder


# Keyed by the (frozen) settings: the daemon's jobs share one loaded model, and a changed
# setting gets its own.
@functools.cache
def configured_summarizer(settings: SummarizeSettings) -> Summarizer:
    """The summarizer named in ``[summarize]``, built once per process."""
    from digest.plugins import make_plugin_manager, summarizer_factories
    from digest.summarize import load_summarizer

    return load_summarizer(settings, summarizer_factories(make_plugin_manager()))


def read_smtp_password() -> str | None:
    """The SMTP password, from the environment: the one place digest reads a secret."""
    from digest.smtp_mailer import PASSWORD_ENV_VAR

    return os.environ.get(PASSWORD_ENV_VAR)


class MailerFactory:
    """Builds the mail backend ``[delivery].backend`` names, with the password read when the
    runtime opened."""

    def __init__(self, settings: Settings, password: str | None) -> None:
        self._settings = settings
        self._password = password

    def require_usable(self) -> None:
        """Raise a ConfigError (exit 2) if the mail settings cannot work, without the network."""
        from digest.preflight import require_usable_mailer

        require_usable_mailer(self._settings, self._password)

    def __call__(self) -> Mailer:
        """A new backend (the caller closes it)."""
        from digest.mailers import OutboxMailer, SendmailMailer

        delivery = self._settings.delivery
        if delivery.backend == "smtp":
            return self._smtp_mailer()
        if delivery.backend == "sendmail":
            return SendmailMailer(delivery.sendmail_command)
        return OutboxMailer(delivery.outbox)

    def _smtp_mailer(self) -> Mailer:
        from digest.errors import DeliveryError
        from digest.smtp_mailer import PASSWORD_ENV_VAR, SmtpMailer

        smtp = self._settings.smtp
        if smtp.username and not self._password:
            raise DeliveryError(
                f"[smtp].username is set to {smtp.username!r} but ${PASSWORD_ENV_VAR} is not",
                hint=f"export {PASSWORD_ENV_VAR}=... in the environment digest runs in",
            )
        return SmtpMailer(
            host=smtp.host,
            port=smtp.port,
            security=smtp.security,
            username=smtp.username,
            password=self._password,
            timeout=smtp.timeout_seconds,
            ca_file=smtp.ca_file,
            per_connection=smtp.max_messages_per_connection,
            retries=smtp.retries,
            backoff_seconds=smtp.retry_backoff_seconds,
        )


def _opened_store(
    settings: Settings, access: StoreAccess
) -> contextlib.AbstractContextManager[Store]:
    """The store as ``access`` says (see the module docstring); closed at the block's end."""
    if settings.store.url is not None:
        return _opened_postgres_store(
            settings.store.url, settings.store.busy_timeout_seconds, access
        )
    path, timeout = settings.store.path, settings.store.busy_timeout_seconds
    if access == "write" or (access == "update" and path.exists()):
        return SQLiteStore.open(path, busy_timeout=timeout)
    store = SQLiteStore.open_read_only(path, busy_timeout=timeout)
    return store if store is not None else _empty_store(timeout)


def _opened_postgres_store(
    url: str, lock_timeout: float, access: StoreAccess
) -> contextlib.AbstractContextManager[Store]:
    """The PostgreSQL store as ``access`` says: a database whose store has no tables yet is
    read as an empty store, as a SQLite file that does not exist yet is."""
    from digest.pg_store import PostgresStore  # psycopg: only for a PostgreSQL store

    if access == "write":
        return PostgresStore.open(url, lock_timeout=lock_timeout)
    store = PostgresStore.open_read_only(url, lock_timeout=lock_timeout)
    if store is None:
        return _empty_store(lock_timeout)
    if access == "update":
        store.close()
        return PostgresStore.open(url, lock_timeout=lock_timeout)
    return store


@contextlib.contextmanager
def _empty_store(busy_timeout: float) -> Iterator[Store]:
    """An empty read-only store, in a temporary folder: what a read-only command sees before
    the first collect made the real one (which it must not create)."""
    with tempfile.TemporaryDirectory(prefix="digest-empty-store-") as folder:
        path = Path(folder) / "empty.db"
        SQLiteStore.open(path, busy_timeout=busy_timeout).close()
        store = SQLiteStore.open_read_only(path, busy_timeout=busy_timeout)
        if store is None:  # just made: cannot happen
            raise FileNotFoundError(path)
        with store:
            yield store
