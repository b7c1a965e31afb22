"""The SMTP mail backend: one connection per edition, TLS required when configured,
temporary failures retried, and a failure told apart by what it means for the recipient's
ledger row (see ``digest.mailers``)."""

from __future__ import annotations

import logging
import re
import smtplib
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from digest.errors import (
    DeliveryError,
    MailerUnavailableError,
    RecipientRefusedError,
    UncertainDeliveryError,
)
from digest.mailers import do_nothing
from digest.models import OutgoingMessage

logger = logging.getLogger(__name__)

PASSWORD_ENV_VAR = "DIGEST_SMTP_PASSWORD"


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
        before_data: Callable[[], None] = do_nothing,
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
    """Raise what a non-success answer means: 421 or 4xx temporary, 5xx the recipient failed
    (at RCPT TO or DATA: refused, a bounce)."""
    code, text = reply
    if code in ok:
        return
    answer = f"{code} {_text(text)}"
    if code in (421, -1):  # the server is closing the connection
        raise _RetryableError(f"{address}: {stage}: {answer}", is_connection=True)
    _reset(smtp)
    if 400 <= code < 500:
        raise _RetryableError(f"{address}: {stage} answered {answer}", is_connection=False)
    message = f"{address}: {stage} refused: {answer}"
    if stage == "MAIL FROM" or not 500 <= code < 600:  # the sender refused: not a bounce
        raise DeliveryError(message)
    raise RecipientRefusedError(message, code=code, answer=answer)


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
