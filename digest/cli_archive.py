"""``digest archive build DIR``: the public archive as static files (``digest.archive_build``)."""

from __future__ import annotations

from pathlib import Path

import click

from digest.cli_context import Group, load_command_settings, open_runtime, translate_errors


@click.group(cls=Group)
def archive() -> None:
    """The public archive of past editions, for static hosting."""


@archive.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@translate_errors
def build(directory: Path) -> None:
    """Write DIR/archive/index.html, DIR/archive/YYYY-MM-DD/index.html and DIR/feed.atom,
    the pages `digest web` serves, linked at [web].base_url (serve DIR there). Each file is
    replaced atomically; nothing else in DIR is touched."""
    from digest.archive_build import build_archive  # heavy: see the note at the top of cli.py

    settings = load_command_settings()
    with open_runtime(settings, access="read") as runtime:
        written = build_archive(runtime, directory)
    click.echo(f"wrote {len(written)} files under {directory}", err=True)
