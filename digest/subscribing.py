"""Subscribing on the web: what ``digest web``'s forms and links do (a use case).

``request_subscription`` (the subscribe form) records the address as pending, if new, and
mails it a signed confirm link (double opt-in), within the per-client and per-address limits;
``confirm_subscription`` and ``unsubscribe`` follow a signed link. A link issued before the
subscriber's state last changed is stale: confirming twice is harmless, but an old confirm
link never brings back a reader who unsubscribed since. Nothing here says whether an address
was subscribed already: the form's answer is the same either way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from enum import StrEnum

from digest.errors import DeliveryError
from digest.messages import header_safe, outgoing
from digest.models import Subscriber, SubscriberState
from digest.runtime import Runtime
from digest.settings_models import Settings, check_address
from digest.subscriber_csv import normalised_address
from digest.subscribers import LIST_SLUG
from digest.web_tokens import BadTokenError, LinkSigner, read_secret_key

logger = logging.getLogger(__name__)

ACTIVE, PENDING = SubscriberState.ACTIVE, SubscriberState.PENDING
_DAY, _HOUR = timedelta(days=1), timedelta(hours=1)


class Asked(StrEnum):
    """What became of a subscribe form's post."""

    ANSWERED = "answered"  # "check your inbox" (mailed, or quietly not: the page is the same)
    BAD_ADDRESS = "bad-address"  # not one plain email address
    TOO_MANY = "too-many"  # this client posted too often
    NOT_MAILED = "not-mailed"  # the mail backend failed: the reader should try again later


def web_address(settings_base_url: str | None, path: str) -> str:
    """``path`` under the site's public address (``[web].base_url``)."""
    return f"{settings_base_url or ''}{path}"


def request_subscription(runtime: Runtime, signer: LinkSigner, raw: str, client: str) -> Asked:
    """Mail ``raw`` a confirm link (adding it as pending if new), unless the client posted
    too often, the address is not one plain address, or it had its emails for the day."""
    web, store, now = runtime.settings.web, runtime.store, runtime.clock()
    hourly = web.posts_per_client_per_hour
    if not store.take_allowance("post", client, now, window=_HOUR, limit=hourly):
        return Asked.TOO_MANY
    address = _plain_address(raw)
    if address is None:
        return Asked.BAD_ADDRESS
    with store.atomic():
        store.add_subscribers(LIST_SLUG, [(address, None)], how="form", now=now, state=PENDING)
        found = store.subscriber(LIST_SLUG, address)
        assert found is not None  # just added, or there already
        daily = web.emails_per_address_per_day
        is_due = found.state is not ACTIVE and store.take_allowance(
            "confirm-email", address.lower(), now, window=_DAY, limit=daily
        )
    if is_due:
        try:
            _mail_confirm_link(runtime, signer, found, now)
        except DeliveryError as exc:  # the backend's failure: logged for the operator
            logger.error("subscribe form: the confirmation to %s failed: %s", address, exc)
            return Asked.NOT_MAILED
    else:
        logger.info("subscribe form: no email to %s (%s)", address, found.state)
    return Asked.ANSWERED


def _plain_address(raw: str) -> str | None:
    """The form's address, normalised, if it is one bare address (no name, no line break)."""
    value = raw.strip()
    try:
        check_address(value)
    except ValueError:
        return None
    if parseaddr(value)[1] != value or len(value) > 254:
        return None
    return normalised_address(value)


def _mail_confirm_link(
    runtime: Runtime, signer: LinkSigner, subscriber: Subscriber, now: datetime
) -> None:
    settings = runtime.settings
    token = signer.sign("confirm", subscriber.subscriber_id, subscriber.list_slug, now)
    link = web_address(settings.web.base_url, f"/confirm/{token}")
    message = confirm_message(
        title=settings.render.title,
        sender=settings.delivery.from_,
        address=subscriber.address,
        link=link,
        hours=settings.web.confirm_hours,
        now=now,
    )
    assert runtime.mailers is not None  # the web side opens its store for writing
    mailer = runtime.mailers()
    try:
        mailer.send(outgoing(message, subscriber.address))
    finally:
        mailer.close()


def confirm_message(
    *, title: str, sender: str, address: str, link: str, hours: int, now: datetime
) -> EmailMessage:
    """The double opt-in email: one link that confirms, and what to do if it was not you."""
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = header_safe(sender)
    message["To"] = address
    message["Subject"] = header_safe(f"Confirm your subscription to {title}")
    message["Date"] = format_datetime(now)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "digest.invalid"
    message["Message-ID"] = make_msgid("confirm", domain=domain)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(
        f"Someone, hopefully you, asked to receive {title} at {address}.\n\n"
        f"To confirm, open this link (it works for {hours} hours):\n\n{link}\n\n"
        "If it was not you, ignore this email: nothing will be sent to you.\n",
        cte="quoted-printable",
    )
    return message


def confirm_subscription(runtime: Runtime, signer: LinkSigner, token: str) -> Subscriber:
    """Make the link's subscriber active (how "form"); BadTokenError if the link is bad,
    expired, or older than their last change (they unsubscribed since)."""
    now, hours = runtime.clock(), runtime.settings.web.confirm_hours
    claim = signer.read("confirm", token, now, max_age=timedelta(hours=hours))
    store = runtime.store
    with store.atomic():
        found = store.subscriber_by_id(claim.subscriber_id)
        if found is None or found.list_slug != claim.list_slug:
            raise BadTokenError("this link names no subscriber of this list")
        if found.state is ACTIVE:
            return found  # confirmed already: a second click changes nothing
        if found.state_changed_at > claim.issued_at:
            raise BadTokenError("this link is older than your last change: subscribe again")
        return store.set_subscriber_state(LIST_SLUG, found.address, ACTIVE, how="form", now=now)


def unsubscribe(runtime: Runtime, signer: LinkSigner, token: str) -> Subscriber:
    """Make the link's subscriber unsubscribed (how "one-click"); once is enough, and again
    changes nothing. BadTokenError if the link is bad."""
    now = runtime.clock()
    claim = signer.read("unsubscribe", token, now)
    store = runtime.store
    with store.atomic():
        found = store.subscriber_by_id(claim.subscriber_id)
        if found is None or found.list_slug != claim.list_slug:
            raise BadTokenError("this link names no subscriber of this list")
        if found.state is SubscriberState.UNSUBSCRIBED:
            return found
        gone = SubscriberState.UNSUBSCRIBED
        return store.set_subscriber_state(LIST_SLUG, found.address, gone, how="one-click", now=now)


def unsubscribe_link(base_url: str, signer: LinkSigner, subscriber: Subscriber) -> str:
    """A subscriber's one-click unsubscribe address (it never expires)."""
    token = signer.sign("unsubscribe", subscriber.subscriber_id, subscriber.list_slug, _EPOCH)
    return f"{base_url}/unsubscribe/{token}"


def unsubscribe_links(
    settings: Settings, subscribers: Iterable[Subscriber]
) -> dict[str, str] | None:
    """Each subscriber's one-click URL by lower-case address, with ``[web].base_url``
    (signed with ``$DIGEST_SECRET_KEY``, DigestError if it is unusable); None without."""
    base_url = settings.web.base_url
    if base_url is None:
        return None
    signer = LinkSigner(read_secret_key())
    return {s.address.lower(): unsubscribe_link(base_url, signer, s) for s in subscribers}


# An unsubscribe link's "issued at" is fixed: it never expires, and the same reader gets the
# same link in every edition (which keeps the per-edition cost to one signature each).
_EPOCH = datetime.fromisoformat("2000-01-01T00:00:00+00:00")
