"""``digest web``: serve the readers' pages (subscribe, confirm, unsubscribe)."""

from __future__ import annotations

import click

from digest.cli_context import load_command_settings, translate_errors


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Listen on this address.")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8026, show_default=True, help="And port."
)
@translate_errors
def web(host: str, port: int) -> None:
    """Serve the subscribe form and the confirm and unsubscribe links (behind a reverse
    proxy at [web].base_url); the links are signed with $DIGEST_SECRET_KEY."""
    from digest.web import serve  # heavy: see the note at the top of cli.py

    settings = load_command_settings()
    public = settings.web.base_url

    def ready(url: str) -> None:
        where = f", public address {public}" if public else " ([web].base_url is not set)"
        click.echo(f"serving the readers' pages at {url}{where} (Ctrl-C to stop)", err=True)

    serve(settings, host=host, port=port, on_ready=ready)
