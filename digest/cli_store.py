"""``digest store``: the store itself, whichever engine holds it; ``migrate`` copies it to
another (SQLite to PostgreSQL, say).

As in cli.py, each command imports its use case in its own body (see the note there)."""

from __future__ import annotations

import click

from digest import cli_output
from digest.cli_context import Group, translate_errors


@click.group(cls=Group)
def store() -> None:
    """Move the store to another engine (SQLite, PostgreSQL)."""


@store.command("migrate")
@click.option("--from", "source", required=True, metavar="URL", help="The store to copy.")
@click.option("--to", "target", required=True, metavar="URL", help="The store to copy into.")
@translate_errors
def store_migrate(source: str, target: str) -> None:
    """Copy every feed state, story, edition, delivery, subscriber and cache to another
    store, then check that each source row is there; safe to run again.

    URLs: sqlite:///path/digest.db or postgresql://user@host:5432/database (the password
    from $PGPASSWORD, ~/.pgpass or a pg_service.conf service, never the URL). The target
    is created or migrated first; a target holding another store's data is refused."""
    from digest.store_migration import migrate_store

    try:
        migration = migrate_store(source, target)
    except KeyboardInterrupt:
        click.echo("\nstopped: the batches copied so far are kept; run the same command again"
                   " to copy the rest", err=True)  # fmt: skip
        raise
    cli_output.print_store_migration(migration)
    if disagreeing := [t.table for t in migration.tables if t.is_disagreeing]:
        raise click.ClickException(
            f"not verified: {', '.join(disagreeing)} in the target differ from the source"
            " (listed above): the old store was used after an earlier copy, and keeping the"
            " target's rows would send a delivery again or mail a reader who left; copy into"
            " a fresh database (drop the target's, or use a new one) with digest stopped"
        )
    if not migration.is_verified:
        missing = [t.table for t in migration.tables if not t.is_verified]
        raise click.ClickException(
            f"not verified: {', '.join(missing)} in the target lack rows of the source"
            " (the rows above marked MISSING); run it again, and if they stay missing, the"
            " target refused them for another unique key (a subscriber's list and address"
            " under another id, a day's missed edition recorded twice)"
        )
