"""Deliver: RenderedDigest -> one RFC 5322 message per recipient (pure), handed to a mail
backend (I/O).

Backends: ``outbox`` writes ``.eml`` files into a folder (the offline default), ``smtp``
talks to a server (STARTTLS or implicit TLS required when configured), ``sendmail`` pipes
to a local sendmail-compatible command. The delivery ledger that makes sending exactly-once
lives in the store and is driven by digest.sending; this module only builds and hands over.

A backend's ``send`` calls ``before_data()`` just before the message itself goes out (for
SMTP: after the server accepted MAIL FROM and RCPT TO), so the sender can commit the row
as ``sending`` there. What a failure means for the row is told by the exception:
``DeliveryError``, ``UncertainDeliveryError`` or ``MailerUnavailableError`` (see
``digest.errors``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import smtplib
import socket
import ssl
import subprocess
from collections.abc import Callable
from datetime import date, datetime
from email import policy
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Protocol, cast

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from digest.errors import DeliveryError, MailerUnavailableError, UncertainDeliveryError
from digest.models import OutgoingMessage, RenderedDigest

logger = logging.getLogger(__name__)

PASSWORD_ENV_VAR = "DIGEST_SMTP_PASSWORD"
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


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
    MIME body (the same for everyone) is serialised once, only the headers per recipient."""

    def __init__(
        self,
        rendered: RenderedDigest,
        *,
        sender: str,
        unsubscribe_url: str | None = None,
        unsubscribe_mailto: str | None = None,
        list_id: str | None = None,
    ) -> None:
        self.rendered, self.sender = rendered, sender
        self._list_headers = list_headers(unsubscribe_url, unsubscribe_mailto, list_id)
        body = EmailMessage(policy=_POLICY)
        _set_body(body, rendered)
        self._body = wire_bytes(body)  # its own Content-Type and MIME-Version, then the parts

    def for_recipient(self, recipient: str, message_id: str, sent_at: datetime) -> OutgoingMessage:
        head = EmailMessage(policy=_POLICY)
        _set_headers(head, self.rendered.subject, self.sender, recipient, message_id, sent_at)
        for name, value in self._list_headers.items():
            head[name] = value
        data = wire_bytes(head).removesuffix(b"\r\n") + self._body  # no blank line between
        return OutgoingMessage(
            recipient=recipient,
            sender=parseaddr(self.sender)[1],
            message_id=message_id,
            data=data,
        )


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


def _nothing() -> None:
    pass


class Mailer(Protocol):
    """Hands one message to the mail system; returns what the system answered.

    ``before_data`` is called once, as the message is about to go out (see the module
    docstring); if it raises, the message is not sent and the exception passes through.
    """

    def send(self, message: OutgoingMessage, *, before_data: Callable[[], None] = ...) -> str: ...

    def close(self) -> None: ...


class OutboxMailer:
    """Writes each message as ``<outbox>/<Message-ID>.eml``; a resend overwrites, never adds."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(
        self,
        message: OutgoingMessage,
        *,
        before_data: Callable[[], None] = _nothing,
    ) -> str:
        before_data()
        token = re.sub(r"[^A-Za-z0-9.]+", "_", message.message_id.strip("<>"))
        path = self.folder / f"{token}.eml"
        partial = path.with_suffix(".eml.partial")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(message.data)
            os.replace(partial, path)
        except OSError as exc:
            raise DeliveryError(
                f"cannot write {path}: {exc.strerror or exc}",
                hint="check [delivery].outbox in the settings",
            ) from exc
        return f"written to {path}"

    def close(self) -> None:
        pass


class _RetryableError(DeliveryError):
    """A temporary failure (a 4xx answer, or a connection lost before the message was
    complete): nothing was delivered, so another try is safe."""

    def __init__(self, message: str, *, is_connection: bool) -> None:
        super().__init__(message)
        self.is_connection = is_connection

    def give_up(self, attempts: int) -> DeliveryError:
        text = f"{self.message} (gave up after {attempts} attempts)"
        if self.is_connection:
            hint = (
                "is the server running, and are [smtp].host and [smtp].port right? The"
                " recipients not sent stay pending"
            )
            return MailerUnavailableError(text, hint=hint)
        return DeliveryError(text)


class SmtpMailer:
    """One SMTP connection for the whole edition, opened on first use, reopened when the
    server drops it and after ``per_connection`` messages; temporary failures are retried
    with exponential backoff, ``retries`` times at most."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: str,
        username: str | None,
        password: str | None,
        timeout: float,
        ca_file: Path | None = None,
        per_connection: int = 100,
        retries: int = 3,
        backoff_seconds: float = 1.0,
    ) -> None:
        self.host, self.port, self.security = host, port, security
        self.username, self.password, self.timeout = username, password, timeout
        self.ca_file, self.per_connection = ca_file, per_connection
        self.retries, self.backoff_seconds = retries, backoff_seconds
        self._smtp: smtplib.SMTP | None = None
        self._on_connection = 0
        self._local_hostname: str | None = None
        self._context: ssl.SSLContext | None = None

    @property
    def where(self) -> str:
        return f"SMTP {self.host}:{self.port}"

    def send(
        self,
        message: OutgoingMessage,
        *,
        before_data: Callable[[], None] = _nothing,
    ) -> str:
        address, sender, payload = message.address, message.sender, message.data
        retrying = Retrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_exponential(multiplier=self.backoff_seconds, max=60),
            retry=retry_if_exception_type(_RetryableError),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return retrying(self._attempt, sender, address, payload, before_data)
        except _RetryableError as exc:
            raise exc.give_up(self.retries + 1) from exc

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        text = str(error)
        if not text.startswith(f"{self.where}:"):  # connection errors name the server already
            text = f"{self.where}: {text}"
        logger.warning("%s; trying again in %.1f s", text, state.upcoming_sleep)

    def _attempt(
        self, sender: str, address: str, payload: bytes, before_data: Callable[[], None]
    ) -> str:
        if self._smtp is not None and self._on_connection >= self.per_connection:
            self.close()
        if self._smtp is None:
            self._smtp = self._connect()
            self._on_connection = 0
        try:
            answer = _transaction(self._smtp, sender, address, payload, before_data)
        except (_RetryableError, UncertainDeliveryError) as exc:
            if not isinstance(exc, _RetryableError) or exc.is_connection:
                self._drop()
            raise
        self._on_connection += 1
        return answer

    def _connect(self) -> smtplib.SMTP:
        smtp: smtplib.SMTP | None = None
        try:
            smtp = self._open()
            smtp.ehlo()
            if self.security == "starttls":
                self._starttls(smtp)
            if self.username:
                smtp.login(self.username, self.password or "")
        except BaseException as exc:
            _close_quietly(smtp)
            raise self._connect_error(exc) from exc
        return smtp

    def _connect_error(self, exc: BaseException) -> BaseException:
        """What a failure while connecting means: stop the run, or try again later."""
        if isinstance(exc, MailerUnavailableError):
            return exc
        if isinstance(exc, smtplib.SMTPAuthenticationError | smtplib.SMTPNotSupportedError):
            return MailerUnavailableError(
                f"{self.where}: login as {self.username!r} refused: {_answer(exc)}",
                hint=f"check [smtp].username and ${PASSWORD_ENV_VAR}",
            )
        if isinstance(exc, ssl.SSLError):
            return MailerUnavailableError(
                f"{self.where}: TLS failed ({self.security}): {exc}",
                hint="a server with a private CA needs [smtp].ca_file; never send unencrypted",
            )
        if isinstance(exc, smtplib.SMTPConnectError) and not 400 <= exc.smtp_code < 500:
            return MailerUnavailableError(f"{self.where}: refused us: {_answer(exc)}")
        if isinstance(exc, OSError | smtplib.SMTPException):
            return _RetryableError(
                f"{self.where}: cannot connect: {self._why_not_connected(exc)}",
                is_connection=True,
            )
        return exc

    def _why_not_connected(self, exc: OSError | smtplib.SMTPException) -> str:
        """What went wrong in words, not an errno: refused, unknown host, no answer, ..."""
        if isinstance(exc, smtplib.SMTPResponseException):
            return f"the server answered {_answer(exc)}"
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return "the server closed the connection" + (f" ({exc})" if str(exc) else "")
        if isinstance(exc, ConnectionRefusedError):
            return "connection refused"
        if isinstance(exc, socket.gaierror):
            return f"no such host ({exc.strerror})"
        if isinstance(exc, TimeoutError):
            return f"no answer within {self.timeout:g} s"
        if isinstance(exc, OSError) and exc.strerror:
            return exc.strerror[:1].lower() + exc.strerror[1:]
        return _answer(exc)

    def _open(self) -> smtplib.SMTP:
        if self._local_hostname is None:
            self._local_hostname = socket.getfqdn()  # once: it may ask DNS
        if self.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host,
                self.port,
                local_hostname=self._local_hostname,
                timeout=self.timeout,
                context=self._tls_context(),
            )
        else:
            smtp = smtplib.SMTP(
                self.host, self.port, local_hostname=self._local_hostname, timeout=self.timeout
            )
        if smtp.sock is not None:
            # Without it, large messages over TLS stall on delayed ACKs (22 vs 230 msgs/s).
            smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return smtp

    def _starttls(self, smtp: smtplib.SMTP) -> None:
        if not smtp.has_extn("starttls"):
            raise MailerUnavailableError(
                f"{self.where} does not offer STARTTLS, which [smtp].security = 'starttls'"
                " requires: nothing was sent in plain text",
                hint="use a server that offers STARTTLS, or security = 'tls' on port 465",
            )
        smtp.starttls(context=self._tls_context())
        smtp.ehlo()

    def _tls_context(self) -> ssl.SSLContext:
        if self._context is None:
            cafile = str(self.ca_file) if self.ca_file else None
            self._context = ssl.create_default_context(cafile=cafile)
        return self._context

    def _drop(self) -> None:
        _close_quietly(self._smtp)
        self._smtp = None

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                _close_quietly(self._smtp)
            self._smtp = None


def wire_bytes(message: EmailMessage) -> bytes:
    """The message as it goes over the wire: CRLF line ends throughout."""
    return re.sub(rb"\r\n|\r|\n", b"\r\n", message.as_bytes(policy=_POLICY))


def _transaction(
    smtp: smtplib.SMTP,
    sender: str,
    address: str,
    payload: bytes,
    before_data: Callable[[], None],
) -> str:
    """MAIL, RCPT, then ``before_data()``, then DATA; the server's final answer."""
    try:
        _envelope(smtp, sender, address, payload)
        try:
            before_data()
        except BaseException:
            _reset(smtp)
            raise
        _check(smtp, smtp.docmd("DATA"), "DATA", address, ok=(354,))
        smtp.send(_data_block(payload))
    except (smtplib.SMTPServerDisconnected, OSError) as exc:
        # The server never got the final dot: it cannot have taken the message.
        raise _RetryableError(
            f"{address}: connection lost before the message was complete: {exc}",
            is_connection=True,
        ) from exc
    try:
        reply = smtp.getreply()
    except (smtplib.SMTPServerDisconnected, OSError) as exc:
        raise UncertainDeliveryError(
            f"{address}: the connection broke after the whole message was sent, before the"
            f" server answered ({exc}): it may have been delivered"
        ) from exc
    if reply[0] == -1:  # smtplib's code for a line that is not a reply: no answer either
        raise UncertainDeliveryError(
            f"{address}: the server's answer to the whole message was not an SMTP reply"
            f" ({_text(reply[1])!r}): it may have been delivered"
        )
    _check(smtp, reply, "end of DATA", address)
    return f"{reply[0]} {_text(reply[1])}"


def _mail_options(smtp: smtplib.SMTP, payload: bytes) -> list[str]:
    options = [f"SIZE={len(payload)}"] if smtp.has_extn("size") else []
    if not payload.isascii() and smtp.has_extn("8bitmime"):
        options.append("BODY=8BITMIME")
    return options


def _check(
    smtp: smtplib.SMTP,
    reply: tuple[int, bytes],
    stage: str,
    address: str,
    ok: tuple[int, ...] = (250, 251),
) -> None:
    """Raise what a non-success answer means: 421 or 4xx temporary, 5xx the recipient failed."""
    code, text = reply
    if code in ok:
        return
    answer = f"{code} {_text(text)}"
    if code in (421, -1):  # the server is closing the connection
        raise _RetryableError(f"{address}: {stage}: {answer}", is_connection=True)
    _reset(smtp)
    if 400 <= code < 500:
        raise _RetryableError(f"{address}: {stage} answered {answer}", is_connection=False)
    raise DeliveryError(f"{address}: {stage} refused: {answer}")


def _envelope(smtp: smtplib.SMTP, sender: str, address: str, payload: bytes) -> None:
    """MAIL FROM and RCPT TO; a recipient refused before the server answered (an address
    smtplib cannot encode) resets the transaction, so the next recipient starts clean."""
    try:
        _check(smtp, smtp.mail(sender, _mail_options(smtp, payload)), "MAIL FROM", address)
        _check(smtp, smtp.rcpt(address), "RCPT TO", address)
    except UnicodeEncodeError as exc:
        _reset(smtp)
        raise DeliveryError(
            f"{address}: cannot be sent over SMTP: the address is not ASCII ({exc.reason})"
        ) from exc


def _reset(smtp: smtplib.SMTP) -> None:
    try:
        smtp.rset()
    except (OSError, smtplib.SMTPException):
        smtp.close()  # the next message reconnects


def _data_block(payload: bytes) -> bytes:
    stuffed = re.sub(rb"(?m)^\.", b"..", payload)
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


def _text(text: bytes | str) -> str:
    value = text.decode(errors="replace") if isinstance(text, bytes) else text
    return " ".join(value.split())


def _answer(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"
    return str(exc) or type(exc).__name__


def _close_quietly(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        smtp.close()


class SendmailMailer:
    """Pipes each message to a sendmail-compatible command."""

    def __init__(self, command: tuple[str, ...], *, timeout: float = 120.0) -> None:
        self.command, self.timeout = command, timeout

    def send(
        self,
        message: OutgoingMessage,
        *,
        before_data: Callable[[], None] = _nothing,
    ) -> str:
        before_data()
        try:
            # Its own process group: a Ctrl-C at the terminal stops digest after this message,
            # and must not kill the sendmail that is taking it.
            done = subprocess.run(
                [*self.command],
                input=message.data,
                capture_output=True,
                timeout=self.timeout,
                process_group=0,
            )
        except subprocess.TimeoutExpired as exc:
            # Killed after it had the whole message: it may have queued it before it hung.
            raise UncertainDeliveryError(
                f"{self.command[0]} did not finish in {self.timeout:.0f} s after taking the"
                " message: it may have been delivered"
            ) from exc
        except OSError as exc:
            raise DeliveryError(
                f"cannot run {self.command[0]}: {exc}",
                hint="check [delivery].sendmail_command",
            ) from exc
        if done.returncode != 0:
            error = done.stderr.decode(errors="replace").strip()
            raise DeliveryError(f"{self.command[0]} exited {done.returncode}: {error}")
        return f"handed to {self.command[0]}"

    def close(self) -> None:
        pass
