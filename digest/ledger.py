"""Editions and their delivery ledger: which day an edition is, who is still owed it, who
got it. Reads the runtime's store, never writes it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from email.utils import parseaddr

from digest.config import Settings
from digest.messages import make_message_id
from digest.models import Delivery, DeliveryState
from digest.runtime import Runtime
from digest.subscribers import edition_recipients


def edition_date(settings: Settings, now: datetime) -> date:
    """The edition a moment belongs to: the readers' local calendar day."""
    return now.astimezone(settings.tz).date()


def planned_deliveries(settings: Settings, recipients: Sequence[str], day: date) -> list[Delivery]:
    """A pending row for each recipient of ``day``'s edition, with its Message-ID."""
    sender = settings.delivery.from_
    newsletter = settings.delivery.list_id or settings.render.title
    return [
        Delivery(
            edition_on=day,
            recipient=recipient,
            message_id=make_message_id(day, recipient, sender, newsletter),
            state=DeliveryState.PENDING,
        )
        for recipient in recipients
    ]


def is_edition_outstanding(runtime: Runtime, day: date) -> bool:
    """Is an active subscriber (or a new recipient in the settings) still owed ``day``'s
    edition (not sent, and not in hand)?"""
    ledger = {d.address: d.state for d in runtime.store.deliveries(day)}
    owed = (DeliveryState.PENDING, DeliveryState.FAILED, None)
    # Bare and lower-cased, as Delivery.address keys the ledger.
    addresses = (parseaddr(r)[1].lower() for r in edition_recipients(runtime))
    return any(ledger.get(address) in owed for address in addresses)


# A row left "sending" with nothing said: the run that sent it recorded neither the server's
# answer nor why it could not (it may be sending it still, in another process).
UNRECORDED_OUTCOME = (
    "no outcome recorded: the run sending it was killed, or could not write to the store,"
    " between handing it to the mail server and recording the answer (or is sending it now)"
)


def delivery_detail(delivery: Delivery) -> str:
    """What the ledger says about a row; for an uncertain one, always why it is uncertain."""
    if delivery.state is DeliveryState.SENDING and not delivery.detail:
        return UNRECORDED_OUTCOME
    return delivery.detail or ""


def delivery_ledger(
    runtime: Runtime, edition_on: date | None = None
) -> tuple[date | None, tuple[Delivery, ...]]:
    """An edition's delivery rows (default: the latest edition with any)."""
    day = edition_on or runtime.store.latest_delivery_date()
    return day, runtime.store.deliveries(day) if day else ()
