"""``digest store migrate`` on real stores: a SQLite file filled by real sends (SMTP on
127.0.0.1, a bounce, a failing feed) and the Store API (caches, job runs, web limits, a held
feed), copied into a real PostgreSQL (tests/postgres.py) and back; a digest on the copy
carries on where the old store left off; a second run copies nothing; a copy cut short
completes when run again; another store's data in the target is refused; bad URLs are
errors in words."""

from __future__ import annotations

import sqlite3
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import psycopg
import pytest
import time_machine
from click.testing import CliRunner, Result

from digest.cli import cli
from digest.config import load_settings
from digest.models import (
    Article,
    CachedSummary,
    Delivery,
    DeliveryState,
    Embedding,
    JobRun,
    RenderedDigest,
    SubscriberState,
)
from digest.pg_tables import PostgresTables
from digest.runtime import Runtime
from digest.sqlite_migrations import MIGRATIONS
from digest.sqlite_store import SQLiteStore
from digest.sqlite_tables import SQLiteTables
from digest.store_migration import _batches, migrate_store
from digest.store_tables import COPIED_TABLES, NOT_COPIED, CopiedTable
from tests.conftest import FEEDS, write_settings
from tests.deliver_sink import Sink, running
from tests.postgres import with_schema

READERS = ("Ann <ann@example.org>", "bad@example.org", "cy@example.org")
FIRST_DAY = datetime(2024, 3, 1, 5, tzinfo=UTC)
NOW = datetime(2024, 3, 2, 9, tzinfo=UTC)
TABLES = [table.name for table in COPIED_TABLES]


def _config(folder: Path, port: int, store: dict[str, Any]) -> Path:
    folder.mkdir(exist_ok=True)
    return write_settings(
        folder,
        [
            {"url": str(FEEDS / "nasa.xml"), "name": "NASA"},
            {"url": str(FEEDS / "no-such-feed.xml"), "name": "Gone"},
        ],
        recipients=READERS,
        sections={
            "store": {"path": None, "url": None, **store},
            "render": {"empty_edition": "send"},
            "delivery": {"backend": "smtp"},
            "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "retries": 0,
                     "timeout_seconds": 5.0, "retry_backoff_seconds": 0.01},
        },
    )  # fmt: skip


def _digest(config: Path, *args: str, day: int = 1) -> Result:
    with time_machine.travel(FIRST_DAY + timedelta(days=day), tick=False):
        return CliRunner().invoke(cli, ["--config", str(config), *args])


def _migrate(source: str, target: str) -> Result:
    return CliRunner().invoke(cli, ["store", "migrate", "--from", source, "--to", target])


def _refuse_bad(address: str, attempt: int) -> str | None:
    return "550 5.1.1 User unknown" if address == "bad@example.org" else None


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    """An SMTP server on 127.0.0.1 that bounces bad@example.org; (it, its port)."""
    sink = Sink(on_rcpt=_refuse_bad)
    with running(sink) as port:
        yield sink, port


def _fill_by_use(config: Path) -> None:
    """Two editions sent over SMTP (one reader bounced, one feed failing), then what the
    sends leave out: caches, a job run, a web limit's count, a held feed."""
    for day, exit_code in ((0, 1), (1, 0)):  # the bounce is a failed delivery, then no more
        sent = _digest(config, "send", day=day)
        assert sent.exit_code == exit_code, sent.output
    with Runtime.open(load_settings(config)) as runtime:
        store = runtime.store
        store.save_summaries([CachedSummary(model_id="m", text_hash="sha256:a", text="Sum")], NOW)
        vector = Embedding(model_key="k", text_hash="sha256:a", dimensions=2, vector=b"\0" * 8)
        store.save_embeddings([vector], NOW)
        store.save_articles([Article(url="https://example.org/a", fetched_at=NOW, text="Body")])
        store.add_job_run(
            JobRun(job="collect", started_at=NOW, finished_at=NOW, outcome="ok", summary="1",
                   failures=("Gone: not found",))
        )  # fmt: skip
        assert store.take_allowance("subscribe", "1.2.3.4", NOW, window=timedelta(1), limit=5)
        store.hold_feed(str(FEEDS / "nasa.xml"), NOW + timedelta(hours=2), "Retry-After", 60)


def _printed_counts(output: str) -> dict[str, list[int]]:
    rows = (line.split() for line in output.splitlines())
    return {r[0]: [int(n) for n in r[1:5]] for r in rows if r and r[0] in TABLES}


def _views(config: Path) -> list[str]:
    """What the commands that read the store print of it."""
    return [
        _digest(config, "deliveries", "--date", "2024-03-02").output,
        _digest(config, "deliveries", "--date", "2024-03-01").output,
        _digest(config, "subscribers", "list", "--json").output,
        _digest(config, "feeds", "list", "--json").output,
        _digest(config, "feeds", "failures", str(FEEDS / "no-such-feed.xml")).output,
        _digest(config, "status", "--json").output,
    ]


@pytest.mark.postgres
def test_a_store_filled_by_use_moves_to_postgresql_and_digest_carries_on_there(
    tmp_path: Path, postgres_url: str, sink: tuple[Sink, int]
) -> None:
    smtp, port = sink
    old = _config(tmp_path / "old", port, {"path": "digest.db"})
    _fill_by_use(old)
    sqlite_url = f"sqlite:///{tmp_path / 'old' / 'digest.db'}"

    moved = _migrate(sqlite_url, postgres_url)

    assert moved.exit_code == 0, moved.output
    counts = _printed_counts(moved.output)
    assert set(counts) == set(TABLES)
    for table, (source_rows, copied, already_there, target_rows) in counts.items():
        assert source_rows > 0, f"{table}: the test leaves it empty, so it tests nothing"
        assert (copied, already_there, target_rows) == (source_rows, 0, source_rows), table
    assert "verified: all" in moved.output
    new = _config(tmp_path / "new", port, {"url": postgres_url})
    views = _views(old)
    assert "failed" in views[1] and '"bounced"' in views[2] and "no such file" in views[4]
    assert _views(new) == views
    accepted = len(smtp.accepted)
    again = _digest(new, "send", day=1)
    assert again.exit_code == 0, again.output
    assert len(smtp.accepted) == accepted  # the day's edition was sent: nothing twice
    assert "sent 0, failed 0, already sent 2, uncertain 0" in again.output


@pytest.mark.postgres
def test_a_second_run_copies_nothing_and_still_verifies(
    tmp_path: Path, postgres_url: str, sink: tuple[Sink, int]
) -> None:
    config = _config(tmp_path, sink[1], {"path": "digest.db"})
    _fill_by_use(config)
    sqlite_url = f"sqlite:///{tmp_path / 'digest.db'}"
    assert _migrate(sqlite_url, postgres_url).exit_code == 0

    again = _migrate(sqlite_url, postgres_url)

    assert again.exit_code == 0, again.output
    for table, (source_rows, copied, already_there, target_rows) in _printed_counts(
        again.output
    ).items():
        assert (copied, already_there, target_rows) == (0, source_rows, source_rows), table
    assert "kept as the target has them" not in again.output  # every value came over as it was


@pytest.mark.postgres
def test_a_reader_who_left_the_old_store_after_the_first_copy_fails_the_verification(
    tmp_path: Path, postgres_url: str
) -> None:
    path = tmp_path / "s.db"
    with SQLiteStore.open(path) as store:
        store.add_subscribers("main", [("ann@example.org", "Ann")], how="test", now=NOW)
    assert _migrate(f"sqlite:///{path}", postgres_url).exit_code == 0
    with SQLiteStore.open(path) as store:  # the old store used after the copy
        store.set_subscriber_state("main", "ann@example.org", SubscriberState.UNSUBSCRIBED,
                                   how="cli", now=NOW + timedelta(1))  # fmt: skip

    again = _migrate(f"sqlite:///{path}", postgres_url)

    assert again.exit_code == 1, again.output
    assert "kept as the target has them, though the source's differ:" in again.output
    assert "state 'unsubscribed' in the source, 'active' in the target" in again.output
    assert "DIFFERING 1" in again.output
    assert "not verified: subscribers in the target differ from the source" in again.output
    assert "copy into a fresh database" in again.output


@pytest.mark.postgres
def test_a_delivery_the_old_store_sent_after_the_first_copy_fails_the_verification(
    tmp_path: Path, postgres_url: str
) -> None:
    path = tmp_path / "s.db"
    pending = Delivery(edition_on=NOW.date(), recipient="ann@example.org",
                       message_id="<1@digest>", state=DeliveryState.PENDING)  # fmt: skip
    with SQLiteStore.open(path) as store:
        edition = RenderedDigest(edition_on=NOW.date(), subject="S", html="h", text="t")
        store.create_edition(edition, [], NOW)
        store.add_deliveries([pending], NOW)
    assert _migrate(f"sqlite:///{path}", postgres_url).exit_code == 0
    with SQLiteStore.open(path) as store:  # the old store sent it after the copy
        store.set_delivery_state(pending, DeliveryState.SENT, NOW + timedelta(hours=1), "250")

    again = _migrate(f"sqlite:///{path}", postgres_url)

    assert again.exit_code == 1, again.output
    assert "state 'sent' in the source, 'pending' in the target" in again.output
    assert "not verified: deliveries in the target differ from the source" in again.output


@pytest.mark.postgres
def test_a_copy_cut_short_completes_when_run_again(
    tmp_path: Path, postgres_url: str, sink: tuple[Sink, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, sink[1], {"path": "digest.db"})
    _fill_by_use(config)
    sqlite_url = f"sqlite:///{tmp_path / 'digest.db'}"
    batches = count()
    add_rows = PostgresTables.add_rows

    def interrupted(self: PostgresTables, table: CopiedTable, rows: Any) -> int:
        if next(batches) == 4:  # as if Ctrl-C (or a lost server) came in the fifth batch
            raise KeyboardInterrupt
        return add_rows(self, table, rows)

    monkeypatch.setattr(PostgresTables, "add_rows", interrupted)
    with pytest.raises(KeyboardInterrupt):
        migrate_store(sqlite_url, postgres_url, batch_size=2)
    monkeypatch.setattr(PostgresTables, "add_rows", add_rows)

    done = migrate_store(sqlite_url, postgres_url, batch_size=2)

    assert done.is_verified
    assert 0 < sum(t.already_there for t in done.tables) < sum(t.source_rows for t in done.tables)
    assert all(t.target_rows == t.source_rows for t in done.tables)


@pytest.mark.postgres
def test_postgresql_moves_back_to_a_new_sqlite_file(
    tmp_path: Path, postgres_url: str, sink: tuple[Sink, int]
) -> None:
    old = _config(tmp_path / "old", sink[1], {"path": "digest.db"})
    _fill_by_use(old)
    assert _migrate(f"sqlite:///{tmp_path / 'old' / 'digest.db'}", postgres_url).exit_code == 0

    back = _migrate(postgres_url, f"sqlite:///{tmp_path / 'back.db'}")

    assert back.exit_code == 0, back.output
    assert all(c == s for s, c, _, _ in _printed_counts(back.output).values())
    again = _config(tmp_path / "again", sink[1], {"path": str(tmp_path / "back.db")})
    assert _views(again) == _views(old)


@pytest.mark.postgres
def test_identical_rows_of_a_history_table_are_copied_as_many_times_as_they_are_there(
    tmp_path: Path, postgres_url: str
) -> None:
    with SQLiteStore.open(tmp_path / "s.db") as store:  # three requests in one instant
        for _ in range(3):
            store.take_allowance("subscribe", "1.2.3.4", NOW, window=timedelta(1), limit=9)
    source = f"sqlite:///{tmp_path / 's.db'}"

    first, second = (migrate_store(source, postgres_url, batch_size=2) for _ in range(2))

    counts = [next(t for t in m.tables if t.table == "web_requests") for m in (first, second)]
    assert [(c.copied, c.already_there, c.target_rows) for c in counts] == [(3, 0, 3), (0, 3, 3)]
    back = migrate_store(postgres_url, f"sqlite:///{tmp_path / 'back.db'}")
    assert next(t for t in back.tables if t.table == "web_requests").target_rows == 3


def _store_with_edition(path: Path, subject: str, created_at: datetime) -> str:
    with SQLiteStore.open(path) as store:
        rendered = RenderedDigest(edition_on=date(2024, 3, 1), subject=subject, html="h", text="t")
        store.create_edition(rendered, [], created_at)
    return f"sqlite:///{path}"


@pytest.mark.postgres
def test_a_target_holding_another_stores_edition_is_refused_and_nothing_is_copied(
    tmp_path: Path, postgres_url: str
) -> None:
    other = _store_with_edition(tmp_path / "other.db", "Other digest", NOW)
    assert _migrate(other, postgres_url).exit_code == 0
    ours = _store_with_edition(tmp_path / "ours.db", "Our digest", NOW + timedelta(1))
    with SQLiteStore.open(tmp_path / "ours.db") as store:
        store.add_subscribers("main", [("new@example.org", None)], how="test", now=NOW)

    refused = _migrate(ours, postgres_url)

    assert refused.exit_code == 1
    assert "holds another store's data" in refused.output
    assert "editions edition_on 2024-03-01: subject 'Our digest' in the source," in refused.output
    assert "'Other digest' in the target" in refused.output
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM subscribers").fetchone() == (0,)


@pytest.mark.postgres
def test_a_row_the_target_refuses_under_another_key_fails_the_verification(
    tmp_path: Path, postgres_url: str
) -> None:
    for name in ("one.db", "two.db"):  # the same address, each store its own subscriber id
        with SQLiteStore.open(tmp_path / name) as store:
            store.add_subscribers("main", [("ann@example.org", "Ann")], how="test", now=NOW)
    assert _migrate(f"sqlite:///{tmp_path / 'one.db'}", postgres_url).exit_code == 0

    clash = _migrate(f"sqlite:///{tmp_path / 'two.db'}", postgres_url)

    assert clash.exit_code == 1
    assert "MISSING 1" in clash.output
    assert "not verified: subscribers" in clash.output


@pytest.mark.parametrize(
    ("source", "target", "said"),
    [
        ("sqlite:///{tmp}/none.db", "sqlite:///{tmp}/t.db", "none.db: no such store file"),
        ("sqlite:///{tmp}/s.db", "postgresql://digest:secret@127.0.0.1/x", "has a password"),
        ("sqlite:///{tmp}/s.db", "mysql://127.0.0.1/x", "is not a store URL digest knows"),
        ("sqlite:///{tmp}/s.db", "sqlite://s.db", "three slashes"),
        ("sqlite:///{tmp}/s.db", "sqlite:///{tmp}/s.db", "name the same store"),
        ("sqlite:///{tmp}/old.db", "sqlite:///{tmp}/t.db", "2 migration(s) not applied"),
        ("sqlite:///{tmp}/s.db", "postgresql://postgres@127.0.0.1:1/x", "server is unreachable"),
    ],
)
def test_a_bad_url_or_source_is_an_error_in_words(
    tmp_path: Path, source: str, target: str, said: str
) -> None:
    SQLiteStore.open(tmp_path / "s.db").close()
    SQLiteStore.open(tmp_path / "old.db").close()
    old = sqlite3.connect(tmp_path / "old.db")  # as a store from before the last two migrations
    old.execute("DELETE FROM migrations WHERE name IN (?, ?)", [n for n, _ in MIGRATIONS[-2:]])
    old.commit()
    old.close()

    failed = _migrate(source.format(tmp=tmp_path), target.format(tmp=tmp_path))

    assert failed.exit_code == 1
    assert said in failed.output
    assert "secret" not in failed.output
    assert not (tmp_path / "t.db").exists()


def test_every_sqlite_table_and_column_is_copied_or_left_behind_by_name(tmp_path: Path) -> None:
    with SQLiteStore.open(tmp_path / "s.db"):
        pass
    conn = sqlite3.connect(tmp_path / "s.db")
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    found = {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")] for t in tables}
    _assert_copied_or_named(found)


@pytest.mark.postgres
def test_every_postgresql_table_and_column_is_copied_or_left_behind_by_name(
    tmp_path: Path, postgres_url: str
) -> None:
    SQLiteStore.open(tmp_path / "empty.db").close()
    migrate_store(f"sqlite:///{tmp_path / 'empty.db'}", postgres_url)
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema()"
        ).fetchall()
    found: dict[str, list[str]] = {}
    for table, column in rows:
        found.setdefault(table, []).append(column)
    _assert_copied_or_named(found)


def _assert_copied_or_named(found: dict[str, list[str]]) -> None:
    copied = {table.name: set(table.column_names) for table in COPIED_TABLES}
    for table, columns in found.items():
        if table in NOT_COPIED:
            continue
        assert table in copied, f"{table}: neither copied (COPIED_TABLES) nor in NOT_COPIED"
        left = {c for c in columns if not {c, f"{table}.{c}"} & set(NOT_COPIED)} - copied[table]
        assert not left, f"{table}: columns {sorted(left)} neither copied nor in NOT_COPIED"
        assert copied[table] <= set(columns), f"{table}: copies columns it does not have"
    assert set(copied) <= set(found)


def test_a_history_tables_rows_of_one_key_stay_in_one_batch_and_rows_stream() -> None:
    table = next(t for t in COPIED_TABLES if t.name == "job_runs")
    rows = [("collect", NOW, None)] * 3 + [("send", NOW, None)] * 2 + [("zz", NOW, None)]
    assert [len(b) for b in _batches(iter(rows), table, 2)] == [3, 2, 1]
    endless = ((f"job{n}", NOW, None) for n in count())  # never ends: read as it goes
    assert len(next(_batches(endless, table, 1000))) == 1000


def test_a_copy_streams_its_rows_and_never_holds_a_whole_table(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    with SQLiteStore.open(path) as store:
        store.add_subscribers(
            "main", [(f"reader{n}@example.org", f"Reader {n}") for n in range(20_000)],
            how="import", now=NOW,
        )  # fmt: skip
    tracemalloc.start()
    source = SQLiteTables.open_source(path)
    whole = list(source.read_rows(_table("subscribers"), 1000))
    whole_table = tracemalloc.get_traced_memory()[0]
    del whole
    source.close()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]

    copy = migrate_store(f"sqlite:///{path}", f"sqlite:///{tmp_path / 'copy.db'}")

    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    assert copy.is_verified
    assert next(t for t in copy.tables if t.table == "subscribers").copied == 20_000
    assert peak < whole_table / 4, f"the copy held {peak} bytes; the whole table is {whole_table}"


def _table(name: str) -> CopiedTable:
    return next(table for table in COPIED_TABLES if table.name == name)


@pytest.mark.postgres
def test_one_postgresql_store_copies_into_another_and_an_empty_one_is_no_source(
    tmp_path: Path, postgres_url: str, postgres_database: str
) -> None:
    with psycopg.connect(postgres_database, autocommit=True) as admin:
        admin.execute("CREATE SCHEMA IF NOT EXISTS other_store")
    other = with_schema(postgres_database, "other_store")
    nothing = _migrate(postgres_url, other)
    assert nothing.exit_code == 1
    assert "holds no digest store (no migrations table in its schema)" in nothing.output
    _store_with_edition(tmp_path / "s.db", "Our digest", NOW)
    assert _migrate(f"sqlite:///{tmp_path / 's.db'}", postgres_url).exit_code == 0

    copied = _migrate(postgres_url, other)

    assert copied.exit_code == 0, copied.output
    assert _printed_counts(copied.output)["editions"] == [1, 1, 0, 1]
