"""The command line: each command loads the settings, makes one pipeline call, and prints.

Exit codes: 0 success; 1 a failure a cron job must notice (every feed failed, a delivery
failed or is uncertain, a check found problems); 2 usage or config errors.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import tempfile
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import click

from digest import __version__, pipeline, schedule
from digest.config import Settings, find_config_path, load_settings
from digest.errors import ConfigError, DigestError
from digest.models import DeliveryState

P = ParamSpec("P")
R = TypeVar("R")


def _translate_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Print a DigestError as one clear message (a traceback only with --debug)."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except DigestError as exc:
            if click.get_current_context().find_root().params.get("debug"):
                raise
            error_class = (
                _ConfigClickError if isinstance(exc, ConfigError) else click.ClickException
            )
            raise error_class(str(exc)) from exc

    return wrapper


class _ConfigClickError(click.ClickException):
    exit_code = 2


def _settings() -> Settings:
    params = click.get_current_context().find_root().params
    return load_settings(find_config_path(params.get("config")))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="digest")
@click.option(
    "--config",
    "-c",
    type=click.Path(dir_okay=False),
    help="Settings file (default: $DIGEST_CONFIG, then ./settings.toml).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
def cli(config: str | None, debug: bool) -> None:
    """digest: a daily newsletter digest of your feeds, summarised by a local model."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@cli.command()
@_translate_errors
def collect() -> None:
    """Fetch every feed once and store the new stories."""
    report = pipeline.collect_once(_settings(), schedule.utc_now)
    _print_collect(report)
    if report.all_failed:
        sys.exit(1)


def _print_collect(report: pipeline.CollectReport) -> None:
    width = max([len(f.name) for f in report.feeds] + [4])
    click.echo(f"{'feed':<{width}}  {'status':<9}  {'new':>4}  detail")
    for feed in report.feeds:
        line = f"{feed.name:<{width}}  {feed.status:<9}  {feed.new_stories:>4}  {feed.error or ''}"
        click.echo(line.rstrip())
    ok = len(report.feeds) - len(report.failed)
    click.echo(
        f"{len(report.feeds)} feeds: {ok} read, {len(report.failed)} failed; "
        f"{report.new_stories} new stories"
    )


@cli.command()
@click.option("--out", "out", type=click.Path(dir_okay=False), help="Write the HTML here.")
@click.option("--open", "open_browser", is_flag=True, help="Open the HTML in a browser.")
@click.option("--text", "as_text", is_flag=True, help="Print the plain-text part instead.")
@click.option(
    "--collect/--no-collect",
    default=True,
    show_default=True,
    help="Fetch the feeds first (in memory: nothing is stored).",
)
@_translate_errors
def preview(out: str | None, open_browser: bool, as_text: bool, collect: bool) -> None:
    """Render today's edition as it would be sent. Never sends, never writes to the store."""
    rendered = pipeline.preview_edition(_settings(), schedule.utc_now, collect=collect)
    if as_text:
        click.echo(rendered.text, nl=False)
        return
    path = Path(out) if out else _temp_html_path()
    try:
        path.write_text(rendered.html, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from exc
    click.echo(f"subject: {rendered.subject}")
    click.echo(f"wrote {path}")
    if open_browser:
        webbrowser.open(path.resolve().as_uri())


def _temp_html_path() -> Path:
    handle, name = tempfile.mkstemp(prefix="digest-", suffix=".html")
    os.close(handle)
    return Path(name)


@cli.command()
@click.option("--dry-run", is_flag=True, help="Show what would be sent; send and store nothing.")
@click.option(
    "--collect/--no-collect", default=True, show_default=True, help="Fetch the feeds first."
)
@_translate_errors
def send(dry_run: bool, collect: bool) -> None:
    """Build today's edition and deliver it to every recipient, once."""
    settings = _settings()
    if dry_run:
        _print_plan(pipeline.plan_edition(settings, schedule.utc_now))
        return
    report = pipeline.send_edition(settings, schedule.utc_now, collect=collect)
    _print_send(report)
    if not report.ok:
        sys.exit(1)


_STATE_LABELS = {
    DeliveryState.PENDING: "not sent yet",
    DeliveryState.SENDING: "uncertain (may have been delivered; not resent)",
    DeliveryState.SENT: "sent",
    DeliveryState.FAILED: "failed",
}


def _print_plan(plan: pipeline.SendReport) -> None:
    if plan.rendered is None:
        click.echo(f"edition {plan.edition_on}: no new stories stored; nothing would be sent")
        return
    click.echo(f"edition {plan.edition_on}: {plan.rendered.subject}")
    for delivery in plan.deliveries:
        action = "already sent" if delivery.state is DeliveryState.SENT else "would send"
        if delivery.state is DeliveryState.SENDING:
            action = "uncertain, would not resend"
        click.echo(f"  {delivery.recipient}: {action}")


def _print_send(report: pipeline.SendReport) -> None:
    if report.collect is not None:
        _print_collect(report.collect)
    if report.rendered is None:
        click.echo(f"edition {report.edition_on}: no new stories since the last one; nothing sent")
        return
    click.echo(f"edition {report.edition_on}: {report.rendered.subject}")
    already = {d.recipient for d in report.already_sent}
    for delivery in report.deliveries:
        state = _STATE_LABELS[delivery.state]
        if delivery.recipient in already:
            state = "already sent"
        click.echo(f"  {delivery.recipient}: {state}  {delivery.detail or ''}".rstrip())
    sent = len(report.in_state(DeliveryState.SENT)) - len(already)
    failed = len(report.in_state(DeliveryState.FAILED))
    uncertain = len(report.in_state(DeliveryState.SENDING))
    click.echo(f"sent {sent}, failed {failed}, already sent {len(already)}, uncertain {uncertain}")


@cli.command()
@click.option("--once", is_flag=True, help="Collect now, send if the edition is due, then exit.")
@_translate_errors
def run(once: bool) -> None:
    """Run the scheduler: collect through the day, send the edition at [schedule].send_at."""
    logging.getLogger().setLevel(logging.INFO)
    settings = _settings()
    if not once:
        schedule.run_daemon(settings)
        return
    report = schedule.run_once(settings)
    if isinstance(report, pipeline.SendReport):
        _print_send(report)
        failed = not report.ok
    else:
        _print_collect(report)
        failed = report.all_failed
    if failed:
        sys.exit(1)


@cli.command()
@_translate_errors
def check() -> None:
    """Validate the settings and report every problem; exit non-zero if there are any."""
    settings = _settings()
    problems = pipeline.check_settings(settings)
    for problem in problems:
        click.echo(f"problem: {problem}", err=True)
    if problems:
        sys.exit(1)
    click.echo(
        f"{settings.config_path}: OK ({len(settings.feeds)} feeds, "
        f"{len(settings.delivery.recipients)} recipients, "
        f"summarizer {settings.summarize.summarizer}, backend {settings.delivery.backend})"
    )
