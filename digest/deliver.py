"""Deliver: RenderedDigest -> one RFC 5322 message per recipient (pure), handed to a mail
backend (I/O).

Backends: ``outbox`` writes ``.eml`` files into a folder (the offline default), ``smtp``
talks to a server (STARTTLS or implicit TLS required when configured), ``sendmail`` pipes
to a local sendmail-compatible command. The delivery ledger that makes sending exactly-once
lives in the store and is driven by the pipeline; this module only builds and hands over.
"""

from __future__ import annotations

import hashlib
import os
import re
import smtplib
import socket
import ssl
import subprocess
from datetime import date, datetime
from email import policy
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Protocol

from digest.errors import DeliveryError
from digest.models import RenderedDigest

PASSWORD_ENV_VAR = "DIGEST_SMTP_PASSWORD"
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def make_message_id(edition_on: date, recipient: str, sender: str) -> str:
    """A Message-ID fixed by (edition, recipient), so any resend keeps one identity."""
    address = parseaddr(recipient)[1].lower()
    token = hashlib.sha256(f"{edition_on.isoformat()}\n{address}".encode()).hexdigest()[:24]
    domain = parseaddr(sender)[1].rpartition("@")[2] or "digest.invalid"
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
            break
        value = clean
    return value


def build_message(
    rendered: RenderedDigest,
    *,
    sender: str,
    recipient: str,
    message_id: str,
    sent_at: datetime,
) -> EmailMessage:
    """A multipart/alternative message (text, then HTML) for one recipient."""
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = header_safe(sender)
    message["To"] = header_safe(recipient)
    message["Subject"] = header_safe(rendered.subject)
    message["Date"] = format_datetime(sent_at)
    message["Message-ID"] = message_id
    message.set_content(rendered.text, cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", cte="quoted-printable")
    return message


class Mailer(Protocol):
    """Hands one message to the mail system; returns what the system answered."""

    def send(self, message: EmailMessage, recipient: str) -> str: ...

    def close(self) -> None: ...


class OutboxMailer:
    """Writes each message as ``<outbox>/<Message-ID>.eml``; a resend overwrites, never adds."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, message: EmailMessage, recipient: str) -> str:
        token = re.sub(r"[^A-Za-z0-9.]+", "_", str(message["Message-ID"]).strip("<>"))
        path = self.folder / f"{token}.eml"
        partial = path.with_suffix(".eml.partial")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(message.as_bytes())
            os.replace(partial, path)
        except OSError as exc:
            raise DeliveryError(
                f"cannot write {path}: {exc.strerror or exc}",
                hint="check [delivery].outbox in the settings",
            ) from exc
        return f"written to {path}"

    def close(self) -> None:
        pass


class SmtpMailer:
    """One SMTP connection for the whole edition, opened on first use."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: str,
        username: str | None,
        password: str | None,
        timeout: float,
    ) -> None:
        self.host, self.port, self.security = host, port, security
        self.username, self.password, self.timeout = username, password, timeout
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        where = f"{self.host}:{self.port}"
        smtp: smtplib.SMTP | None = None
        try:
            smtp = self._open()
            if self.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())  # raises if not offered
            if self.username:
                smtp.login(self.username, self.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            _close_quietly(smtp)
            raise DeliveryError(
                f"SMTP {where}: login as {self.username!r} refused: {exc.smtp_error!r}",
                hint=f"check [smtp].username and ${PASSWORD_ENV_VAR}",
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            _close_quietly(smtp)
            raise DeliveryError(
                f"SMTP {where}: cannot connect ({self.security}): {exc}",
                hint="check [smtp].host, .port and .security in the settings",
            ) from exc
        return smtp

    def _open(self) -> smtplib.SMTP:
        if self.security == "tls":
            context = ssl.create_default_context()
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if smtp.sock is not None:
            # Without it, large messages over TLS stall on delayed ACKs (22 vs 230 msgs/s).
            smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return smtp

    def send(self, message: EmailMessage, recipient: str) -> str:
        if self._smtp is None:
            self._smtp = self._connect()
        address = parseaddr(recipient)[1]
        sender = parseaddr(str(message["From"]))[1]
        try:
            self._smtp.send_message(message, from_addr=sender, to_addrs=[address])
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = exc.recipients[address]
            raise DeliveryError(f"{address}: refused by the server: {code} {text!r}") from exc
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise DeliveryError(f"{address}: SMTP error: {exc}") from exc
        return "accepted by the server"

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                _close_quietly(self._smtp)
            self._smtp = None


def _close_quietly(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        smtp.close()


class SendmailMailer:
    """Pipes each message to a sendmail-compatible command."""

    def __init__(self, command: tuple[str, ...]) -> None:
        self.command = command

    def send(self, message: EmailMessage, recipient: str) -> str:
        try:
            done = subprocess.run(
                [*self.command], input=message.as_bytes(), capture_output=True, timeout=120
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
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
