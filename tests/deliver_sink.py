"""A real SMTP server for the delivery tests: aiosmtpd on 127.0.0.1, with hooks that make
it answer 4xx/5xx, drop the connection, or stop and kill the client at a given message."""

from __future__ import annotations

import email
import socket
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from tests.conftest import write_settings

DROP = "drop"  # a hook's answer: close the connection without replying
RECIPIENTS = tuple(f"reader{n:03d}@example.org" for n in range(200))


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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Sink:
    """Keeps what it accepted (answered 250 to) and counts what it was asked."""

    on_rcpt: Callable[[str, int], str | None] = lambda address, attempt: None
    on_data: Callable[[str, int], str | None] = lambda address, number: None
    accepted: list[tuple[str, bytes]] = field(default_factory=list)
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
        return "250 OK queued"

    def messages(self) -> list[EmailMessage]:
        return [email.message_from_bytes(raw, policy=policy.default) for _, raw in self.accepted]

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
