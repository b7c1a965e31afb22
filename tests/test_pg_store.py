"""What is particular to the PostgreSQL store, on a real server (tests/postgres.py): a whole
send through it from a settings file, its failures in words, its read-only sessions, its
migrations run once by processes starting together, and its send lock released when the
holder's process dies. The Store protocol itself is tested on it by tests/test_store.py."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

import psycopg
import pytest
from psycopg import errors as pg_errors

from digest.config import load_settings
from digest.errors import StoreError
from digest.models import FeedSource, FetchResult, JobRun, SendLockHolder
from digest.pg_connection import server_name, storage_error
from digest.pg_migrations import MIGRATIONS
from digest.pg_store import PostgresStore
from digest.runtime import Runtime
from tests.conftest import FEEDS, REPO, free_port, write_settings
from tests.postgres import SERVER_URL, with_database

NOW = datetime(2024, 3, 1, 6, tzinfo=UTC)


def _digest(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    return subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )


def _settings_file(folder: Path, url: str) -> Path:
    feeds = [{"url": str(FEEDS / "nasa.xml"), "name": "NASA"}]
    return write_settings(folder, feeds, sections={"store": {"path": None, "url": url}})


def _rows(url: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query.encode()).fetchall()


@pytest.mark.postgres
def test_a_runtime_from_a_postgresql_url_collects_and_sends_through_it(
    tmp_path: Path, postgres_url: str
) -> None:
    config = _settings_file(tmp_path, postgres_url)
    checked = _digest(config, "check")
    assert checked.returncode == 0, checked.stderr
    assert f"store: PostgreSQL {_server_version()}" in checked.stdout
    assert "no store yet" in checked.stdout  # check writes nothing, not even the tables
    sent = _digest(config, "send")
    assert sent.returncode == 0, sent.stderr
    messages = sorted((tmp_path / "outbox").glob("*.eml"))
    recipients = {message_from_bytes(m.read_bytes(), policy=policy.default)["To"] for m in messages}
    assert recipients == {"reader@example.org", "Second <second@example.org>"}
    ledger = _rows(postgres_url, "SELECT address, state, message_id FROM deliveries ORDER BY seq")
    assert [(a, s) for a, s, _ in ledger] == [
        ("reader@example.org", "sent"),
        ("second@example.org", "sent"),
    ]
    assert _rows(postgres_url, "SELECT count(*) FROM stories")[0][0] > 0
    assert not list(tmp_path.glob("*.db*"))  # no SQLite file beside the settings
    again = _digest(config, "send")
    assert again.returncode == 0, again.stderr
    assert sorted((tmp_path / "outbox").glob("*.eml")) == messages  # exactly once
    checked = _digest(config, "check")
    assert "1 migration applied, pending: none" in checked.stdout


def _server_version() -> str:
    return str(_rows(SERVER_URL, "SHOW server_version")[0][0])


@pytest.mark.postgres
def test_a_read_only_runtime_on_postgresql_reads_and_refuses_every_write(
    tmp_path: Path, postgres_url: str
) -> None:
    settings = load_settings(_settings_file(tmp_path, postgres_url))
    run = JobRun(job="collect", started_at=NOW, finished_at=NOW, outcome="ok", summary="-")
    with Runtime.open(settings, access="read") as runtime:  # no tables yet: an empty store
        assert runtime.store.is_read_only and runtime.store.last_activity() is None
    assert _rows(postgres_url, "SELECT to_regclass('migrations')") == [(None,)]
    with Runtime.open(settings) as runtime:
        runtime.store.add_job_run(run)
    with Runtime.open(settings, access="read") as runtime:
        assert isinstance(runtime.store, PostgresStore) and runtime.mailers is None
        assert runtime.store.last_activity() == NOW
        with pytest.raises(StoreError, match=r"read-only") as refused:
            runtime.store.add_job_run(run)
    assert refused.value.message.startswith(settings.store.location)
    assert _rows(postgres_url, "SELECT count(*) FROM job_runs") == [(1,)]


@pytest.mark.postgres
@pytest.mark.postgres
def test_update_writes_an_existing_postgresql_store_and_never_creates_one(
    tmp_path: Path, postgres_url: str
) -> None:
    settings = load_settings(_settings_file(tmp_path, postgres_url))
    with Runtime.open(settings, access="update") as runtime:
        assert runtime.store.is_read_only
    assert _rows(postgres_url, "SELECT to_regclass('migrations')") == [(None,)]
    with Runtime.open(settings):
        pass
    with Runtime.open(settings, access="update") as runtime:
        assert isinstance(runtime.store, PostgresStore) and not runtime.store.is_read_only
        runtime.store.add_job_run(_job_run())


@pytest.mark.parametrize(
    ("where", "cause"),
    [
        ("unreachable", "the server is unreachable"),
        ("no_database", "the database does not exist"),
        ("no_role", "authentication failed"),
    ],
)
def test_a_server_that_cannot_be_used_is_one_store_error_in_words(where: str, cause: str) -> None:
    url = {
        "unreachable": f"postgresql://postgres@127.0.0.1:{free_port()}/test",
        "no_database": with_database(SERVER_URL, "digest_no_such_database"),
        "no_role": SERVER_URL.replace("postgres@", "digest_no_such_role@", 1),
    }[where]
    with pytest.raises(StoreError) as failed:
        PostgresStore.open(url)
    assert failed.value.cause == cause and failed.value.hint
    assert failed.value.message.startswith(f"{server_name(url)}: {cause}")


def test_a_send_to_an_unreachable_server_fails_in_words_without_a_traceback(
    tmp_path: Path,
) -> None:
    config = _settings_file(tmp_path, f"postgresql://digest@127.0.0.1:{free_port()}/news")
    done = _digest(config, "send")
    assert done.returncode == 1
    assert "the server is unreachable" in done.stderr and "pg_isready" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "outbox").exists()


def test_a_password_in_the_settings_is_refused_before_any_connection(tmp_path: Path) -> None:
    config = _settings_file(tmp_path, "postgresql://postgres:s3cret@127.0.0.1:5432/test")
    done = _digest(config, "check")
    assert done.returncode == 2
    assert "never the settings file" in done.stderr and "s3cret" not in done.stderr


@pytest.mark.postgres
def test_processes_opening_a_new_store_at_once_migrate_it_once(postgres_url: str) -> None:
    starting = threading.Barrier(4)
    failures: list[BaseException] = []

    def open_store() -> None:
        starting.wait()
        try:
            PostgresStore.open(postgres_url).close()
        except BaseException as exc:  # noqa: BLE001 - reported below, by the test
            failures.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    applied = _rows(postgres_url, "SELECT name FROM migrations")
    assert applied == [(name,) for name, _ in MIGRATIONS]


_HOLD_THE_SEND_LOCK = """
import sys, time
from digest.pg_store import PostgresStore
with PostgresStore.open(sys.argv[1]) as store, store.send_lock(wait_seconds=0):
    print("holding", flush=True)
    time.sleep(600)
"""


@pytest.mark.postgres
def test_the_send_lock_names_its_holder_and_dies_with_its_process(postgres_url: str) -> None:
    command = [sys.executable, "-c", _HOLD_THE_SEND_LOCK, postgres_url]
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
            _wait_for_the_holder_then_outlive_it(postgres_url, holder)
        finally:
            holder.kill()


def _wait_for_the_holder_then_outlive_it(url: str, holder: subprocess.Popen[str]) -> None:
    told: list[SendLockHolder] = []
    with PostgresStore.open(url) as store:
        still = rf"pid {holder.pid}\) is still sending"
        with (
            pytest.raises(StoreError, match=still),
            store.send_lock(wait_seconds=0, on_wait=told.append),
        ):
            pass
        assert [h.pid for h in told] == [holder.pid]
        assert told[0].command == shlex.join(["digest", url])  # as `python -c` saw its argv
        holder.kill()
        holder.wait()
        with store.send_lock(wait_seconds=30) as is_locked:  # the server let it go
            assert is_locked


def _job_run(job: str = "collect") -> JobRun:
    return JobRun(job=job, started_at=NOW, finished_at=NOW, outcome="ok", summary="-")


@pytest.mark.postgres
def test_a_lock_held_too_long_by_another_session_is_a_store_error_in_words(
    postgres_url: str,
) -> None:
    PostgresStore.open(postgres_url).close()
    with psycopg.connect(postgres_url) as other, other.transaction():
        other.execute("LOCK TABLE job_runs IN ACCESS EXCLUSIVE MODE")
        store = PostgresStore.open(postgres_url, lock_timeout=0.2)
        with store, pytest.raises(StoreError) as failed:
            store.add_job_run(_job_run())
    assert failed.value.cause.startswith("a lock was held too long by another session")
    assert "pg_stat_activity" in str(failed.value)
    with PostgresStore.open(postgres_url) as store:  # once it is let go, the write goes in
        store.add_job_run(_job_run())
        assert store.job_runs("collect") == (_job_run(),)


@pytest.mark.postgres
def test_a_connection_the_server_drops_is_an_error_in_words_and_the_next_store_works(
    postgres_url: str,
) -> None:
    with PostgresStore.open(postgres_url) as store:
        _rows(
            postgres_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        with pytest.raises(StoreError) as failed:
            store.add_job_run(_job_run())
    assert "the server" in failed.value.cause and "run the command again" in str(failed.value)
    with PostgresStore.open(postgres_url) as store:  # the pool made a new connection
        store.add_job_run(_job_run())
        assert store.last_activity() == NOW


@pytest.mark.postgres
def test_a_deadlock_between_two_stores_rolls_one_back_with_a_store_error_in_words(
    postgres_url: str,
) -> None:
    feeds = [FeedSource(url=f"https://{n}.example/feed") for n in "ab"]
    with PostgresStore.open(postgres_url) as store:
        for source in feeds:
            store.record_fetch(FetchResult(source=source, fetched_at=NOW, status=200))
    both_hold_one = threading.Barrier(2)
    failures: list[StoreError] = []

    def hold_both(first: FeedSource, second: FeedSource) -> None:
        with PostgresStore.open(postgres_url) as store:
            try:
                with store.atomic():
                    store.hold_feed(first.url, NOW, "first", None)
                    both_hold_one.wait()
                    store.hold_feed(second.url, NOW, "second", None)
            except StoreError as exc:
                failures.append(exc)

    threads = [threading.Thread(target=hold_both, args=pair) for pair in (feeds, feeds[::-1])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [failure] = failures  # the server broke the deadlock by rolling one back
    assert failure.cause.startswith("a serialization failure or deadlock")
    assert "run the command again" in str(failure)
    with PostgresStore.open(postgres_url) as store:  # the other went on and committed
        states = [store.feed_state(source.url) for source in feeds]
    assert sorted(state.hold_reason for state in states if state) == ["first", "second"]


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (pg_errors.DiskFull("could not extend file"), "the server's disk is full"),
        (pg_errors.SerializationFailure("could not serialize"), "a serialization failure"),
        (pg_errors.LockNotAvailable("canceling statement"), "a lock was held too long"),
        (pg_errors.ReadOnlySqlTransaction("read-only"), "the store cannot be written"),
        (pg_errors.InvalidPassword("password authentication"), "authentication failed"),
        (pg_errors.InvalidCatalogName('database "x" does not exist'), "the database does not"),
        (pg_errors.AdminShutdown("terminating connection"), "the server shut down"),
    ],
)
def test_each_server_failure_the_server_can_send_has_its_words(
    error: psycopg.Error, cause: str
) -> None:
    # The ones a test cannot make happen on a shared server (a full disk), by their SQLSTATE.
    explained = storage_error("db.example.org:5432/news", error)
    assert explained.cause.startswith(cause) and explained.hint
    assert explained.message.startswith(f"db.example.org:5432/news: {cause}")
