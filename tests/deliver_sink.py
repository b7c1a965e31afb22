"""A real SMTP server for the delivery tests: aiosmtpd on 127.0.0.1, with hooks that make
it answer 4xx/5xx, drop the connection, or stop and kill the client at a given message, or
answer each message slowly; and the edition message and settings those tests send."""

from __future__ import annotations

import asyncio
import email
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from digest.messages import build_message, make_message_id
from digest.models import RenderedDigest
from tests.conftest import free_port, write_settings

DROP = "drop"  # a hook's answer: close the connection without replying
RECIPIENTS = tuple(f"reader{n:03d}@example.org" for n in range(200))

DAY = date(2024, 3, 1)  # the edition the message tests build
RENDERED = RenderedDigest(
    edition_on=DAY,
    subject="Digest, 1 March: Çanakkale köprüsü açıldı",
    html="<p>Héllo <b>world</b></p>",
    text="Héllo world\n",
)


LONG_URL = "https://example.org/unsubscribe/" + "x" * 90 + "?who=reader%40example.org"


def edition_message(
    recipient: str = "Reader <reader@example.org>", subject: str | None = None
) -> EmailMessage:
    """The RENDERED edition (or one with this subject) as the message for ``recipient``."""
    rendered = (
        RENDERED
        if subject is None
        else RenderedDigest(edition_on=DAY, subject=subject, html="<p>x</p>", text="x")
    )
    return build_message(
        rendered,
        sender="Digest <digest@example.org>",
        recipient=recipient,
        message_id=make_message_id(DAY, recipient, "digest@example.org"),
        sent_at=datetime(2024, 3, 1, 4, tzinfo=UTC),
        unsubscribe_url=LONG_URL,
        unsubscribe_mailto="unsubscribe@example.org",
        list_id="daily.digest.example.org",
    )


def smtp_settings(folder: Path, port: int, feeds: list[dict[str, str]]) -> Path:
    """A settings file that sends to the 200 RECIPIENTS over plain SMTP on 127.0.0.1:port,
    retrying fast, on one connection."""
    return write_settings(
        folder,
        feeds,
        recipients=RECIPIENTS,
        sections={
            "delivery": {"backend": "smtp"},
            "smtp": {"host": "127.0.0.1", "port": port, "security": "none",
                     "timeout_seconds": 10.0, "retry_backoff_seconds": 0.01,
                     "max_messages_per_connection": 1000},
        },
    )  # fmt: skip


@dataclass
class Sink:
    """Keeps what it accepted (answered 250 to) and counts what it was asked; waits ``delay``
    seconds before each 250 (a slow server: an edition takes a while)."""

    delay: float = 0.0
    on_rcpt: Callable[[str, int], str | None] = lambda address, attempt: None
    on_data: Callable[[str, int], str | None] = lambda address, number: None
    accepted: list[tuple[str, bytes]] = field(default_factory=list)
    accepted_at: list[datetime] = field(default_factory=list)  # the clock at each 250
    envelopes: list[Any] = field(default_factory=list)
    rcpt_attempts: Counter[str] = field(default_factory=Counter)
    data_count: int = 0
    sessions: list[Any] = field(default_factory=list)

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if not any(s is session for s in self.sessions):
            self.sessions.append(session)
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.rcpt_attempts[address] += 1
        answer = self.on_rcpt(address, self.rcpt_attempts[address])
        if answer == DROP:
            server.transport.abort()
            return "421 gone"
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_count += 1
        address = envelope.rcpt_tos[0]
        answer = self.on_data(address, self.data_count)
        if answer == DROP:
            server.transport.abort()
            return "451 gone"
        if answer:
            return answer
        self.accepted.append((address, envelope.content))
        self.accepted_at.append(datetime.now(UTC))
        self.envelopes.append(envelope)
        await asyncio.sleep(self.delay)
        return "250 OK queued"

    def messages(self) -> list[EmailMessage]:
        return [email.message_from_bytes(raw, policy=policy.default) for _, raw in self.accepted]

    @property
    def recipients(self) -> list[str]:
        """Who got a message, once per message, in arrival order."""
        return [address for address, _ in self.accepted]

    def copies_by_message_id(self) -> Counter[str]:
        return Counter(str(m["Message-ID"]) for m in self.messages())

    def copies_by_recipient(self) -> Counter[str]:
        return Counter(address for address, _ in self.accepted)


def body_text(message: EmailMessage, kind: str) -> str:
    """The content of the message's ``kind`` ("plain" or "html") part; fails if it has none."""
    part = message.get_body((kind,))
    assert part is not None, f"the message has no text/{kind} part"
    return str(part.get_content())


@contextmanager
def running(sink: Sink, **smtp_options: Any) -> Iterator[int]:
    """Serve ``sink`` on 127.0.0.1 at a free port; yield the port."""
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, **smtp_options)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the test's own CA); (cert, key) paths."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key
