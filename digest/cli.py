"""The command line: each command loads the settings, makes one use-case call, and prints.

Exit codes: 0 success; 1 a failure a cron job must notice (every feed failed, a delivery
failed or is uncertain, a check found problems); 2 usage or config errors.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import signal
import sys
import tempfile
import textwrap
import webbrowser
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, tzinfo
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import click

from digest import __version__
from digest.errors import ConfigError, DigestError
from digest.interrupt import StopRequest, exit_now, exit_on_further_signals, redelivering
from digest.logs import ZonedFormatter, log_in_zone
from digest.models import DeliveryState, FeedHealth, FeedSource, JobRun, SendLockHolder

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from digest import collecting, sending
    from digest.config import Settings, SummarizeSettings
    from digest.runtime import Runtime, StoreAccess
    from digest.status import DaemonStatus

# Each command imports its use case (and the settings, pydantic) in its own body, so that it
# pays only for what it uses: the stages' aiohttp, numpy and lxml (torch when a model
# loads) are for the commands that collect, build or send; `digest --version`, `status`,
# `deliveries`, `feeds list` and `check` start without them.

P = ParamSpec("P")
R = TypeVar("R")


def _translate_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Print a DigestError as one clear message (a traceback only with --debug)."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except DigestError as exc:
            if _is_debug():
                raise
            error_class = (
                _ConfigClickError if isinstance(exc, ConfigError) else click.ClickException
            )
            raise error_class(str(exc)) from exc
        except KeyboardInterrupt:
            # Commands that keep what they did (collect, send) handle signals themselves;
            # the others are read-only or all-or-nothing. Click would say "Aborted!", exit 1.
            click.echo("\ninterrupted (SIGINT): stopped", err=True)
            sys.exit(128 + signal.SIGINT)

    return wrapper


class _ConfigClickError(click.ClickException):
    exit_code = 2


def _settings() -> Settings:
    from digest.config import find_config_path, load_settings

    settings = load_settings(find_config_path(_config_option()))
    log_in_zone(settings.tz)
    return settings


def _runtime(settings: Settings, access: StoreAccess = "write") -> AbstractContextManager[Runtime]:
    """The command's runtime: its store opened once, as ``access`` says."""
    from digest.runtime import Runtime

    return Runtime.open(settings, access=access)


# The global options, given before the subcommand or after it: both set the context's meta
# (shared by the whole command chain), and the subcommand's own are parsed last, so win.
_CONFIG_KEY = "digest.config"
_DEBUG_KEY = "digest.debug"


def _config_option() -> str | None:
    config: str | None = click.get_current_context().meta.get(_CONFIG_KEY)
    return config


def _is_debug() -> bool:
    return bool(click.get_current_context().meta.get(_DEBUG_KEY))


def _remember_config(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta[_CONFIG_KEY] = value


def _remember_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[_DEBUG_KEY] = True
        logging.getLogger().setLevel(logging.DEBUG)


def _global_options() -> list[click.Parameter]:
    """``--config`` and ``--debug``, as every command (and the group) accepts them."""
    return [
        click.Option(
            ["--config", "-c"],
            type=click.Path(dir_okay=False),
            expose_value=False,
            callback=_remember_config,
            help="Settings file (default: $DIGEST_CONFIG, then ./settings.toml).",
        ),
        click.Option(
            ["--debug"],
            is_flag=True,
            expose_value=False,
            callback=_remember_debug,
            help="Show tracebacks and debug logging.",
        ),
    ]


class _Group(click.Group):
    """A group whose every command and subgroup also takes the global options."""

    group_class = type  # subgroups are _Groups too

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        cmd.params.extend(_global_options())
        super().add_command(cmd, name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="digest")
def cli() -> None:
    """digest: a daily newsletter digest of your feeds, summarised by a local model.

    --config and --debug may also follow the subcommand (there, they win)."""
    root = logging.getLogger()
    if not root.handlers:  # as logging.basicConfig: a host (or a test) may have its own
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(ZonedFormatter())
        root.addHandler(handler)
        root.setLevel(logging.DEBUG if _is_debug() else logging.WARNING)


cli.params.extend(_global_options())


@cli.command()
@click.option(
    "--summarize/--no-summarize",
    default=True,
    show_default=True,
    help="Then summarise today's edition as it stands, so preview and send find it done.",
)
@_translate_errors
def collect(summarize: bool) -> None:
    """Fetch every feed once and store the new stories.

    SIGINT or SIGTERM stops at once, keeping the feeds stored so far (exit 130 or 143)."""
    from digest.schedule_runs import collect_now  # heavy: see the note at the top

    settings = _settings()
    with _stop_on_signals() as stop, _runtime(settings) as runtime:
        report = collect_now(runtime, summarize=summarize, stop=stop)
    _print_collect(report, settings.tz)
    if report.store_error:
        raise click.ClickException(report.store_error)
    if report.stopped_while:
        sys.exit(stop.exit_code)
    if report.all_failed:
        sys.exit(1)


def _print_collect(report: collecting.CollectReport, tz: tzinfo) -> None:
    width = max([len(_clip(f.name, _NAME_WIDTH)) for f in report.feeds] + [4])
    click.echo(f"{'feed':<{width}}  {'status':<9}  {'new':>4}  detail")
    for feed in report.feeds:
        detail = f"{feed.error_kind}: {feed.error}" if feed.error_kind else feed.error or ""
        if feed.moved_to:
            detail = f"{detail} (moved permanently to {feed.moved_to})".lstrip()
        if feed.warnings:
            detail = "; ".join([detail, *feed.warnings]).lstrip("; ")
        if feed.not_before:
            detail = f"not due before {_local_time(feed.not_before, tz)} ({feed.hold_reason})"
        name = _clip(feed.name, _NAME_WIDTH)
        row = f"{name:<{width}}  {feed.status:<9}  {feed.new_stories:>4}  "
        click.echo("\n".join(_wrapped(row, detail)).rstrip())
    ok = len(report.feeds) - len(report.failed)
    ok -= len(report.skipped) + len(report.not_read) + len(report.not_saved)
    skipped = f", {len(report.skipped)} not due yet" if report.skipped else ""
    skipped += f", {len(report.not_saved)} not saved" if report.not_saved else ""
    click.echo(
        f"{_counted(len(report.feeds), 'feed')}: {ok} read, {len(report.failed)} failed"
        f"{skipped}; {_counted(report.new_stories, 'new story', 'new stories')}"
    )
    if report.pages:
        click.echo(_pages_line(report))
    _print_collect_stop(report)


def _print_collect_stop(report: collecting.CollectReport) -> None:
    if report.stopped_while == "collecting":
        stored = report.stored_feeds
        click.echo(
            f"interrupted: {stored} of {stored + len(report.not_read)} feeds read and stored "
            f"({report.new_stories} new stories kept), {len(report.not_read)} not read: "
            "the next collect reads them"
        )
    elif report.stopped_while == "summarising":
        click.echo(
            "interrupted while summarising: every feed's stories are stored; the summaries not "
            "made yet are made by the next collect or send"
        )


def _pages_line(report: collecting.CollectReport) -> str:
    """The article pages' outcome: e.g. `article pages: 12 fetched, 640 failed (timeout: 600
    at 3 hosts; ...), 27 skipped after repeated failures at news.example; ...`."""
    failed, skipped = report.pages_failed, report.pages_skipped
    line = f"article pages: {len(report.pages) - len(failed) - len(skipped)} fetched"
    if failed:
        line += f", {len(failed)} failed ({_failure_kinds(report)})"
    if skipped:
        hosts = sorted({p.host for p in skipped})
        named = ", ".join(hosts[:3]) + (f" and {len(hosts) - 3} more" if len(hosts) > 3 else "")
        line += f", {len(skipped)} skipped after repeated failures at {named}"
    if failed or skipped:
        line += "; summaries use the feed's teaser for those"
    return line


def _failure_kinds(report: collecting.CollectReport) -> str:
    """The failed pages' `timeout: 600 at 3 hosts; connection-refused: 40 at 1 host`, the
    commonest first."""
    by_kind: dict[str, list[str]] = {}
    for page in report.pages_failed:
        by_kind.setdefault(page.failure or "", []).append(page.host)
    parts = []
    for kind, hosts in sorted(by_kind.items(), key=lambda item: (-len(item[1]), item[0])):
        at = len(set(hosts))
        parts.append(f"{kind}: {len(hosts)} at {at} host{'s' if at != 1 else ''}")
    return "; ".join(parts)


# The collect table fits 100 columns: names are clipped, details wrapped under their column
# (only a path or URL longer than that column runs past it).
_NAME_WIDTH = 40
_TABLE_WIDTH = 100
_DETAIL_LINES = 6


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _wrapped(row: str, detail: str) -> list[str]:
    """The row with its detail: wrapped under the detail column, at most a few lines."""
    width = max(_TABLE_WIDTH - len(row), 30)
    # A path or URL is never cut: one longer than the column runs past it, whole, to copy.
    lines = textwrap.wrap(
        detail,
        width,
        max_lines=_DETAIL_LINES,
        placeholder=" …",
        break_long_words=False,
        break_on_hyphens=False,
    )
    lines = lines or [""]
    return [row + lines[0], *(" " * len(row) + line for line in lines[1:])]


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
@_translate_errors
def preview(
    out: str | None,
    open_browser: bool,
    as_text: bool,
    on: datetime | None,
    serve: bool,
    port: int,
    collect: bool,
) -> None:
    """Render today's edition as it would be sent. Never sends, never writes to the store."""
    from digest.preview import preview_edition  # heavy: see the note at the top

    settings = _settings()
    if serve:
        return _serve_preview(settings, collect=collect, port=port, open_browser=open_browser)
    with _runtime(settings, "read") as runtime:
        rendered = preview_edition(runtime, collect=collect, on=on.date() if on else None)
    if as_text:
        click.echo(rendered.text, nl=False)
        return
    path = Path(out) if out else _temp_html_path()
    try:
        path.write_text(rendered.html, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from exc
    click.echo(f"subject: {rendered.subject}")
    if rendered.trimmed_stories:
        click.echo(f"trimmed: left out {rendered.trimmed_stories} stories to stay under the cap")
    click.echo(f"wrote {path}")
    if open_browser:
        _open_in_browser(path.resolve().as_uri())


def _serve_preview(settings: Settings, *, collect: bool, port: int, open_browser: bool) -> None:
    from digest.preview import preview_server  # heavy: see the note at the top

    with _runtime(settings, "read") as runtime:
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
@_translate_errors
def send(dry_run: bool, collect: bool, resend_uncertain: bool, force: bool) -> None:
    """Build today's edition and deliver it to every recipient, once.

    SIGTERM or Ctrl-C before the first message stops at once, archiving nothing; while
    delivering, it finishes the message in flight, records it and stops; either way it exits
    143 or 130 (a second one exits at once). Exits 1 if any recipient failed, is uncertain or
    was not reached.
    """
    from digest import schedule_runs, sending  # heavy: see the note at the top

    settings = _settings()
    if dry_run:
        with _runtime(settings, "read") as runtime:
            _print_plan(sending.plan_edition(runtime))
        return
    with _stop_on_signals() as stop, _runtime(settings) as runtime:
        report = schedule_runs.send_now(
            runtime,
            collect=collect,
            resend_uncertain=resend_uncertain,
            force=force,
            stop=stop,
            on_wait=functools.partial(_print_waiting, tz=settings.tz),
        )
    _print_send(report, settings.tz)
    if report.aborted or report.store_error:
        raise click.ClickException(report.aborted or report.store_error or "")
    if stop.is_set() and not report.ok:
        sys.exit(stop.exit_code)
    if not report.ok:
        sys.exit(1)


def _print_waiting(holder: SendLockHolder, *, tz: tzinfo) -> None:
    who = f"pid {holder.pid}" if holder.pid else "pid unknown"
    if holder.command:
        who += f", `{holder.command}`"
    if holder.since_at:
        who += f", sending since {_local_time(holder.since_at, tz)}"
    click.echo(
        f"waiting for another digest send to finish ({who}); it will have sent the edition, "
        "so this one then sends only what is left (Ctrl-C stops waiting)",
        err=True,
    )


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[StopRequest]:
    """SIGTERM and SIGINT make a stop request (the work says what it keeps); a second one
    exits at once, with 128 + its number, as the shell reports a process it killed."""
    stop = StopRequest()

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.take_swallowed():
            return stop.request(signum)
        if stop.signum is not None:
            exit_now(signum, frame)
        # Noted before anything else: a second signal can run its handler inside this one
        # (between any two lines), and must find the first already made.
        stop.signum = signum
        os.write(2, f"{name}: {stop.note}\n".encode())
        stop.request(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with redelivering(stop):
            yield stop
    finally:
        if stop.signum is not None:  # the process is on its way out: to the very end
            exit_on_further_signals()
        else:
            for sig, old in previous.items():
                signal.signal(sig, old)


_STOPPED_BEFORE_SENDING = {
    "waiting": "stopped on request while waiting for another digest send to finish; nothing sent",
    "collecting": "stopped on request while collecting; nothing built or archived, nothing sent",
    "building": "stopped on request while building it; nothing archived, nothing sent (the "
    "stories collected are kept)",
}

_STATE_LABELS = {
    DeliveryState.PENDING: "not sent yet",
    DeliveryState.SENDING: "uncertain (may have been delivered; not resent)",
    DeliveryState.SENT: "sent",
    DeliveryState.FAILED: "failed",
}


def _print_plan(plan: sending.SendReport) -> None:
    if plan.rendered is None:
        click.echo(f"edition {plan.edition_on}: no new stories stored; nothing would be sent")
        return
    click.echo(f"edition {plan.edition_on}: {plan.rendered.subject}")
    for delivery in plan.deliveries:
        action = "already sent" if delivery.state is DeliveryState.SENT else "would send"
        if delivery.state is DeliveryState.SENDING:
            action = "uncertain, would not resend"
        click.echo(f"  {delivery.recipient}: {action}")


def _print_send(report: sending.SendReport, tz: tzinfo) -> None:
    from digest.ledger import delivery_detail  # the caller has loaded digest.sending

    if report.collect is not None:
        _print_collect(report.collect, tz)
    if report.stopped_while is not None:
        click.echo(f"edition {report.edition_on}: {_STOPPED_BEFORE_SENDING[report.stopped_while]}")
        return
    if report.rendered is None and report.store_error:
        click.echo(f"edition {report.edition_on}: the store failed first; nothing built or sent")
        return
    if report.rendered is None:
        click.echo(f"edition {report.edition_on}: no new stories since the last one; nothing sent")
        return
    click.echo(f"edition {report.edition_on}: {report.rendered.subject}")
    already = {d.recipient for d in report.already_sent}
    for delivery in report.deliveries:
        state = _STATE_LABELS[delivery.state]
        if delivery.recipient in already:
            state = "already sent"
        click.echo(f"  {delivery.recipient}: {state}  {delivery_detail(delivery)}".rstrip())
    sent = len(report.in_state(DeliveryState.SENT)) - len(already)
    failed = len(report.in_state(DeliveryState.FAILED))
    uncertain = len(report.in_state(DeliveryState.SENDING))
    pending = len(report.in_state(DeliveryState.PENDING))
    summary = f"sent {sent}, failed {failed}, already sent {len(already)}, uncertain {uncertain}"
    click.echo(summary + (f", not sent yet {pending}" if pending else ""))
    _print_send_notes(report, uncertain, pending)


def _print_send_notes(report: sending.SendReport, uncertain: int, pending: int) -> None:
    if report.deliveries and len(report.already_sent) == len(report.deliveries):
        click.echo("this edition was already delivered to everyone; --force sends it again")
    if uncertain:
        click.echo(
            f"{uncertain} uncertain: the message may have arrived (each row says why it is not "
            "known); `digest send --resend-uncertain` resends it under the same Message-ID"
        )
    if report.stopped and pending:
        click.echo(f"stopped on request: {pending} not sent yet; `digest send` sends them")


@cli.command()
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="Edition (YYYY-MM-DD).")
@_translate_errors
def deliveries(day: datetime | None) -> None:
    """Show each recipient's delivery state for an edition (default: the latest)."""
    from digest.ledger import delivery_detail, delivery_ledger

    settings = _settings()
    with _runtime(settings, "read") as runtime:
        edition_on, rows = delivery_ledger(runtime, day.date() if day else None)
    if not rows:
        click.echo(f"no deliveries recorded{f' for {edition_on}' if edition_on else ''}")
        return
    width = max(len(d.recipient) for d in rows)
    click.echo(f"edition {edition_on}: {_counted(len(rows), 'recipient')}")
    for d in rows:
        when = _local_time(d.sent_at, settings.tz) or "-"
        click.echo(
            f"  {d.recipient:<{width}}  {d.state:<7}  {when:<16}  "
            f"tries {d.attempts}  {d.message_id}  {delivery_detail(d)}".rstrip()
        )
    counts = {s: sum(d.state is s for d in rows) for s in DeliveryState}
    click.echo(", ".join(f"{n} {_COUNT_LABELS[s]}" for s, n in counts.items() if n))


_COUNT_LABELS = {
    DeliveryState.PENDING: "pending",
    DeliveryState.SENDING: "uncertain (sending)",
    DeliveryState.SENT: "sent",
    DeliveryState.FAILED: "failed",
}


@cli.command()
@click.option(
    "--once", is_flag=True, help="Run the due jobs now (the edition if owed, else a collect)."
)
@_translate_errors
def run(once: bool) -> None:
    """Run the daemon: collect through the day, send each edition at its [schedule] time."""
    from digest import schedule, sending  # heavy: see the note at the top

    if not _is_debug():
        logging.getLogger().setLevel(logging.INFO)
    settings = _settings()
    if not once:
        schedule.run_daemon(settings)
        return
    report = schedule.run_once(settings)
    if isinstance(report, sending.SendReport):
        _print_send(report, settings.tz)
        failed = not report.ok
    else:
        _print_collect(report, settings.tz)
        failed = report.all_failed or report.store_error is not None  # the log line says why
    if failed:
        sys.exit(1)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for monitoring.")
@_translate_errors
def status(as_json: bool) -> None:
    """Show the daemon's state: next runs, last collect and edition, misses, feeds, recipients.

    Exits 1 when a recipient went without or the last edition was missed or failed."""
    from digest.status import current_status

    settings = _settings()
    with _runtime(settings, "read") as runtime:
        found = current_status(runtime)
    if as_json:
        click.echo(_status_json(found))
    else:
        _print_status(found, settings.tz)
    if found.needs_attention:
        sys.exit(1)


def _print_status(found: DaemonStatus, tz: tzinfo) -> None:
    from digest.ledger import delivery_detail  # the caller has loaded digest.status

    nexts = ", ".join(_local_time(t, tz) for t in found.next_editions_at) or "none"
    click.echo(f"next edition: {nexts}")
    when = _local_time(found.next_collect_at, tz) or "when the daemon starts"
    overdue = found.next_collect_at is not None and found.next_collect_at < found.now
    click.echo(f"next collect: {when}{' (overdue: is digest run running?)' if overdue else ''}")
    _print_run("last collect", found.last_collect, tz)
    _print_run("last edition run", found.last_edition_run, tz)
    if found.last_edition_on is not None:
        states = [d.state.value for d in found.last_edition_deliveries]
        counts = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
        subject = found.last_edition_subject
        click.echo(f"last edition: {found.last_edition_on} {subject!r}: {counts}")
    for missed in found.missed:
        click.echo(f"missed: {missed.summary}")
    for feed in found.failing_feeds:
        click.echo(f"failing feed: {feed.source.title}: {_last_error(feed, tz)}")
    for held in found.held_feeds:
        until = _local_time(held.not_before, tz)
        click.echo(f"not due: {held.url} until {until} ({held.hold_reason})")
    for delivery in found.undelivered:
        detail = f"{_STATE_LABELS[delivery.state]} {delivery_detail(delivery)}".rstrip()
        click.echo(f"undelivered: {delivery.edition_on} {delivery.recipient}: {detail}")


def _print_run(label: str, run: JobRun | None, tz: tzinfo) -> None:
    if run is None:
        click.echo(f"{label}: never")
        return
    seconds = (run.finished_at - run.started_at).total_seconds()
    when = _local_time(run.started_at, tz)
    click.echo(f"{label}: {when} {run.outcome} ({seconds:.1f} s): {run.summary}")
    for failure in run.failures:
        click.echo(f"  failed: {failure}")


def _status_json(found: DaemonStatus) -> str:
    document = dataclasses.asdict(found) | {"needs_attention": found.needs_attention}
    return json.dumps(document, indent=2, ensure_ascii=False, default=_json_default)


def _json_default(value: object) -> str:
    if isinstance(value, date):  # datetimes too
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@cli.command()
@_translate_errors
def check() -> None:
    """Validate the settings and report every problem; exit non-zero if there are any."""
    from digest.checking import check_settings

    settings = _settings()
    problems = check_settings(settings)
    for problem in problems:
        click.echo(f"problem: {problem}", err=True)
    if problems:
        sys.exit(1)
    click.echo(
        f"{settings.config_path}: OK ({_counted(len(settings.feeds), 'feed')}, "
        f"{_counted(len(settings.delivery.recipients), 'recipient')}, "
        f"summarizer {settings.summarize.summarizer}, backend {settings.delivery.backend})"
    )


@cli.command()
@click.option("--input", "source", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--output", "target", type=click.Path(dir_okay=False), required=True)
@click.option("--summarizer", help="Use this summarizer (default: [summarize].summarizer).")
@click.option("--words", type=click.IntRange(10, 400), help="Word budget of each summary.")
@_translate_errors
def summarize(source: str, target: str, summarizer: str | None, words: int | None) -> None:
    """Summarise {"id", "title", "text"} JSONL lines into {"id", "summary"} lines, cleaning
    and summarising exactly as the digest does (a settings file is optional here)."""
    from digest.batch import summarize_file  # heavy: see the note at the top

    settings = _summarize_settings()
    overrides = {"summarizer": summarizer, "words": words}
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    count = summarize_file(settings, Path(source), Path(target))
    click.echo(
        f"wrote {count} summaries to {target} ({settings.summarizer}, {settings.words} words)"
    )


def _summarize_settings() -> SummarizeSettings:
    from digest.config import SummarizeSettings, find_config_path, load_settings

    path = find_config_path(_config_option())
    if _config_option() is None and not path.is_file():
        return SummarizeSettings()
    return load_settings(path).summarize


# Feeds


@cli.group()
def feeds() -> None:
    """List, add, import and export the feeds in the settings file."""


@feeds.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_translate_errors
def feeds_list(as_json: bool) -> None:
    """Show how each feed is doing: status, stories, last success, last error."""
    from digest.feeds import feed_health

    settings = _settings()
    with _runtime(settings, "read") as runtime:
        health = feed_health(runtime)
    if as_json:
        click.echo(json.dumps([_health_json(h) for h in health], indent=2, ensure_ascii=False))
        return
    _print_health(health, settings.tz)


def _print_health(health: Sequence[FeedHealth], tz: tzinfo) -> None:
    names = max([len(h.source.title[:40]) for h in health] + [4])
    errors = [_last_error(h, tz) for h in health]
    error_width = max([len(e) for e in errors] + [10])
    click.echo(
        f"{'status':<7}  {'name':<{names}}  {'stories':>7}  {'fails':>5}  "
        f"{'last success':<16}  {'last error':<{error_width}}  url"
    )
    for item, error in zip(health, errors, strict=True):
        success = _local_time(item.last_success_at, tz) or "never"
        click.echo(
            f"{item.status:<7}  {item.source.title[:40]:<{names}}  {item.stories:>7}  "
            f"{item.failures:>5}  {success:<16}  {error:<{error_width}}  {item.source.url}"
        )
        if item.fetch_url:
            click.echo(f"{'':<7}  moved permanently to {item.fetch_url} (fetched from there)")
        if item.is_gone:
            click.echo(f"{'':<7}  gone (410) — remove it, or re-add it: digest feeds add URL")
    counts = {s: sum(h.status == s for h in health) for s in ("ok", "failing", "gone", "new")}
    summary = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    click.echo(
        f"{_counted(len(health), 'feed')}: {summary}; "
        "`digest feeds failures URL` lists a feed's failures"
    )


def _last_error(health: FeedHealth, tz: tzinfo, width: int = 60) -> str:
    if not health.last_error:
        return "-"
    error = f"{health.last_error_kind or 'error'}: {' '.join(health.last_error.split())}"
    if len(error) > width:
        error = error[: width - 1] + "…"
    return f"{_local_time(health.last_error_at, tz)} {error}".strip()


def _counted(number: int, noun: str, plural: str | None = None) -> str:
    """``1 feed``, ``2 feeds``: a count with its noun (``plural`` when not just an s)."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def _local_time(moment: datetime | None, tz: tzinfo) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M") if moment else ""


def _health_json(health: FeedHealth) -> dict[str, object]:
    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    return {
        "url": health.source.url,
        "name": health.source.name,
        "category": health.source.category,
        "status": health.status,
        "stories": health.stories,
        "failures": health.failures,
        "last_success_at": iso(health.last_success_at),
        "last_error_at": iso(health.last_error_at),
        "last_error_kind": health.last_error_kind,
        "last_error": health.last_error,
        "fetch_url": health.fetch_url,
        "is_gone": health.is_gone,
    }


@feeds.command("failures")
@click.argument("url")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@_translate_errors
def feeds_failures(url: str, limit: int) -> None:
    """Show a feed's most recent failures: when, what kind, and the message."""
    from digest.feeds import feed_failures

    settings = _settings()
    with _runtime(settings, "read") as runtime:
        source, failures = feed_failures(runtime, url, limit)
    if not failures:
        click.echo(f"{source.title}: no failures recorded")
        return
    click.echo(f"{source.title} ({source.url}): {len(failures)} most recent failures, newest first")
    for failure in failures:
        when = _local_time(failure.failed_at, settings.tz)
        click.echo(f"  {when}  {failure.kind:<10}  {failure.message}")


@feeds.command("add")
@click.argument("url")
@click.option("--name", help="The source name shown in the digest (default: the feed's title).")
@click.option("--category", help="The section its stories appear in.")
@click.option("--no-check", is_flag=True, help="Add it without fetching it first.")
@_translate_errors
def feeds_add(url: str, name: str | None, category: str | None, no_check: bool) -> None:
    """Add a feed to the settings file, once fetching and reading it has worked."""
    from digest.feeds import add_feed

    settings = _settings()
    with _runtime(settings, "update") as runtime:
        report = add_feed(runtime, url, name=name, category=category, check=not no_check)
    source = report.source
    if report.is_added:
        click.echo(f"added {source.title} ({source.url}) to {settings.config_path}")
    if report.is_revived:
        click.echo(f"revived {source.title}: it had answered 410 Gone; it will be fetched again")
    if report.moved_from:
        click.echo(f"  {report.moved_from} has moved permanently: added its new address")
    if report.stories is not None:
        entries = "entry" if report.stories == 1 else "entries"
        click.echo(f"  checked: {report.stories} {entries} read")


@feeds.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--category", help="Put every imported feed in this category (not the file's).")
@click.option("--dry-run", is_flag=True, help="Show what would be added; change nothing.")
@_translate_errors
def feeds_import(file: str, category: str | None, dry_run: bool) -> None:
    """Add the feeds an OPML file lists that are not configured yet; report the rest.

    Exits 1 if the file yielded no feed at all.
    """
    from digest.feeds import import_opml

    settings = _settings()
    with _runtime(settings, "read" if dry_run else "update") as runtime:
        report = import_opml(runtime, file, category=category, dry_run=dry_run)
    verb = "would add" if dry_run else "added"
    _print_sources(f"{verb} {len(report.added)} to {settings.config_path}:", "+", report.added)
    _print_sources(f"skipped {len(report.skipped)} already configured:", "=", report.skipped)
    problems = report.opml.problems
    if problems:
        click.echo(f"{len(problems)} problem(s) in {file}:")
        for problem in problems[:_MAX_PROBLEMS]:
            click.echo(f"  ! {problem}")
        if len(problems) > _MAX_PROBLEMS:
            click.echo(f"  ... and {len(problems) - _MAX_PROBLEMS} more")
    click.echo(
        f"{file}: {len(report.opml.feeds)} feeds found, {len(report.added)} {verb}, "
        f"{len(report.skipped)} already configured, {len(problems)} problem(s)"
    )
    if not report.opml.feeds:
        sys.exit(1)


_MAX_PROBLEMS = 30


def _print_sources(heading: str, mark: str, sources: Sequence[FeedSource]) -> None:
    if not sources:
        return
    click.echo(heading)
    for source in sources:
        category = f" [{source.category}]" if source.category else ""
        click.echo(f"  {mark} {source.title}{category}  {source.url}")


@feeds.command("export")
@click.option("--out", type=click.Path(dir_okay=False), help="Write here, not to standard output.")
@_translate_errors
def feeds_export(out: str | None) -> None:
    """Write every configured feed as an OPML 2.0 file, one folder per category."""
    from digest.feeds import export_opml

    data = export_opml(_settings())
    if out is None:
        click.echo(data, nl=False)
        return
    try:
        Path(out).write_bytes(data)
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror or exc}") from exc
    click.echo(f"wrote {out}")
