"""What the commands print: the collect and send reports, the status, the feeds table, the
delivery ledger. Text for people (and ``--json`` for monitoring); nothing here reads the
store or decides anything."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from collections.abc import Mapping, Sequence
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from digest.models import (
    Delivery,
    DeliveryState,
    FeedHealth,
    FeedSource,
    FetchFailure,
    FilterCount,
    JobRun,
    SendLockHolder,
    StoreCheck,
)

if TYPE_CHECKING:
    from digest import collecting, sending
    from digest.config import Settings
    from digest.feeds import AddReport, ImportReport
    from digest.status import DaemonStatus
    from digest.store_migration import StoreMigration


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """``1 feed``, ``2 feeds``: a count with its noun (``plural`` when not just an s)."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def local_time(moment: datetime | None, tz: tzinfo) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M") if moment else ""


# collect


def print_collect(report: collecting.CollectReport, tz: tzinfo) -> None:
    width = max([len(_clip(f.name, _NAME_WIDTH)) for f in report.feeds] + [4])
    click.echo(f"{'feed':<{width}}  {'status':<9}  {'new':>4}  detail")
    for feed in report.feeds:
        detail = f"{feed.error_kind}: {feed.error}" if feed.error_kind else feed.error or ""
        if feed.moved_to:
            detail = f"{detail} (moved permanently to {feed.moved_to})".lstrip()
        if feed.warnings:
            detail = "; ".join([detail, *feed.warnings]).lstrip("; ")
        if feed.not_before:
            detail = f"not due before {local_time(feed.not_before, tz)} ({feed.hold_reason})"
        name = _clip(feed.name, _NAME_WIDTH)
        row = f"{name:<{width}}  {feed.status:<9}  {feed.new_stories:>4}  "
        click.echo("\n".join(_wrapped(row, detail)).rstrip())
    ok = len(report.feeds) - len(report.failed)
    ok -= len(report.skipped) + len(report.not_read) + len(report.not_saved)
    not_due = len(report.skipped) - len(report.taken)
    skipped = f", {not_due} not due yet" if not_due else ""
    skipped += f", {len(report.taken)} another collector's" if report.taken else ""
    skipped += f", {len(report.not_saved)} not saved" if report.not_saved else ""
    click.echo(
        f"{counted(len(report.feeds), 'feed')}: {ok} read, {len(report.failed)} failed"
        f"{skipped}; {counted(report.new_stories, 'new story', 'new stories')}"
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


# preview


def print_preview_written(subject: str, trimmed_stories: int, path: Path) -> None:
    click.echo(f"subject: {subject}")
    if trimmed_stories:
        click.echo(f"trimmed: left out {trimmed_stories} stories to stay under the cap")
    click.echo(f"wrote {path}")


def print_filter_counts(counts: Sequence[FilterCount], *, err: bool = False) -> None:
    """'filters: global exclude removed 4; feed Example include removed 12' (none set: nothing)."""
    if counts:
        said = "; ".join(f"{count.label} removed {count.removed}" for count in counts)
        click.echo(f"filters: {said}", err=err)


def edition_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


# send


def print_waiting(holder: SendLockHolder, *, tz: tzinfo) -> None:
    who = f"pid {holder.pid}" if holder.pid else "pid unknown"
    if holder.command:
        who += f", `{holder.command}`"
    if holder.since_at:
        who += f", building since {local_time(holder.since_at, tz)}"
    click.echo(
        f"waiting for another digest send ({who}) to collect and build the edition; then this"
        " one sends it with it, sharing the recipients (Ctrl-C stops waiting)",
        err=True,
    )


_STOPPED_BEFORE_SENDING = {
    "waiting": "stopped on request while waiting for another digest send to build the edition;"
    " nothing sent",
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


def print_plan(plan: sending.SendReport) -> None:
    if plan.rendered is None:
        click.echo(f"edition {plan.edition_on}: no new stories stored; nothing would be sent")
        return
    click.echo(f"edition {plan.edition_on}: {plan.rendered.subject}")
    for delivery in plan.deliveries:
        action = "already sent" if delivery.state is DeliveryState.SENT else "would send"
        if delivery.state is DeliveryState.SENDING:
            action = "uncertain, would not resend"
        click.echo(f"  {delivery.recipient}: {action}")


def print_send(report: sending.SendReport, tz: tzinfo) -> None:
    from digest.ledger import delivery_detail  # the caller has loaded digest.sending

    if report.collect is not None:
        print_collect(report.collect, tz)
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
    if report.resumes_at is not None:
        click.echo(
            f"rate limit reached ([delivery].max_per_hour): sent {sent}, {pending} left pending;"
            f" they can go on at {local_time(report.resumes_at, tz)}"
            " (`digest send` then; the daemon goes on by itself)"
        )


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


# deliveries


def print_deliveries(edition_on: date | None, rows: Sequence[Delivery], tz: tzinfo) -> None:
    from digest.ledger import delivery_detail  # the caller has loaded digest.ledger

    if not rows:
        click.echo(f"no deliveries recorded{f' for {edition_on}' if edition_on else ''}")
        return
    width = max(len(d.recipient) for d in rows)
    click.echo(f"edition {edition_on}: {counted(len(rows), 'recipient')}")
    for d in rows:
        when = local_time(d.sent_at, tz) or "-"
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


# status


def print_status(found: DaemonStatus, tz: tzinfo) -> None:
    from digest.ledger import delivery_detail  # the caller has loaded digest.status

    nexts = ", ".join(local_time(t, tz) for t in found.next_editions_at) or "none"
    click.echo(f"next edition: {nexts}")
    when = local_time(found.next_collect_at, tz) or "when the daemon starts"
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
        until = local_time(held.not_before, tz)
        click.echo(f"not due: {held.url} until {until} ({held.hold_reason})")
    for delivery in found.undelivered:
        detail = f"{_STATE_LABELS[delivery.state]} {delivery_detail(delivery)}".rstrip()
        click.echo(f"undelivered: {delivery.edition_on} {delivery.recipient}: {detail}")


def _print_run(label: str, run: JobRun | None, tz: tzinfo) -> None:
    if run is None:
        click.echo(f"{label}: never")
        return
    seconds = (run.finished_at - run.started_at).total_seconds()
    when = local_time(run.started_at, tz)
    click.echo(f"{label}: {when} {run.outcome} ({seconds:.1f} s): {run.summary}")
    for failure in run.failures:
        click.echo(f"  failed: {failure}")


def status_json(found: DaemonStatus) -> str:
    document = dataclasses.asdict(found) | {"needs_attention": found.needs_attention}
    return json.dumps(document, indent=2, ensure_ascii=False, default=_json_default)


def _json_default(value: object) -> str:
    if isinstance(value, date):  # datetimes too
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# check


def print_settings_ok(settings: Settings) -> None:
    click.echo(
        f"{settings.config_path}: OK ({counted(len(settings.feeds), 'feed')}, "
        f"{counted(len(settings.delivery.recipients), 'recipient')}, "
        f"summarizer {settings.summarize.summarizer}, backend {settings.delivery.backend})"
    )


def print_store_check(store: StoreCheck) -> None:
    version = f" {store.version}" if store.version else ""
    if not store.exists:
        state = "no store yet: the first collect or send makes it"
    else:
        pending = ", ".join(store.pending) or "none"
        state = f"{counted(len(store.applied), 'migration')} applied, pending: {pending}"
    click.echo(f"store: {store.engine}{version} at {store.location}: {state}")


def print_store_migration(migration: StoreMigration) -> None:
    """The copy's table: per table the source's rows, those copied and those already there,
    and the target's rows; then whether every source row is in the target."""
    click.echo(f"from {migration.source}\nto   {migration.target}\n")
    heading = ("table", "source rows", "copied", "already there", "target rows")
    click.echo(f"{heading[0]:<14}" + "".join(f"{title:>15}" for title in heading[1:]))
    for table in migration.tables:
        counts = (table.source_rows, table.copied, table.already_there, table.target_rows)
        missing = table.source_rows - table.present
        mark = f"  MISSING {missing}" if missing else ""
        mark += f"  DIFFERING {table.differing}" if table.is_disagreeing else ""
        click.echo(f"{table.table:<14}" + "".join(f"{n:>15}" for n in counts) + mark)
    if differing := [table for table in migration.tables if table.differing]:
        click.echo("\nkept as the target has them, though the source's differ:")
        for table in differing:
            click.echo(f"  {table.table}: {counted(table.differing, 'row')}, such as")
            for example in table.differing_examples:
                click.echo(f"    {example}")
    rows = sum(table.source_rows for table in migration.tables)
    if migration.is_verified:
        click.echo(f"\nverified: all {counted(rows, 'source row')} are in the target")


# feeds


def print_health(health: Sequence[FeedHealth], tz: tzinfo) -> None:
    names = max([len(h.source.title[:40]) for h in health] + [4])
    errors = [_last_error(h, tz) for h in health]
    error_width = max([len(e) for e in errors] + [10])
    click.echo(
        f"{'status':<7}  {'name':<{names}}  {'stories':>7}  {'fails':>5}  "
        f"{'last success':<16}  {'last error':<{error_width}}  url"
    )
    for item, error in zip(health, errors, strict=True):
        success = local_time(item.last_success_at, tz) or "never"
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
        f"{counted(len(health), 'feed')}: {summary}; "
        "`digest feeds failures URL` lists a feed's failures"
    )


def _last_error(health: FeedHealth, tz: tzinfo, width: int = 60) -> str:
    if not health.last_error:
        return "-"
    error = f"{health.last_error_kind or 'error'}: {' '.join(health.last_error.split())}"
    if len(error) > width:
        error = error[: width - 1] + "…"
    return f"{local_time(health.last_error_at, tz)} {error}".strip()


def health_json(health: Sequence[FeedHealth]) -> str:
    return json.dumps([_health_record(h) for h in health], indent=2, ensure_ascii=False)


def _health_record(health: FeedHealth) -> dict[str, object]:
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


def print_failures(source: FeedSource, failures: Sequence[FetchFailure], tz: tzinfo) -> None:
    if not failures:
        click.echo(f"{source.title}: no failures recorded")
        return
    click.echo(f"{source.title} ({source.url}): {len(failures)} most recent failures, newest first")
    for failure in failures:
        when = local_time(failure.failed_at, tz)
        click.echo(f"  {when}  {failure.kind:<10}  {failure.message}")


def print_added(report: AddReport, config_path: Path) -> None:
    source = report.source
    if report.is_added:
        click.echo(f"added {source.title} ({source.url}) to {config_path}")
    if report.is_revived:
        click.echo(f"revived {source.title}: it had answered 410 Gone; it will be fetched again")
    if report.moved_from:
        click.echo(f"  {report.moved_from} has moved permanently: added its new address")
    if report.stories is not None:
        entries = "entry" if report.stories == 1 else "entries"
        click.echo(f"  checked: {report.stories} {entries} read")


def print_import(report: ImportReport, file: str, config_path: Path, *, dry_run: bool) -> None:
    verb = "would add" if dry_run else "added"
    _print_sources(f"{verb} {len(report.added)} to {config_path}:", "+", report.added)
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


_MAX_PROBLEMS = 30


def _print_sources(heading: str, mark: str, sources: Sequence[FeedSource]) -> None:
    if not sources:
        return
    click.echo(heading)
    for source in sources:
        category = f" [{source.category}]" if source.category else ""
        click.echo(f"  {mark} {source.title}{category}  {source.url}")
