"""Mail backends: each hands one built message (``digest.messages``) to the mail system.

``outbox`` writes ``.eml`` files into a folder (the offline default), ``sendmail`` pipes to
a local sendmail-compatible command, ``smtp`` (``digest.smtp_mailer``) talks to a server
(STARTTLS or implicit TLS required when configured). The delivery ledger that makes sending
exactly-once lives in the store and is driven by digest.sending; a backend only hands over.

A backend's ``send`` calls ``before_data()`` just before the message itself goes out (for
SMTP: after the server accepted MAIL FROM and RCPT TO), so the sender can commit the row
as ``sending`` there. What a failure means for the row is told by the exception:
``DeliveryError``, ``UncertainDeliveryError`` or ``MailerUnavailableError`` (see
``digest.errors``).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from digest.errors import DeliveryError, UncertainDeliveryError
from digest.models import OutgoingMessage


def do_nothing() -> None:
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
        before_data: Callable[[], None] = do_nothing,
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


class SendmailMailer:
    """Pipes each message to a sendmail-compatible command."""

    def __init__(self, command: tuple[str, ...], *, timeout: float = 120.0) -> None:
        self.command, self.timeout = command, timeout

    def send(
        self,
        message: OutgoingMessage,
        *,
        before_data: Callable[[], None] = do_nothing,
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
