"""``digest subscribers``: list, add, remove, import and export the readers in the store.

As in cli.py, each command imports its use case in its own body (see the note there)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import tzinfo
from pathlib import Path
from typing import TYPE_CHECKING

import click

from digest.cli_context import Group, load_command_settings, open_runtime, translate_errors
from digest.cli_output import counted, local_time
from digest.models import Subscriber, SubscriberState

if TYPE_CHECKING:
    from digest.subscribers import Change, ImportReport


@click.group(cls=Group)
def subscribers() -> None:
    """List, add, remove, import and export the readers editions go to."""


@subscribers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@translate_errors
def subscribers_list(as_json: bool) -> None:
    """Show every subscriber: state, since when, how, and why (a bounce's server answer)."""
    from digest.subscribers import list_subscribers

    settings = load_command_settings()
    with open_runtime(settings, "read") as runtime:
        found, new = list_subscribers(runtime)
    if as_json:
        click.echo(json.dumps([_record(s) for s in found], indent=2, ensure_ascii=False))
        return
    _print_table(found, settings.tz)
    if new:
        addresses = counted(len(new), "address", "addresses")
        click.echo(f"{addresses} in the settings file, not in the store yet: the next send adds"
                   " them as active")  # fmt: skip


@subscribers.command("add")
@click.argument("address")
@translate_errors
def subscribers_add(address: str) -> None:
    """Make an address active ("Name <address>" sets the name), even one that left."""
    from digest.subscribers import add_subscriber

    settings = load_command_settings()
    with open_runtime(settings) as runtime:
        change = add_subscriber(runtime, address)
    now = change.subscriber
    if change.before is None:
        click.echo(f"added {now.address}: active")
    elif not change.is_changed:
        click.echo(f"{now.address} is already active")
    else:
        before = change.before
        click.echo(f"warning: {now.address} was {_since(before, settings.tz)}; they get"
                   " editions again: make sure they asked to", err=True)  # fmt: skip
        click.echo(f"{now.address}: active again")


@subscribers.command("remove")
@click.argument("address")
@translate_errors
def subscribers_remove(address: str) -> None:
    """Mark an address unsubscribed (kept, so no import or settings file brings it back)."""
    from digest.subscribers import remove_subscriber

    settings = load_command_settings()
    with open_runtime(settings) as runtime:
        change = remove_subscriber(runtime, address)
    click.echo(_removed(change, settings.tz))


@subscribers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--skip-bad", is_flag=True, help="Import the good lines even if some are bad.")
@translate_errors
def subscribers_import(file: Path, skip_bad: bool) -> None:
    """Add a CSV file's new addresses (columns email and, optionally, name) as active.

    Each bad line is reported with its number; any bad line imports nothing (exit 1),
    unless --skip-bad. Addresses the store knows keep their state.
    """
    from digest.subscribers import import_subscribers

    settings = load_command_settings()
    with open_runtime(settings) as runtime:
        report = import_subscribers(runtime, file, skip_bad=skip_bad)
    for problem in report.problems:
        click.echo(f"{file}: {problem}", err=True)
    if report.problems and not skip_bad:
        raise click.ClickException(
            f"{file}: {counted(len(report.problems), 'bad line')} of {report.lines}: nothing"
            " imported (fix them, or --skip-bad imports the good lines)"
        )
    click.echo(_imported(report, file))


@subscribers.command("export")
@click.option("--out", type=click.Path(dir_okay=False), help="Write here, not to standard output.")
@translate_errors
def subscribers_export(out: str | None) -> None:
    """Write every subscriber as CSV: address, name, state, since, how, reason, bounces."""
    from digest.subscribers import export_subscribers

    with open_runtime(load_command_settings(), "read") as runtime:
        data = export_subscribers(runtime)
    if out is None:
        click.echo(data, nl=False)
        return
    try:
        Path(out).write_text(data, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror or exc}") from exc
    click.echo(f"wrote {out}", err=True)


def _since(subscriber: Subscriber, tz: tzinfo) -> str:
    at = local_time(subscriber.state_changed_at, tz)
    return f"{subscriber.state} since {at} ({subscriber.how})"


def _why(subscriber: Subscriber) -> str:
    if subscriber.reason:
        return subscriber.reason
    if subscriber.state is SubscriberState.ACTIVE and subscriber.bounce_count:
        return f"refused {counted(subscriber.bounce_count, 'edition')} in a row"
    return ""


def _print_table(found: Sequence[Subscriber], tz: tzinfo) -> None:
    if not found:
        click.echo("no subscribers in the store")
        return
    width = max(len(s.address) for s in found)
    click.echo(f"{'ADDRESS':<{width}}  {'STATE':<12}  {'SINCE':<16}  {'HOW':<9}  WHY")
    for s in found:
        since = local_time(s.state_changed_at, tz)
        line = f"{s.address:<{width}}  {s.state:<12}  {since:<16}  {s.how:<9}  {_why(s)}"
        click.echo(line.rstrip())


def _record(s: Subscriber) -> dict[str, object]:
    return {
        "id": s.subscriber_id,
        "address": s.address,
        "name": s.name,
        "state": str(s.state),
        "since": s.state_changed_at.isoformat(),
        "how": s.how,
        "reason": s.reason,
        "bounces": s.bounce_count,
        "created_at": s.created_at.isoformat(),
    }


def _removed(change: Change, tz: tzinfo) -> str:
    now = change.subscriber
    if change.before is None:
        return (f"{now.address} was not a subscriber: recorded as unsubscribed, so neither the"
                " settings file nor an import can add it")  # fmt: skip
    if not change.is_changed:
        return f"{now.address} already gets no mail: {_since(now, tz)}"
    return f"{now.address}: unsubscribed (kept in the store, so no import brings it back)"


def _imported(report: ImportReport, file: Path) -> str:
    parts = [f"imported {counted(report.added, 'new subscriber')} from {file}"]
    known = sum(report.kept.values())
    if known:
        states = ", ".join(f"{n} {state}" for state, n in sorted(report.kept.items()))
        parts.append(f"{counted(known, 'address', 'addresses')} already known, kept as they are"
                     f" ({states})")  # fmt: skip
    if report.problems:
        parts.append(f"skipped {counted(len(report.problems), 'bad line')}")
    return "; ".join(parts)
