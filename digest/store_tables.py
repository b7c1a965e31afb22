"""The store's tables as ``digest store migrate`` copies them from one engine to another: which
tables and columns, their keys, and the kinds of values in them (no I/O here).

Values cross between engines as plain Python values of each column's ``Kind``: SQLite keeps
times and days as ISO-8601 text, flags as 0/1, lists as JSON text; PostgreSQL as
``timestamptz``, ``date``, ``boolean`` and ``text[]``. Each engine's ``TableRows``
(``digest.sqlite_tables``, ``digest.pg_tables``) converts its own to and from these.

What is not copied, and why, is in ``NOT_COPIED``: a table or column added by a migration
must be named in ``COPIED_TABLES`` or there (tests/test_store_migration.py checks both
engines' schemas), so no new data is left behind unnoticed.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Row = tuple[Any, ...]


class Kind(enum.Enum):
    """What a column holds, in both engines."""

    TEXT = "text"
    INTEGER = "integer"
    FLAG = "boolean"
    TIME = "timestamptz"  # an aware UTC datetime
    DAY = "date"
    STRINGS = "text[]"  # a tuple of str
    BYTES = "bytea"


@dataclass(frozen=True, slots=True, kw_only=True)
class CopiedTable:
    """A table copied row by row. ``key`` names a row: for a unique key, a row whose key the
    target holds already is kept as it is there; a history table (``is_unique_key`` false)
    has no unique key, and ``key`` is an indexed prefix of its columns under which rows are
    matched by all their values, as many times as the source holds them. ``same_store``:
    the columns that, differing under the same key, show the target holds another store's
    data (a refusal, not a merge). ``must_agree``: a row already there with other values
    fails the verification, since keeping it would undo what the source recorded (a delivery
    sent since, kept pending, would be sent again; a reader who left, kept active, mailed)."""

    name: str
    columns: tuple[tuple[str, Kind], ...]
    key: tuple[str, ...]
    is_unique_key: bool = True
    same_store: tuple[str, ...] = ()
    must_agree: bool = False
    # Worked out once: key_of runs for every row copied.
    column_names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _key_of: Callable[[Row], Row] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(name for name, _ in self.columns)
        object.__setattr__(self, "column_names", names)
        positions = [names.index(name) for name in self.key]
        object.__setattr__(self, "_key_of", lambda row: tuple(row[i] for i in positions))

    def kind(self, column: str) -> Kind:
        return dict(self.columns)[column]

    def key_of(self, row: Row) -> Row:
        return self._key_of(row)

    def same_store_values(self, row: Row) -> Row:
        return tuple(row[self.column_names.index(name)] for name in self.same_store)


TEXT, INTEGER, FLAG, TIME, DAY, STRINGS, BYTES = (
    Kind.TEXT,
    Kind.INTEGER,
    Kind.FLAG,
    Kind.TIME,
    Kind.DAY,
    Kind.STRINGS,
    Kind.BYTES,
)

# In copying order: an edition before its deliveries (the target's foreign key).
COPIED_TABLES: tuple[CopiedTable, ...] = (
    CopiedTable(
        name="feeds",
        columns=(
            ("url", TEXT),
            ("name", TEXT),
            ("fetch_url", TEXT),
            ("etag", TEXT),
            ("last_modified", TEXT),
            ("body_hash", TEXT),
            ("is_gone", FLAG),
            ("last_success_at", TIME),
            ("last_error_at", TIME),
            ("last_error", TEXT),
            ("last_error_kind", TEXT),
            ("ttl_minutes", INTEGER),
            ("not_before", TIME),
            ("hold_reason", TEXT),
        ),
        key=("url",),
    ),
    CopiedTable(
        name="feed_errors",
        columns=(("feed_url", TEXT), ("failed_at", TIME), ("kind", TEXT), ("message", TEXT)),
        key=("feed_url", "failed_at"),
        is_unique_key=False,
    ),
    CopiedTable(
        name="stories",
        columns=(
            ("story_id", TEXT),
            ("feed_url", TEXT),
            ("source_name", TEXT),
            ("category", TEXT),
            ("categories", STRINGS),
            ("url", TEXT),
            ("title", TEXT),
            ("published_at", TIME),
            ("author", TEXT),
            ("text", TEXT),
            ("html", TEXT),
            ("text_source", TEXT),
            ("is_deduped", FLAG),
            ("language", TEXT),
            ("image_url", TEXT),
            ("first_seen_at", TIME),
            ("edition_on", DAY),
        ),
        key=("story_id",),
    ),
    CopiedTable(
        name="editions",
        columns=(
            ("edition_on", DAY),
            ("subject", TEXT),
            ("html", TEXT),
            ("text", TEXT),
            ("created_at", TIME),
        ),
        key=("edition_on",),
        same_store=("subject", "created_at"),
    ),
    CopiedTable(
        name="deliveries",
        columns=(
            ("edition_on", DAY),
            ("address", TEXT),
            ("recipient", TEXT),
            ("message_id", TEXT),
            ("state", TEXT),
            ("attempts", INTEGER),
            ("sent_at", TIME),
            ("detail", TEXT),
            ("updated_at", TIME),
        ),
        key=("edition_on", "address"),
        same_store=("message_id",),
        must_agree=True,
    ),
    CopiedTable(
        name="articles",
        columns=(
            ("url", TEXT),
            ("fetched_at", TIME),
            ("text", TEXT),
            ("error", TEXT),
            ("image_url", TEXT),
        ),
        key=("url",),
    ),
    CopiedTable(
        name="summaries",
        columns=(("model_id", TEXT), ("text_hash", TEXT), ("summary", TEXT), ("created_at", TIME)),
        key=("model_id", "text_hash"),
    ),
    CopiedTable(
        name="embeddings",
        columns=(
            ("model_key", TEXT),
            ("text_hash", TEXT),
            ("dimensions", INTEGER),
            ("vector", BYTES),
            ("created_at", TIME),
        ),
        key=("model_key", "text_hash"),
    ),
    CopiedTable(
        name="job_runs",
        columns=(
            ("job", TEXT),
            ("started_at", TIME),
            ("finished_at", TIME),
            ("outcome", TEXT),
            ("summary", TEXT),
            ("failures", STRINGS),
            ("edition_on", DAY),
            ("scheduled_at", TIME),
        ),
        key=("job", "started_at"),
        is_unique_key=False,
    ),
    CopiedTable(
        name="subscribers",
        columns=(
            ("subscriber_id", TEXT),
            ("list_slug", TEXT),
            ("address", TEXT),
            ("name", TEXT),
            ("state", TEXT),
            ("created_at", TIME),
            ("state_changed_at", TIME),
            ("how", TEXT),
            ("reason", TEXT),
            ("bounce_count", INTEGER),
            ("last_bounce_on", DAY),
        ),
        key=("subscriber_id",),
        same_store=("list_slug", "address"),
        must_agree=True,
    ),
    # The web's limits count requests within a window: copied, so that a limit still holds
    # for the rest of its window after the move.
    CopiedTable(
        name="web_requests",
        columns=(("kind", TEXT), ("key", TEXT), ("at", TIME)),
        key=("kind", "key", "at"),
        is_unique_key=False,
    ),
)

# Tables and columns left behind on purpose, with the reason: a table's name, a column's
# ("table.column"), or a column name left behind in every table ("seq"). Transient state
# (a sender's lease on ledger rows, a collector's claim on a feed) belongs here: it is a
# live process's, and a process on the new store takes its own.
NOT_COPIED: dict[str, str] = {
    "migrations": "each engine's own schema history: the target is migrated by its own",
    "send_lock_holder": "who holds the send lock now: a live process's, never another store's",
    "seq": "PostgreSQL's insertion order: the target numbers rows as they are copied, in order",
    "deliveries.leased_by": "a running sender's lease: senders on the new store take their own",
    "deliveries.lease_until": "a running sender's lease, on the old store's clock",
    "feed_host_claims": "a running collector's claim on a host: collectors take their own",
    "summary_claims": "a running process's claim on a summary: the cache itself is copied",
}


class TableRows(Protocol):
    """One engine's store, table by table, row by row: what copying a whole store needs and
    nothing else (the ``Store`` protocol is records; this is rows, for this one use)."""

    location: str

    def count_rows(self, table: CopiedTable) -> int:
        """How many rows the table holds."""
        ...

    def read_rows(self, table: CopiedTable, batch_size: int) -> Iterator[Row]:
        """Every row, read ``batch_size`` at a time (never the whole table at once), ordered
        by key for a history table and in insertion order otherwise."""
        ...

    def rows_with_keys(self, table: CopiedTable, keys: Sequence[Row]) -> list[Row]:
        """The rows whose key is one of ``keys``."""
        ...

    def add_rows(self, table: CopiedTable, rows: Sequence[Row]) -> int:
        """Insert ``rows`` in one transaction, skipping any whose unique key is there
        already; how many were inserted."""
        ...

    def close(self) -> None: ...
