"""The exceptions digest raises. Each one can explain itself to a user.

DigestError
 ├── ConfigError        settings file missing, unreadable or invalid (carries path and key)
 ├── StoreError         the SQLite store cannot be opened, read or written: a full disk, a
 │                      lock held too long, a damaged file (carries path and cause)
 ├── FeedError          one feed could not be fetched or parsed (carries feed_url)
 ├── SummarizerError    a summarization model is missing or failed to load
 ├── TemplateError      a template is missing or broken (carries the folders searched)
 ├── DeliveryError      a message could not be handed over: the server refused it (5xx, or
 │   │                  4xx after every retry) or the outbox file could not be written;
 │   │                  nothing was delivered
 │   ├── RecipientRefusedError    the server refused this recipient for good (5xx at RCPT
 │   │                            TO or DATA): a bounce (carries the server's answer)
 │   ├── UncertainDeliveryError   the connection broke after the whole message was sent and
 │   │                            before the server's answer: it may have been delivered
 │   └── MailerUnavailableError   the mail backend cannot be used at all (connection
 │                                refused, TLS, login): the run stops, no row changes
 └── InputError         a line of a batch input file is not what it should be (path, line)
"""

from __future__ import annotations

from pathlib import Path


class DigestError(Exception):
    """Base class: ``str(error)`` is the one line the CLI prints, with a hint when known."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(DigestError):
    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        problems: tuple[str, ...] = (),
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.path = path
        self.problems = problems

    def __str__(self) -> str:
        lines = [self.message, *(f"  - {p}" for p in self.problems)]
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


class StoreError(DigestError):
    """``cause`` is what went wrong in a few words ("the disk is full"), for messages that
    say what could not be recorded because of it."""

    def __init__(
        self,
        message: str,
        *,
        path: Path | None = None,
        cause: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.path = path
        self.cause = cause or message


class FeedError(DigestError):
    def __init__(self, message: str, *, feed_url: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.feed_url = feed_url


class SummarizerError(DigestError):
    pass


class TemplateError(DigestError):
    pass


class DeliveryError(DigestError):
    pass


class RecipientRefusedError(DeliveryError):
    """The server refused the recipient or their message with a 5xx at RCPT TO or DATA:
    what counts as a bounce. ``answer`` is the server's reply, code first."""

    def __init__(self, message: str, *, code: int, answer: str) -> None:
        super().__init__(message)
        self.code = code
        self.answer = answer


class UncertainDeliveryError(DeliveryError):
    """The message may have reached the server: the row must stay ``sending``."""


class MailerUnavailableError(DeliveryError):
    """The mail backend cannot be used at all; the run stops and no row changes."""


class InputError(DigestError):
    """A batch input file (``digest summarize --input``) has a line it cannot use."""
