"""``digest feeds``: list, failures, add, import and export the feeds in the settings file.

As in cli.py, each command imports its use case in its own body (see the note there)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from digest import cli_output
from digest.cli_context import Group, load_command_settings, open_runtime, translate_errors


@click.group(cls=Group)
def feeds() -> None:
    """List, add, import and export the feeds in the settings file."""


@feeds.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@translate_errors
def feeds_list(as_json: bool) -> None:
    """Show how each feed is doing: status, stories, last success, last error."""
    from digest.feeds import feed_health

    settings = load_command_settings()
    with open_runtime(settings, "read") as runtime:
        health = feed_health(runtime)
    if as_json:
        click.echo(cli_output.health_json(health))
        return
    cli_output.print_health(health, settings.tz)


@feeds.command("failures")
@click.argument("url")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@translate_errors
def feeds_failures(url: str, limit: int) -> None:
    """Show a feed's most recent failures: when, what kind, and the message."""
    from digest.feeds import feed_failures

    settings = load_command_settings()
    with open_runtime(settings, "read") as runtime:
        source, failures = feed_failures(runtime, url, limit)
    cli_output.print_failures(source, failures, settings.tz)


@feeds.command("add")
@click.argument("url")
@click.option("--name", help="The source name shown in the digest (default: the feed's title).")
@click.option("--category", help="The section its stories appear in.")
@click.option("--no-check", is_flag=True, help="Add it without fetching it first.")
@translate_errors
def feeds_add(url: str, name: str | None, category: str | None, no_check: bool) -> None:
    """Add a feed to the settings file, once fetching and reading it has worked."""
    from digest.feeds import add_feed

    settings = load_command_settings()
    with open_runtime(settings, "update") as runtime:
        report = add_feed(runtime, url, name=name, category=category, check=not no_check)
    cli_output.print_added(report, settings.config_path)


@feeds.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--category", help="Put every imported feed in this category (not the file's).")
@click.option("--dry-run", is_flag=True, help="Show what would be added; change nothing.")
@translate_errors
def feeds_import(file: str, category: str | None, dry_run: bool) -> None:
    """Add the feeds an OPML file lists that are not configured yet; report the rest.

    Exits 1 if the file yielded no feed at all.
    """
    from digest.feeds import import_opml

    settings = load_command_settings()
    with open_runtime(settings, "read" if dry_run else "update") as runtime:
        report = import_opml(runtime, file, category=category, dry_run=dry_run)
    cli_output.print_import(report, file, settings.config_path, dry_run=dry_run)
    if not report.opml.feeds:
        sys.exit(1)


@feeds.command("export")
@click.option("--out", type=click.Path(dir_okay=False), help="Write here, not to standard output.")
@translate_errors
def feeds_export(out: str | None) -> None:
    """Write every configured feed as an OPML 2.0 file, one folder per category."""
    from digest.feeds import export_opml

    data = export_opml(load_command_settings())
    if out is None:
        click.echo(data, nl=False)
        return
    try:
        Path(out).write_bytes(data)
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror or exc}") from exc
    click.echo(f"wrote {out}")
