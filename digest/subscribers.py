"""Subscribers: ``digest subscribers list | add | remove | import | export``, who an edition
goes to, and the bounces that stop mail to an address.

Readers come from two sources. The settings file's ``[delivery].recipients`` and
``recipients_file`` are imported into the store on each send as active subscribers
(how "settings"), but only addresses the store does not know yet: one it knows keeps its
state, so a reader who unsubscribed or bounced is never brought back by the settings file.
The store's subscribers are the other source (``digest subscribers add`` and ``import``).
Every edition goes to the store's active subscribers, and to nobody else.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from email.utils import parseaddr
from pathlib import Path

from digest.errors import DigestError, RecipientRefusedError
from digest.models import Subscriber, SubscriberState
from digest.runtime import Runtime
from digest.settings_models import check_address
from digest.store import Store
from digest.subscriber_csv import normalised_address, read_subscriber_csv, write_subscriber_csv

# The one list a store holds today; the store keys every subscriber by list and address.
LIST_SLUG = "default"
ACTIVE = SubscriberState.ACTIVE
# "User unknown" by its enhanced status code (RFC 3463) or in words: bounced at once.
_UNKNOWN_USER = re.compile(r"\b5\.1\.1\b|user unknown|unknown user|no such user", re.IGNORECASE)


def _reader(recipient: str) -> tuple[str, str | None]:
    name, address = parseaddr(recipient)
    return normalised_address(address), name or None


# Who an edition goes to


def import_settings_recipients(runtime: Runtime, now: datetime) -> int:
    """Add the settings file's recipients the store does not know yet as active; how many."""
    readers = [_reader(r) for r in runtime.settings.delivery.recipients]
    return runtime.store.add_subscribers(LIST_SLUG, readers, how="settings", now=now)


def active_subscribers(store: Store) -> tuple[Subscriber, ...]:
    """Who an edition goes to: the store's active subscribers, oldest first."""
    return store.subscribers(LIST_SLUG, [ACTIVE])


def edition_recipients(runtime: Runtime) -> tuple[str, ...]:
    """Who an edition would go to now, without writing: the active subscribers, then the
    settings file's addresses the store does not know yet (the next send imports them)."""
    active = [s.recipient for s in active_subscribers(runtime.store)]
    return (*active, *list_subscribers(runtime)[1])


def require_recipients(runtime: Runtime) -> None:
    """Raise DigestError, naming both sources, if an edition would go to nobody."""
    if edition_recipients(runtime):
        return
    listed = len(runtime.settings.delivery.recipients)
    in_settings = (
        f"the {listed} in the settings file are all unsubscribed or bounced"
        if listed
        else "[delivery].recipients and recipients_file list nobody"
    )
    raise DigestError(
        f"no one to send to: {in_settings}, and the store ({runtime.settings.store.location})"
        " has no active subscriber",
        hint="add readers to [delivery].recipients, or with `digest subscribers add ADDRESS`"
        " or `digest subscribers import FILE.csv`; `digest subscribers list` shows who is there",
    )


# Bounces


def is_unknown_user(code: int, answer: str) -> bool:
    """Does a 5xx answer say the mailbox does not exist (5.1.1, "user unknown")?"""
    return 500 <= code < 600 and _UNKNOWN_USER.search(answer) is not None


class Bounces:
    """Records what the server said about each recipient during one edition: a refusal (a
    5xx at RCPT TO or DATA) counts towards a bounce, a delivery clears the count. A 4xx, or
    any other failure, is never a bounce."""

    def __init__(self, store: Store, limit: int, subscribers: tuple[Subscriber, ...]) -> None:
        self.store, self.limit = store, limit
        self._counted = {s.address.lower() for s in subscribers if s.bounce_count}

    def refused(
        self, address: str, edition_on: date, error: RecipientRefusedError, now: datetime
    ) -> None:
        """Count the refusal; "user unknown" bounces at once, others at ``limit`` editions."""
        limit = 1 if is_unknown_user(error.code, error.answer) else self.limit
        self.store.record_bounce(LIST_SLUG, address, edition_on, error.answer, now, limit=limit)

    def has_count(self, address: str) -> bool:
        return address.lower() in self._counted

    def delivered(self, address: str) -> None:
        """The edition reached them: their consecutive bounces start again from zero."""
        self.store.clear_bounces(LIST_SLUG, address)


# digest subscribers list | add | remove


def list_subscribers(runtime: Runtime) -> tuple[tuple[Subscriber, ...], tuple[str, ...]]:
    """Every subscriber of the list, in any state, oldest first; and the settings file's
    addresses not in the store yet (the next send adds them)."""
    found = runtime.store.subscribers(LIST_SLUG)
    known = {s.address.lower() for s in found}
    new = [r for r in runtime.settings.delivery.recipients if _reader(r)[0].lower() not in known]
    return found, tuple(new)


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """What ``add`` or ``remove`` did: the subscriber as they are now, and as they were."""

    subscriber: Subscriber
    before: Subscriber | None  # None: the address was new to the store

    @property
    def is_changed(self) -> bool:
        return self.before is None or self.before != self.subscriber


def add_subscriber(runtime: Runtime, recipient: str) -> Change:
    """Make an address (optionally with a name, "Ann <ann@example.org>") active, whatever
    its state: the operator adding a reader who left is an explicit choice."""
    try:
        check_address(recipient)
    except ValueError as exc:
        raise DigestError(f"{recipient!r}: {exc}") from None
    address, name = _reader(recipient)
    return _change(runtime, address, ACTIVE, name, done=(ACTIVE,))


def remove_subscriber(runtime: Runtime, address: str) -> Change:
    """Mark an address unsubscribed (kept, so no import brings it back); one the store did
    not know is recorded unsubscribed too, so the settings file cannot add it later."""
    try:
        check_address(address)
    except ValueError as exc:
        raise DigestError(f"{address!r}: {exc}") from None
    gone = (SubscriberState.UNSUBSCRIBED, SubscriberState.BOUNCED)  # a bounce keeps its reason
    return _change(runtime, _reader(address)[0], SubscriberState.UNSUBSCRIBED, None, done=gone)


def _change(
    runtime: Runtime,
    address: str,
    state: SubscriberState,
    name: str | None,
    *,
    done: tuple[SubscriberState, ...],
) -> Change:
    """Move the address to ``state``, unless it is in one of ``done`` already."""
    store = runtime.store
    with store.atomic():
        before = store.subscriber(LIST_SLUG, address)
        if before is not None and before.state in done:
            return Change(subscriber=before, before=before)
        now = runtime.clock()
        after = store.set_subscriber_state(LIST_SLUG, address, state, how="cli", now=now, name=name)
    return Change(subscriber=after, before=before)


# digest subscribers import | export


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportReport:
    """What ``digest subscribers import`` did with one CSV file."""

    lines: int  # data lines read
    problems: tuple[str, ...]  # each bad line: its number and what is wrong
    added: int = 0  # new addresses, now active
    kept: Counter[str]  # addresses the store knew already, by their state (left as they are)


def import_subscribers(runtime: Runtime, path: Path, *, skip_bad: bool) -> ImportReport:
    """Add the file's new addresses as active, in one transaction; those the store knows
    keep their state. Any bad line imports nothing, unless ``skip_bad``."""
    try:
        found = read_subscriber_csv(path.read_bytes())
    except OSError as exc:
        raise DigestError(f"{path}: cannot read it: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise DigestError(
            f"{path}: {exc}", hint="the first line names the columns: email,name"
        ) from None
    store = runtime.store
    known = {s.address.lower(): s.state for s in store.subscribers(LIST_SLUG)}
    kept = Counter(str(known[a.lower()]) for a, _ in found.readers if a.lower() in known)
    report = ImportReport(lines=found.lines, problems=found.problems, kept=kept)
    if found.problems and not skip_bad:
        return report
    added = store.add_subscribers(LIST_SLUG, found.readers, how="import", now=runtime.clock())
    return ImportReport(lines=found.lines, problems=found.problems, kept=kept, added=added)


def export_subscribers(runtime: Runtime) -> str:
    """Every subscriber as CSV: address, name, state, since, how, reason, bounces."""
    return write_subscriber_csv(runtime.store.subscribers(LIST_SLUG))
