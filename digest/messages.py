"""Messages: RenderedDigest -> one RFC 5322 message per recipient (pure).

The Message-ID is fixed by (newsletter, edition, recipient), so a resend keeps one identity;
every header value is one safe line; the list headers (RFC 2369/2919/8058) come from the
list settings. ``EditionMessages`` makes each recipient's message of one edition with the
body serialised once. The mail backends that take them are in ``digest.mailers`` and
``digest.smtp_mailer``.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import date, datetime
from email import policy
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime, parseaddr
from typing import cast

from digest.models import OutgoingMessage, RenderedDigest

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
# Stands for the reader's own unsubscribe token in a rendered edition (letters only: the
# same in HTML, text and quoted-printable); each message has the reader's token instead.
UNSUBSCRIBE_TOKEN = "xDigestReaderUnsubscribeTokenx"


def make_message_id(edition_on: date, recipient: str, sender: str, newsletter: str = "") -> str:
    """A Message-ID fixed by (newsletter, edition, recipient), so any resend keeps one identity.

    ``newsletter`` (its List-ID, else its title) and the sender's address keep two digests
    sent from one domain apart: the same ID on both, and a mail system drops the second.
    """
    address = parseaddr(recipient)[1].lower()
    sender_address = parseaddr(sender)[1].lower()
    key = f"{edition_on.isoformat()}\n{address}\n{sender_address}\n{newsletter}"
    token = hashlib.sha256(key.encode()).hexdigest()[:24]
    domain = sender_address.rpartition("@")[2] or "digest.invalid"
    return f"<digest.{edition_on:%Y%m%d}.{token}@{domain}>"


def header_safe(value: str) -> str:
    """One line of header text: control characters and line breaks become spaces.

    Encoded words are decoded first, as the email package will: on Python 3.11.7 a subject
    holding ``=?UTF-8?Q?=0A?=Bcc: x`` otherwise serialises as a real ``Bcc:`` line.
    """
    for _ in range(3):
        try:
            decoded = str(make_header(decode_header(value)))
        except (HeaderParseError, LookupError, UnicodeDecodeError):
            decoded = value.replace("=?", "= ?")  # undecodable: disarm every encoded word
        clean = " ".join(_CONTROL.sub(" ", decoded).split())
        if clean == value:
            return value
        value = clean
    # Still changing after three rounds (words encoded inside words): the email package
    # would decode one more, which may be a line break; disarm what is left.
    return value.replace("=?", "= ?")


class _UriListHeader(UnstructuredHeader):
    """A header of ``<URI>`` items folded only between items: the email package would
    otherwise turn a long URL into encoded words, which no mail client follows."""

    def fold(self, *, policy: Policy) -> str:
        items = (f",{policy.linesep} ").join(str(self).split(", "))
        name = cast(BaseHeader, self).name  # the registry mixes BaseHeader in
        return f"{name}: {items}{policy.linesep}"


def _message_policy() -> Policy:
    registry = HeaderRegistry()
    registry.map_to_type("list-unsubscribe", cast(type[BaseHeader], _UriListHeader))
    return policy.SMTP.clone(header_factory=registry)


_POLICY = _message_policy()


def build_message(
    rendered: RenderedDigest,
    *,
    sender: str,
    recipient: str,
    message_id: str,
    sent_at: datetime,
    unsubscribe_url: str | None = None,
    unsubscribe_mailto: str | None = None,
    list_id: str | None = None,
) -> EmailMessage:
    """A multipart/alternative message (text, then HTML) for one recipient, with the
    RFC 2369/2919/8058 list headers for whichever of the list settings are given."""
    message = EmailMessage(policy=_POLICY)
    _set_headers(message, rendered.subject, sender, recipient, message_id, sent_at)
    for name, value in list_headers(unsubscribe_url, unsubscribe_mailto, list_id).items():
        message[name] = value
    _set_body(message, rendered)
    return message


def _set_headers(
    message: EmailMessage,
    subject: str,
    sender: str,
    recipient: str,
    message_id: str,
    sent_at: datetime,
) -> None:
    message["From"] = header_safe(sender)
    message["To"] = header_safe(recipient)
    message["Subject"] = header_safe(subject)
    message["Date"] = format_datetime(sent_at)
    message["Message-ID"] = message_id


_BODY_CTE = "quoted-printable"


def _set_body(message: EmailMessage, rendered: RenderedDigest) -> None:
    message.set_content(rendered.text, cte=_BODY_CTE)
    message.add_alternative(rendered.html, subtype="html", cte=_BODY_CTE)


def html_part_size(html: str) -> int:
    """Bytes of the HTML part's body as sent: transfer-encoded as ``_set_body`` does, CRLF
    line ends. In quoted-printable each "=" and each byte of a non-ASCII character is three."""
    part = EmailMessage(policy=_POLICY)
    part.set_content(html, subtype="html", cte=_BODY_CTE)
    body = str(part.get_payload())  # a single part's body is one str
    return len(body) + body.count("\n")  # ASCII only; each LF goes out as CRLF


def outgoing(message: EmailMessage, recipient: str) -> OutgoingMessage:
    """A built message as a backend takes it."""
    return OutgoingMessage(
        recipient=recipient,
        sender=parseaddr(str(message["From"]))[1],
        message_id=str(message["Message-ID"]),
        data=wire_bytes(message),
    )


class EditionMessages:
    """Each recipient's message of one edition, as ``build_message`` makes it, faster: the
    MIME body (the same for everyone) is serialised once, only the headers per recipient.

    With ``reader_links`` (address -> that reader's one-click unsubscribe URL, ending in
    their token), each reader's List-Unsubscribe carries their own URL, and their token
    replaces ``UNSUBSCRIBE_TOKEN`` in the body (the footer's link): the body's parts are
    still encoded once, around the placeholder, and only the token is encoded per reader."""

    def __init__(
        self,
        rendered: RenderedDigest,
        *,
        sender: str,
        unsubscribe_url: str | None = None,
        unsubscribe_mailto: str | None = None,
        list_id: str | None = None,
        reader_links: Mapping[str, str] | None = None,
    ) -> None:
        self.rendered, self.sender = rendered, sender
        self._mailto, self._list_id = unsubscribe_mailto, list_id
        self._list_headers = list_headers(unsubscribe_url, unsubscribe_mailto, list_id)
        self._links = reader_links
        self._body = _BodyWithToken(rendered) if reader_links is not None else None
        body = EmailMessage(policy=_POLICY)
        _set_body(body, rendered)
        self._plain_body = wire_bytes(body)  # its own Content-Type and MIME-Version, then the parts

    def for_recipient(self, recipient: str, message_id: str, sent_at: datetime) -> OutgoingMessage:
        head = EmailMessage(policy=_POLICY)
        _set_headers(head, self.rendered.subject, self.sender, recipient, message_id, sent_at)
        list_headers_, body = self._list_headers, self._plain_body
        link = self._links.get(parseaddr(recipient)[1].lower()) if self._links else None
        if link is not None and self._body is not None:
            list_headers_ = list_headers(link, self._mailto, self._list_id)
            body = self._body.with_token(link.rpartition("/")[2])
        for name, value in list_headers_.items():
            head[name] = value
        data = wire_bytes(head).removesuffix(b"\r\n") + body  # no blank line between
        return OutgoingMessage(
            recipient=recipient,
            sender=parseaddr(self.sender)[1],
            message_id=message_id,
            data=data,
        )


_SLOTS = ("xDigestTextPartx", "xDigestHtmlPartx")


class _BodyWithToken:
    """The edition's MIME body with a reader's token in place of ``UNSUBSCRIBE_TOKEN``.

    The skeleton (headers, boundaries) is serialised once with a slot for each part, and each
    part's text is quoted-printable encoded once, in pieces split at the placeholder; a
    reader's body joins the pieces around their encoded token with soft line breaks, so no
    line grows past what quoted-printable allows."""

    def __init__(self, rendered: RenderedDigest) -> None:
        skeleton = EmailMessage(policy=_POLICY)
        _set_body(skeleton, replace(rendered, text=_SLOTS[0], html=_SLOTS[1]))
        self._skeleton = wire_bytes(skeleton)
        self._parts = tuple(
            tuple(_quoted_printable(piece) for piece in text.split(UNSUBSCRIBE_TOKEN))
            for text in (rendered.text, rendered.html)
        )

    def with_token(self, token: str) -> bytes:
        encoded = b"=\r\n" + _quoted_printable(token) + b"=\r\n"
        body = self._skeleton
        for slot, pieces in zip(_SLOTS, self._parts, strict=True):
            part = encoded.join(pieces)  # ends in a line break, as the email package's does:
            part = part if pieces[-1].endswith(b"\r\n") else part + b"\r\n"
            body = body.replace(slot.encode() + b"\r\n", part, 1)
        return body


def _quoted_printable(text: str) -> bytes:
    """``text`` as quoted-printable UTF-8 with CRLF line ends (lines of at most 76)."""
    plain = re.sub(r"\r\n|\r", "\n", text).encode()
    return binascii.b2a_qp(plain, istext=True).replace(b"\n", b"\r\n")


def list_headers(
    unsubscribe_url: str | None, unsubscribe_mailto: str | None, list_id: str | None
) -> dict[str, str]:
    """List-ID, List-Unsubscribe and, with a URL, List-Unsubscribe-Post (one-click, RFC 8058)."""
    headers: dict[str, str] = {}
    if list_id:
        value = header_safe(list_id)
        headers["List-ID"] = value if "<" in value else f"<{value}>"
    uris = []
    if unsubscribe_mailto:
        address = parseaddr(header_safe(unsubscribe_mailto))[1]
        uris.append(f"<mailto:{address}?subject=unsubscribe>")
    if unsubscribe_url:
        uris.append(f"<{header_safe(unsubscribe_url).replace(' ', '%20')}>")
    if uris:
        headers["List-Unsubscribe"] = ", ".join(uris)
    if unsubscribe_url:
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return headers


def wire_bytes(message: EmailMessage) -> bytes:
    """The message as it goes over the wire: CRLF line ends throughout."""
    return re.sub(rb"\r\n|\r|\n", b"\r\n", message.as_bytes(policy=_POLICY))
