"""`digest send` over real SMTP (aiosmtpd on 127.0.0.1): the messages as received, and each
server fault giving its documented outcome and exit code."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from click.testing import CliRunner, Result

from digest.cli import cli
from tests.conftest import REPO, free_port, write_settings
from tests.deliver_sink import DROP, Sink, edition_message, make_certificate, running

FEED = str(REPO / "tests" / "fixtures" / "feeds" / "nasa.xml")
RECIPIENTS = ("a@example.org", "Bee <b@example.org>", "c@example.org")


def _config(
    tmp_path: Path, port: int, recipients: tuple[str, ...] = RECIPIENTS, **smtp: Any
) -> Path:
    return write_settings(
        tmp_path,
        [{"url": FEED, "name": "NASA"}],
        recipients=recipients,
        sections={
            "delivery": {
                "backend": "smtp",
                "unsubscribe_url": "https://example.org/unsubscribe?list=daily&token=0123456789abcdefghijklmnopqrstuvwxyz",
                "unsubscribe_mailto": "unsubscribe@example.org",
                "list_id": "Daily Digest <daily.digest.example.org>",
            },
            "smtp": {
                "host": "127.0.0.1",
                "port": port,
                "security": "none",
                "timeout_seconds": 5.0,
                "retries": 2,
                "retry_backoff_seconds": 0.01,
                **smtp,
            },
        },
    )


def _send(config: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), "send", *args], env=env)


def _deliveries(config: Path) -> str:
    return CliRunner().invoke(cli, ["--config", str(config), "deliveries"]).output


def test_each_recipient_gets_one_message_with_exact_headers_and_both_parts(tmp_path: Path) -> None:
    sink = Sink()
    with running(sink) as port:
        config = _config(tmp_path, port)
        result = _send(config)
        assert result.exit_code == 0, result.output
        assert "sent 3, failed 0, already sent 0, uncertain 0" in result.output
        again = _send(config, "--no-collect")
    assert again.exit_code == 0 and "sent 0, failed 0, already sent 3" in again.output
    assert "already delivered to everyone; --force sends it again" in again.output
    assert sorted(sink.copies_by_recipient().values()) == [1, 1, 1]
    assert len(sink.sessions) == 1  # one connection for the whole edition
    for message in sink.messages():
        assert message.get_content_type() == "multipart/alternative"
        assert message.get_body(("plain",)) is not None and message.get_body(("html",)) is not None
        assert message["From"] == "Digest <digest@example.org>"
        assert message["List-ID"] == "Daily Digest <daily.digest.example.org>"
        assert message["List-Unsubscribe"] == (
            "<mailto:unsubscribe@example.org?subject=unsubscribe>, "
            "<https://example.org/unsubscribe?list=daily&token=0123456789abcdefghijklmnopqrstuvwxyz>"
        )
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert str(message["Message-ID"]).startswith("<digest.")
    assert sorted(str(m["To"]) for m in sink.messages()) == sorted(RECIPIENTS)
    ledger = _deliveries(config)
    assert "3 sent" in ledger and "250 OK queued" in ledger


def test_force_resends_under_the_same_message_id(tmp_path: Path) -> None:
    sink = Sink()
    with running(sink) as port:
        config = _config(tmp_path, port, recipients=("a@example.org",))
        assert _send(config).exit_code == 0
        forced = _send(config, "--no-collect", "--force")
    assert forced.exit_code == 0 and "sent 1," in forced.output
    assert list(sink.copies_by_message_id().values()) == [2]


def test_a_connection_limit_opens_a_new_connection(tmp_path: Path) -> None:
    sink = Sink()
    recipients = tuple(f"r{n}@example.org" for n in range(5))
    with running(sink) as port:
        result = _send(_config(tmp_path, port, recipients, max_messages_per_connection=2))
    assert result.exit_code == 0, result.output
    assert len(sink.sessions) == 3 and len(sink.accepted) == 5


def test_a_server_that_drops_the_connection_between_messages_gets_a_new_one(
    tmp_path: Path,
) -> None:
    sink = Sink(
        on_rcpt=lambda address, attempt: (
            DROP if address == "b@example.org" and attempt == 1 else None
        )
    )
    with running(sink) as port:
        result = _send(_config(tmp_path, port))
    assert result.exit_code == 0, result.output
    assert sorted(sink.copies_by_recipient().values()) == [1, 1, 1]
    assert len(sink.sessions) == 2


def test_connection_refused_stops_the_run_and_leaves_everyone_pending(tmp_path: Path) -> None:
    config = _config(tmp_path, free_port())
    result = _send(config)
    assert result.exit_code == 1
    assert "cannot connect" in result.output and "gave up after 3 attempts" in result.output
    assert "not sent yet 3" in result.output
    assert "3 pending" in _deliveries(config)


def test_a_refused_connection_says_once_where_and_what_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    with caplog.at_level(logging.WARNING, logger="digest"):
        result = _send(_config(tmp_path, port))
    where = f"SMTP 127.0.0.1:{port}"
    assert (
        f"Error: {where}: cannot connect: connection refused (gave up after 3 attempts)\n"
        "  hint: is the server running, and are [smtp].host and [smtp].port right? The"
        " recipients not sent stay pending"
    ) in result.output
    retries = [r.getMessage() for r in caplog.records if "trying again" in r.getMessage()]
    assert len(retries) == 2
    assert all(m.startswith(f"{where}: cannot connect: connection refused;") for m in retries)
    assert all(m.count(where) == 1 for m in retries)


@pytest.fixture
def greeting_421() -> Iterator[int]:
    """A server that answers every connection with 421 and hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"421 4.3.2 too busy, try later\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    done.set()
    thread.join()
    listener.close()


def test_421_at_greeting_is_retried_then_stops_the_run(tmp_path: Path, greeting_421: int) -> None:
    config = _config(tmp_path, greeting_421)
    result = _send(config)
    assert result.exit_code == 1
    assert "421 4.3.2 too busy" in result.output and "not sent yet 3" in result.output


def test_4xx_on_rcpt_is_retried_and_then_delivered_once(tmp_path: Path) -> None:
    sink = Sink(on_rcpt=lambda address, attempt: "451 4.7.1 greylisted" if attempt < 3 else None)
    with running(sink) as port:
        result = _send(_config(tmp_path, port))
    assert result.exit_code == 0, result.output
    assert sorted(sink.copies_by_recipient().values()) == [1, 1, 1]
    assert set(sink.rcpt_attempts.values()) == {3}


def test_4xx_until_the_retries_run_out_fails_that_recipient(tmp_path: Path) -> None:
    sink = Sink(
        on_rcpt=lambda address, attempt: (
            "452 4.2.2 mailbox full" if address == "c@example.org" else None
        )
    )
    with running(sink) as port:
        config = _config(tmp_path, port)
        result = _send(config)
    assert result.exit_code == 1
    assert "failed 1" in result.output and "452 4.2.2 mailbox full" in result.output
    assert sink.rcpt_attempts["c@example.org"] == 3


def test_5xx_fails_one_recipient_with_the_answer_and_no_retry(tmp_path: Path) -> None:
    sink = Sink(
        on_rcpt=lambda address, attempt: (
            "550 5.1.1 no such user" if address == "b@example.org" else None
        )
    )
    with running(sink) as port:
        config = _config(tmp_path, port)
        result = _send(config)
    assert result.exit_code == 1
    assert "sent 2, failed 1" in result.output
    assert (
        "Bee <b@example.org>: failed  b@example.org: RCPT TO refused: 550 5.1.1 no such user"
        in result.output
    )
    assert sink.rcpt_attempts["b@example.org"] == 1
    assert "550 5.1.1 no such user" in _deliveries(config)


def test_552_message_too_big_fails_every_recipient_without_retry(tmp_path: Path) -> None:
    sink = Sink()
    with running(sink, data_size_limit=2000) as port:
        result = _send(_config(tmp_path, port))
    assert result.exit_code == 1
    assert "failed 3" in result.output and "552" in result.output
    assert sink.accepted == [] and sink.data_count == 0


def test_552_after_data_fails_that_recipient(tmp_path: Path) -> None:
    sink = Sink(
        on_data=lambda address, n: (
            "552 5.3.4 message too big" if address == "a@example.org" else None
        )
    )
    with running(sink) as port:
        result = _send(_config(tmp_path, port))
    assert result.exit_code == 1
    assert "end of DATA refused: 552 5.3.4 message too big" in result.output
    assert sink.data_count == 3  # no retry


def test_a_disconnect_after_the_data_leaves_it_uncertain_until_resend_uncertain(
    tmp_path: Path,
) -> None:
    sink = Sink(on_data=lambda address, n: DROP if n == 2 else None)
    with running(sink) as port:
        config = _config(tmp_path, port)
        result = _send(config)
        assert result.exit_code == 1
        assert "sent 2, failed 0, already sent 0, uncertain 1" in result.output
        assert "--resend-uncertain" in result.output
        again = _send(config, "--no-collect")
        assert again.exit_code == 1 and "uncertain 1" in again.output
        resent = _send(config, "--no-collect", "--resend-uncertain")
    assert resent.exit_code == 0, resent.output
    assert "sent 1, failed 0, already sent 2, uncertain 0" in resent.output
    assert sorted(sink.copies_by_recipient().values()) == [1, 1, 1]
    ledger = _deliveries(config)
    assert "3 sent" in ledger and "tries 2" in ledger


def test_starttls_required_but_not_offered_sends_nothing(tmp_path: Path) -> None:
    sink = Sink()
    with running(sink) as port:
        result = _send(_config(tmp_path, port, security="starttls"))
    assert result.exit_code == 1
    assert (
        "does not offer STARTTLS" in result.output
        and "nothing was sent in plain text" in result.output
    )
    assert sink.sessions == [] and "not sent yet 3" in result.output


def _tls_server_options(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    cert, key = make_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return cert, {"tls_context": context, "require_starttls": True}


def test_starttls_with_a_trusted_ca_file_delivers(tmp_path: Path) -> None:
    cert, options = _tls_server_options(tmp_path)
    sink = Sink()
    with running(sink, **options) as port:
        result = _send(_config(tmp_path, port, security="starttls", ca_file=str(cert)))
    assert result.exit_code == 0, result.output
    assert len(sink.accepted) == 3


def test_an_untrusted_certificate_stops_the_run_with_a_tls_error(tmp_path: Path) -> None:
    _, options = _tls_server_options(tmp_path)
    sink = Sink()
    with running(sink, **options) as port:
        result = _send(_config(tmp_path, port, security="starttls"))
    assert result.exit_code == 1
    assert "TLS failed (starttls)" in result.output and "CERTIFICATE_VERIFY_FAILED" in result.output
    assert sink.accepted == []


def test_auth_failure_stops_the_run_with_a_clear_message(tmp_path: Path) -> None:
    def authenticator(
        server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        good = isinstance(data, LoginPassword) and data.password == b"right"
        return AuthResult(success=good, handled=False)  # aiosmtpd answers 535 itself

    sink = Sink()
    with running(sink, authenticator=authenticator, auth_require_tls=False) as port:
        config = _config(tmp_path, port, username="digest")
        wrong = _send(config, env={"DIGEST_SMTP_PASSWORD": "wrong"})
        right = _send(config, env={"DIGEST_SMTP_PASSWORD": "right"})
    assert wrong.exit_code == 1
    assert "login as 'digest' refused: 535" in wrong.output and "not sent yet 3" in wrong.output
    assert right.exit_code == 0, right.output
    assert len(sink.accepted) == 3


@pytest.fixture
def drops_at_data() -> Iterator[int]:
    """A server that takes one connection as far as the DATA command, hangs up instead of
    answering it, and then is gone (every reconnect is refused)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        listener.close()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"220 ready\r\n")
            for line in lines:
                if line[:4].upper() == b"DATA":
                    return  # no 354: not a byte of the message can have been taken
                conn.sendall(b"250 OK\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    thread.join(timeout=10)


def test_a_disconnect_at_data_then_no_server_leaves_the_row_pending_not_uncertain(
    tmp_path: Path, drops_at_data: int
) -> None:
    config = _config(tmp_path, drops_at_data, recipients=("a@example.org",))
    result = _send(config)
    assert result.exit_code == 1
    assert "cannot connect" in result.output and "gave up after 3 attempts" in result.output
    # The server never had the message: not uncertain (which only --resend-uncertain
    # would send), just not sent yet: the next `digest send` sends it.
    assert "uncertain 0, not sent yet 1" in result.output
    assert "1 pending" in _deliveries(config)


@pytest.fixture
def garbled_answer_to_the_first_message() -> Iterator[tuple[int, list[bytes]]]:
    """A server that takes every message whole but answers the first one's final dot with a
    line that is not an SMTP reply; yields its port and the messages it received."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    received: list[bytes] = []
    done = threading.Event()

    def session(conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"220 ready\r\n")
            for line in lines:
                if line[:4].upper() == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                if line[:4].upper() != b"DATA":
                    conn.sendall(b"250 OK\r\n")
                    continue
                conn.sendall(b"354 go ahead\r\n")
                received.append(b"".join(iter(lines.readline, b".\r\n")))
                conn.sendall(b"garbled\r\n" if len(received) == 1 else b"250 OK queued\r\n")

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            session(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], received
    done.set()
    thread.join(timeout=10)
    listener.close()


def test_an_answer_to_the_whole_message_that_is_not_smtp_leaves_it_uncertain(
    tmp_path: Path, garbled_answer_to_the_first_message: tuple[int, list[bytes]]
) -> None:
    port, received = garbled_answer_to_the_first_message
    config = _config(tmp_path, port, recipients=("a@example.org",))
    result = _send(config)
    assert result.exit_code == 1
    assert "uncertain 1" in result.output
    assert len(received) == 1  # not sent again on a retry


def test_a_recipient_smtplib_cannot_encode_fails_alone_and_the_next_one_is_sent() -> None:
    # Settings refuse such an address at load; if one reaches the mailer all the same, it
    # must fail on its own and reset the transaction, not leave MAIL FROM open so that the
    # next recipient gets "503 nested MAIL command".
    from dataclasses import replace

    from digest.errors import DeliveryError
    from digest.messages import outgoing
    from digest.smtp_mailer import SmtpMailer

    sink = Sink()
    with running(sink) as port:
        mailer = SmtpMailer(
            host="127.0.0.1", port=port, security="none", username=None, password=None,
            timeout=5.0, retries=0, backoff_seconds=0.01,
        )  # fmt: skip
        good = outgoing(edition_message("reader@example.org"), "reader@example.org")
        with pytest.raises(DeliveryError, match="not ASCII"):
            mailer.send(replace(good, recipient="ü@example.org"))
        assert mailer.send(good).startswith("250")
        mailer.close()
    assert [address for address, _ in sink.accepted] == ["reader@example.org"]
