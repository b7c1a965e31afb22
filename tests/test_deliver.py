from __future__ import annotations

import email
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from email import policy
from pathlib import Path

import pytest

from digest.errors import DeliveryError, MailerUnavailableError, UncertainDeliveryError
from digest.mailers import OutboxMailer, SendmailMailer
from digest.messages import (
    EditionMessages,
    header_safe,
    list_headers,
    make_message_id,
    outgoing,
    wire_bytes,
)
from digest.smtp_mailer import SmtpMailer
from tests.conftest import free_port
from tests.deliver_sink import DAY, LONG_URL, RENDERED, Sink, body_text, edition_message, running


def test_message_is_multipart_alternative_with_exact_headers() -> None:
    raw = edition_message().as_bytes()
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed["Subject"] == "Digest, 1 March: Çanakkale köprüsü açıldı"
    assert b"=?utf-8?" in raw  # the non-ASCII subject is encoded, not raw 8-bit
    assert parsed["From"] == "Digest <digest@example.org>"
    assert parsed["To"] == "Reader <reader@example.org>"
    assert parsed["Date"] == "Fri, 01 Mar 2024 04:00:00 +0000"
    assert parsed["List-ID"] == "<daily.digest.example.org>"
    assert parsed["List-Unsubscribe"] == (
        f"<mailto:unsubscribe@example.org?subject=unsubscribe>, <{LONG_URL}>"
    )
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert b"=?" not in raw.split(b"List-Unsubscribe:", 1)[1].split(b"\r\nList-Unsub", 1)[0]
    assert body_text(parsed, "plain").splitlines() == ["Héllo world"]
    assert body_text(parsed, "html").strip() == "<p>Héllo <b>world</b></p>"


def test_message_id_is_fixed_by_edition_and_recipient() -> None:
    one = make_message_id(DAY, "Reader <Reader@Example.org>", "Digest <digest@example.org>")
    assert one == make_message_id(DAY, "reader@example.org", "digest@example.org")
    assert one != make_message_id(date(2024, 3, 2), "reader@example.org", "digest@example.org")
    assert one.startswith("<digest.20240301.") and one.endswith("@example.org>")


def test_two_newsletters_from_one_domain_never_share_a_message_id() -> None:
    # Equal IDs on two different digests: the receiving system drops the second as a copy.
    daily = make_message_id(DAY, "reader@example.org", "digest@example.org", "Daily Digest")
    assert daily == make_message_id(DAY, "reader@example.org", "digest@example.org", "Daily Digest")
    assert daily != make_message_id(DAY, "reader@example.org", "digest@example.org", "Tech Digest")
    assert daily != make_message_id(DAY, "reader@example.org", "news@example.org", "Daily Digest")


@pytest.mark.parametrize(
    "subject",
    [
        "News\r\nBcc: evil@example.net",
        "News\nBcc: evil@example.net",
        "News =?UTF-8?Q?=0A?=Bcc: evil@example.net",
        "News =?UTF-8?B?PT9VVEYtOD9RPz0wQT89?=Bcc: evil@example.net",
        "News\u2028Bcc: evil@example.net",
        "News\x00\x0bBcc: evil@example.net",
        "News =?UTF-8?Q?=0D=0A?=Bcc: evil@example.net",
        "=?UTF-8?Q?=0A?=Bcc: x@y",
        "News =?iso-8859-1?q?=0A?=Bcc: evil@example.net",
        "News =?UTF-8?Q?=3D=3FUTF-8=3FQ=3F=3D0A=3F=3D?=Bcc: evil@example.net",
        "News \r Bcc: evil@example.net",
        # four encodings deep (base64 of Q of Q of Q): more rounds than header_safe decodes
        "News "
        "=?UTF-8?B?PT9VVEYtOD9RPz0zRD0zRj01NT01ND00Nj0yRD0zOD0zRj01MT0zRj0zRD0zMz00ND0zRD"
        "0zMz00Nj0zRD0zNT0zNT0zRD0zNT0zND0zRD0zND0zNj0zRD0zMj00ND0zRD0zMz0zOD0zRD0zMz00Nj"
        "0zRD0zNT0zMT0zRD0zMz00Nj0zRD0zMz00ND0zRD0zMz0zMD0zRD0zND0zMT0zRD0zND0zMj0zRD0zNj"
        "0zMz0zRD0zNj0zMz0zRD0zMz00MT0zRD0zNT00Nj0zRD0zNj0zNT0zRD0zNz0zNj0zRD0zNj0zOT0zRD"
        "0zNj00Mz0zRD0zND0zMD0zRD0zNj0zNT0zRD0zNz0zOD0zRD0zNj0zMT0zRD0zNj00ND0zRD0zNz0zMD"
        "0zRD0zNj00Mz0zRD0zNj0zNT0zRD0zMj00NT0zRD0zNj00NT0zRD0zNj0zNT0zRD0zNz0zND0zRD0zMz"
        "00Nj0zRD0zMz00ND0zRj0zRD89?=",
        "News =?UTF-8?X?broken?= \nBcc: evil@example.net",
    ],
)
def test_header_injection_yields_one_subject_and_no_extra_header(subject: str) -> None:
    raw = wire_bytes(edition_message(subject=subject))
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    names = [
        line.split(b":", 1)[0].lower()
        for line in header_block.split(b"\r\n")
        if line and line[:1] not in b" \t"
    ]
    assert names.count(b"subject") == 1
    assert b"bcc" not in names
    assert sorted(names) == sorted(
        n.lower().encode()
        for n in (
            "From", "To", "Subject", "Date", "Message-ID", "List-ID", "List-Unsubscribe",
            "List-Unsubscribe-Post", "Content-Type", "MIME-Version",
        )
    )  # fmt: skip
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed["Bcc"] is None
    assert "\n" not in parsed["Subject"]


def test_header_safe_leaves_ordinary_text_alone() -> None:
    assert (
        header_safe("Plain – ünïcode, with = signs ? and more")
        == "Plain – ünïcode, with = signs ? and more"
    )


def test_outbox_writes_one_file_per_message_id_and_a_resend_overwrites(tmp_path: Path) -> None:
    mailer = OutboxMailer(tmp_path / "outbox")
    mailer.send(outgoing(edition_message(), "reader@example.org"))
    mailer.send(outgoing(edition_message(), "reader@example.org"))
    mailer.send(outgoing(edition_message("other@example.org"), "other@example.org"))
    files = sorted((tmp_path / "outbox").iterdir())
    assert len(files) == 2 and all(f.suffix == ".eml" for f in files)


@pytest.fixture
def smtp_sink() -> Iterator[tuple[Sink, int]]:
    sink = Sink()
    with running(sink) as port:
        yield sink, port


def test_smtp_sends_each_recipient_its_own_envelope_on_one_connection(
    smtp_sink: tuple[Sink, int],
) -> None:
    sink, port = smtp_sink
    mailer = SmtpMailer(
        host="127.0.0.1", port=port, security="none", username=None, password=None, timeout=5
    )
    try:
        for recipient in ("a@example.org", "B <b@example.org>"):
            assert mailer.send(outgoing(edition_message(recipient), recipient)) == "250 OK queued"
    finally:
        mailer.close()
    assert [e.rcpt_tos for e in sink.envelopes] == [["a@example.org"], ["b@example.org"]]
    assert all(e.mail_from == "digest@example.org" for e in sink.envelopes)
    received = email.message_from_bytes(sink.envelopes[1].content, policy=policy.default)
    assert received["To"] == "B <b@example.org>"


def test_starttls_required_but_not_offered_is_refused_not_sent_in_plain(
    smtp_sink: tuple[Sink, int],
) -> None:
    sink, port = smtp_sink
    mailer = SmtpMailer(
        host="127.0.0.1", port=port, security="starttls", username=None, password=None, timeout=5
    )
    with pytest.raises(MailerUnavailableError, match="does not offer STARTTLS"):
        mailer.send(outgoing(edition_message(), "reader@example.org"))
    assert sink.envelopes == []


def test_connection_refused_is_a_clear_delivery_error() -> None:
    mailer = SmtpMailer(
        host="127.0.0.1",
        port=free_port(),
        security="none",
        username=None,
        password=None,
        timeout=5,
        retries=1,
        backoff_seconds=0,
    )
    with pytest.raises(MailerUnavailableError, match=r"SMTP 127\.0\.0\.1:\d+: cannot connect"):
        mailer.send(outgoing(edition_message(), "reader@example.org"))


def test_list_headers_are_left_out_when_unset_and_one_click_needs_a_url() -> None:
    assert list_headers(None, None, None) == {}
    assert list_headers(None, "u@example.org", None) == {
        "List-Unsubscribe": "<mailto:u@example.org?subject=unsubscribe>"
    }
    assert list_headers(None, None, "Digest <d.example.org>") == {
        "List-ID": "Digest <d.example.org>"
    }
    injected = list_headers("https://example.org/u\r\nBcc: x@y", None, None)
    assert "\n" not in injected["List-Unsubscribe"] and "\r" not in injected["List-Unsubscribe"]


def test_edition_messages_are_build_message_with_the_body_serialised_once() -> None:
    recipient = "Reader <reader@example.org>"
    slow = email.message_from_bytes(wire_bytes(edition_message(recipient)), policy=policy.default)
    fast_message = EditionMessages(
        RENDERED,
        sender="Digest <digest@example.org>",
        unsubscribe_url=LONG_URL,
        unsubscribe_mailto="unsubscribe@example.org",
        list_id="daily.digest.example.org",
    ).for_recipient(
        recipient,
        make_message_id(DAY, recipient, "digest@example.org"),
        datetime(2024, 3, 1, 4, tzinfo=UTC),
    )
    assert fast_message.sender == "digest@example.org"
    assert fast_message.address == "reader@example.org"
    fast = email.message_from_bytes(fast_message.data, policy=policy.default)
    assert [(k, str(v)) for k, v in fast.items() if k != "Content-Type"] == [
        (k, str(v)) for k, v in slow.items() if k != "Content-Type"
    ]
    assert fast.get_content_type() == slow.get_content_type() == "multipart/alternative"
    for kind in ("plain", "html"):
        assert body_text(fast, kind) == body_text(slow, kind)
    assert b"\n" not in fast_message.data.replace(b"\r\n", b"")


def _sendmail(tmp_path: Path, *, then: str) -> tuple[str, ...]:
    """A sendmail stand-in (a real process): keeps its input in a file, then runs ``then``."""
    kept = tmp_path / "kept.eml"
    script = f"import sys, time; open({str(kept)!r}, 'wb').write(sys.stdin.buffer.read()); {then}"
    return (sys.executable, "-c", script)


def test_sendmail_pipes_the_message_and_a_nonzero_exit_fails_it(tmp_path: Path) -> None:
    message = outgoing(edition_message(), "reader@example.org")
    assert SendmailMailer(_sendmail(tmp_path, then="pass")).send(message).startswith("handed to")
    assert (tmp_path / "kept.eml").read_bytes() == message.data
    with pytest.raises(DeliveryError, match="exited 75") as refused:
        SendmailMailer(_sendmail(tmp_path, then="sys.exit(75)")).send(message)
    assert not isinstance(refused.value, UncertainDeliveryError)


def test_a_sendmail_that_times_out_after_reading_the_message_leaves_it_uncertain(
    tmp_path: Path,
) -> None:
    # It may have queued the message before it hung: failing it would send it again.
    mailer = SendmailMailer(_sendmail(tmp_path, then="time.sleep(30)"), timeout=2)
    with pytest.raises(UncertainDeliveryError, match="may have been delivered"):
        mailer.send(outgoing(edition_message(), "reader@example.org"))
    assert (tmp_path / "kept.eml").exists()
