"""The command line: each command loads the settings, makes one use-case call, and prints.

Exit codes: 0 success; 1 a failure a cron job must notice (every feed failed, a delivery
failed or is uncertain, a check found problems); 2 usage or config errors.

What the commands share (the global options, error translation, signals) is in
cli_context.py, what they print in cli_output.py, the ``feeds`` group in cli_feeds.py and the
``subscribers`` group in cli_subscribers.py, ``store`` in cli_store.py, ``web`` in
cli_web.py.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import tempfile
import webbrowser
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from digest import __version__, cli_output
from digest.cli_archive import archive
from digest.cli_context import (
    Group,
    global_options,
    is_debug,
    load_command_settings,
    load_summarize_settings,
    open_runtime,
    translate_errors,
)
from digest.cli_context import stop_on_signals as _stop_on_signals  # tests' probes use it
from digest.cli_feeds import feeds
from digest.cli_store import store
from digest.cli_subscribers import subscribers
from digest.cli_web import web
from digest.logs import ZonedFormatter

if TYPE_CHECKING:
    from digest import sending
    from digest.config import Settings

# Each command imports its use case (and the settings, pydantic) in its own body, so that it
# pays only for what it uses: the stages' aiohttp, numpy and lxml (torch when a model
# loads) are for the commands that collect, build or send; `digest --version`, `status`,
# `deliveries`, `feeds list` and `check` start without them.


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="digest")
def cli() -> None:
    """digest: a daily newsletter digest of your feeds, summarised by a local model.

    --config and --debug may also follow the subcommand (there, they win)."""
    root = logging.getLogger()
    if not root.handlers:  # as logging.basicConfig: a host (or a test) may have its own
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(ZonedFormatter())
        root.addHandler(handler)
        root.setLevel(logging.DEBUG if is_debug() else logging.WARNING)


cli.params.extend(global_options())


@cli.command()
@click.option(
    "--summarize/--no-summarize",
    default=True,
    show_default=True,
    help="Then summarise today's edition as it stands, so preview and send find it done.",
)
@translate_errors
def collect(summarize: bool) -> None:
    """Fetch every feed once and store the new stories.

    SIGINT or SIGTERM stops at once, keeping the feeds stored so far (exit 130 or 143)."""
    from digest.schedule_runs import collect_now  # heavy: see the note at the top

    settings = load_command_settings()
    with _stop_on_signals() as stop, open_runtime(settings) as runtime:
        report = collect_now(runtime, summarize=summarize, stop=stop)
    cli_output.print_collect(report, settings.tz)
    if report.store_error:
        raise click.ClickException(report.store_error)
    if report.stopped_while:
        sys.exit(stop.exit_code)
    if report.all_failed:
        sys.exit(1)


@cli.command()
@click.option("--out", "out", type=click.Path(dir_okay=False), help="Write the HTML here.")
@click.option("--open", "open_browser", is_flag=True, help="Open the HTML in a browser.")
@click.option("--text", "as_text", is_flag=True, help="Print the plain-text part instead.")
@click.option(
    "--date",
    "on",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="A past edition from the archive (YYYY-MM-DD), exactly as readers got it.",
)
@click.option(
    "--serve", is_flag=True, help="Serve the latest edition and the archive on 127.0.0.1."
)
@click.option("--port", type=click.IntRange(0, 65535), default=8025, show_default=True)
@click.option(
    "--collect/--no-collect",
    default=True,
    show_default=True,
    help="Fetch the feeds first (in memory: nothing is stored).",
)
@click.option("--json", "as_json", is_flag=True, help="Print today's edition as JSON data.")
@translate_errors
def preview(
    out: str | None,
    open_browser: bool,
    as_text: bool,
    on: datetime | None,
    serve: bool,
    port: int,
    collect: bool,
    as_json: bool,
) -> None:
    """Render today's edition as it would be sent. Never sends, never writes to the store."""
    from digest.preview import preview_report  # heavy: see the note at the top

    if as_json and (out or open_browser or as_text or on or serve):
        raise click.UsageError("--json prints today's edition alone (--no-collect goes with it)")
    settings = load_command_settings()
    if as_json:
        return _preview_json(settings, collect=collect)
    if serve:
        return _serve_preview(settings, collect=collect, port=port, open_browser=open_browser)
    with open_runtime(settings, "read") as runtime:
        found = preview_report(runtime, collect=collect, on=on.date() if on else None)
    rendered = found.rendered
    if as_text:
        cli_output.print_filter_counts(found.filter_counts, err=True)  # stdout: the text alone
        click.echo(rendered.text, nl=False)
        return
    path = _write_html(rendered.html, Path(out) if out else _temp_html_path())
    cli_output.print_preview_written(rendered.subject, rendered.trimmed_stories, path)
    cli_output.print_filter_counts(found.filter_counts)
    if open_browser:
        _open_in_browser(path.resolve().as_uri())


def _preview_json(settings: Settings, *, collect: bool) -> None:
    from digest.preview import preview_data  # heavy: see the note at the top

    with open_runtime(settings, "read") as runtime:
        data = preview_data(runtime, collect=collect)
    click.echo(cli_output.edition_json(data))


def _serve_preview(settings: Settings, *, collect: bool, port: int, open_browser: bool) -> None:
    from digest.preview import preview_server  # heavy: see the note at the top

    with open_runtime(settings, "read") as runtime:
        server = preview_server(runtime, collect=collect, port=port)
    click.echo(f"serving the preview at {server.url} (Ctrl-C to stop)")
    if open_browser:
        _open_in_browser(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _write_html(html: str, path: Path) -> Path:
    try:
        path.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def _open_in_browser(url: str) -> None:
    """Open a page, or say that no browser could and how to open it by hand."""
    if not webbrowser.open(url):
        click.echo(f"could not open a browser here (none found); open {url} by hand", err=True)


def _temp_html_path() -> Path:
    handle, name = tempfile.mkstemp(prefix="digest-", suffix=".html")
    os.close(handle)
    return Path(name)


@cli.command()
@click.option("--dry-run", is_flag=True, help="Show what would be sent; send and store nothing.")
@click.option(
    "--collect/--no-collect", default=True, show_default=True, help="Fetch the feeds first."
)
@click.option(
    "--resend-uncertain",
    is_flag=True,
    help="Also resend messages a crash left uncertain (same Message-ID).",
)
@click.option("--force", is_flag=True, help="Send the edition again to those already served.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Senders at once (threads, each with its own SMTP connection).",
)
@translate_errors
def send(dry_run: bool, collect: bool, resend_uncertain: bool, force: bool, workers: int) -> None:
    """Build today's edition and deliver it to every recipient, once.

    SIGTERM or Ctrl-C before the first message stops at once, archiving nothing; while
    delivering, it finishes the message in flight, records it and stops; either way it exits
    143 or 130 (a second one exits at once). Exits 1 if any recipient failed, is uncertain or
    was not reached.
    """
    from digest import schedule_runs, sending  # heavy: see the note at the top

    settings = load_command_settings()
    if dry_run:
        with open_runtime(settings, "read") as runtime:
            cli_output.print_plan(sending.plan_edition(runtime))
        return
    with _stop_on_signals() as stop, open_runtime(settings) as runtime:
        report = schedule_runs.send_now(
            runtime,
            collect=collect,
            resend_uncertain=resend_uncertain,
            force=force,
            stop=stop,
            on_wait=functools.partial(cli_output.print_waiting, tz=settings.tz),
            workers=workers,
        )
    cli_output.print_send(report, settings.tz)
    if report.aborted or report.store_error:
        raise click.ClickException(report.aborted or report.store_error or "")
    if stop.is_set() and not report.ok:
        sys.exit(stop.exit_code)
    if not report.ok:
        sys.exit(RATE_LIMITED_EXIT if _is_only_held_back(report) else 1)


RATE_LIMITED_EXIT = 75  # EX_TEMPFAIL: all went well so far, the rest go later


def _is_only_held_back(report: sending.SendReport) -> bool:
    """The hourly limit held recipients back, and nothing else went wrong."""
    from digest.models import DeliveryState

    bad = (DeliveryState.FAILED, DeliveryState.SENDING)
    return report.resumes_at is not None and not any(d.state in bad for d in report.deliveries)


@cli.command()
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="Edition (YYYY-MM-DD).")
@translate_errors
def deliveries(day: datetime | None) -> None:
    """Show each recipient's delivery state for an edition (default: the latest)."""
    from digest.ledger import delivery_ledger

    settings = load_command_settings()
    with open_runtime(settings, "read") as runtime:
        edition_on, rows = delivery_ledger(runtime, day.date() if day else None)
    cli_output.print_deliveries(edition_on, rows, settings.tz)


@cli.command()
@click.option(
    "--once", is_flag=True, help="Run the due jobs now (the edition if owed, else a collect)."
)
@translate_errors
def run(once: bool) -> None:
    """Run the daemon: collect through the day, send each edition at its [schedule] time."""
    from digest import schedule, sending  # heavy: see the note at the top

    if not is_debug():
        logging.getLogger().setLevel(logging.INFO)
    settings = load_command_settings()
    if not once:
        schedule.run_daemon(settings)
        return
    report = schedule.run_once(settings)
    if isinstance(report, sending.SendReport):
        cli_output.print_send(report, settings.tz)
        failed = not report.ok
    else:
        cli_output.print_collect(report, settings.tz)
        failed = report.all_failed or report.store_error is not None  # the log line says why
    if failed:
        sys.exit(1)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for monitoring.")
@translate_errors
def status(as_json: bool) -> None:
    """Show the daemon's state: next runs, last collect and edition, misses, feeds, recipients.

    Exits 1 when a recipient went without or the last edition was missed or failed."""
    from digest.status import current_status

    settings = load_command_settings()
    with open_runtime(settings, "read") as runtime:
        found = current_status(runtime)
    if as_json:
        click.echo(cli_output.status_json(found))
    else:
        cli_output.print_status(found, settings.tz)
    if found.needs_attention:
        sys.exit(1)


@cli.command()
@translate_errors
def check() -> None:
    """Validate the settings and report every problem; exit non-zero if there are any. Say
    the store's engine, version and migrations (applied, pending)."""
    from digest.checking import check_settings, check_store

    settings = load_command_settings()
    problems = check_settings(settings)
    store = check_store(settings)
    if store.problem:
        problems.append(f"[store]: {store.problem}")
    for problem in problems:
        click.echo(f"problem: {problem}", err=True)
    if problems:
        sys.exit(1)
    cli_output.print_settings_ok(settings)
    cli_output.print_store_check(store)


@cli.command()
@click.option("--input", "source", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--output", "target", type=click.Path(dir_okay=False), required=True)
@click.option("--summarizer", help="Use this summarizer (default: [summarize].summarizer).")
@click.option("--words", type=click.IntRange(10, 400), help="Word budget of each summary.")
@translate_errors
def summarize(source: str, target: str, summarizer: str | None, words: int | None) -> None:
    """Summarise {"id", "title", "text"} JSONL lines into {"id", "summary"} lines, cleaning
    and summarising exactly as the digest does (a settings file is optional here)."""
    from digest.batch import summarize_file  # heavy: see the note at the top

    settings = load_summarize_settings()
    overrides = {"summarizer": summarizer, "words": words}
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    count = summarize_file(settings, Path(source), Path(target))
    click.echo(
        f"wrote {count} summaries to {target} ({settings.summarizer}, {settings.words} words)"
    )


cli.add_command(archive)
cli.add_command(feeds)
cli.add_command(store)
cli.add_command(subscribers)
cli.add_command(web)
