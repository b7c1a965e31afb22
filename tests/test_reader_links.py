"""Per-reader unsubscribe links (issue 17 item 3): with ``[web].base_url`` each message's
List-Unsubscribe and footer carry that reader's own signed one-click URL, while the edition
is rendered once; without it, the one static ``unsubscribe_url`` as before."""

from __future__ import annotations

import email
import re
from datetime import UTC, date, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
import time_machine
from click.testing import CliRunner

from digest.cli import cli
from digest.config import load_settings
from digest.messages import UNSUBSCRIBE_TOKEN, EditionMessages, build_message, wire_bytes
from digest.models import RenderedDigest
from digest.runtime import Runtime
from digest.subscribers import LIST_SLUG
from digest.web_tokens import LinkSigner
from tests.conftest import FEEDS, write_settings
from tests.deliver_sink import body_text

KEY = "r" * 40
BASE = "https://news.example.org"
READERS = ("Ann <ann@example.org>", "bob@example.org")
SENT_AT = datetime(2024, 3, 1, 5, tzinfo=UTC)


def _send(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **delivery: str) -> list[EmailMessage]:
    web = {"base_url": BASE} if "static" not in delivery else {}
    delivery.pop("static", None)
    config = write_settings(
        tmp_path,
        [{"url": str(FEEDS / "nasa.xml"), "name": "NASA"}],
        recipients=READERS,
        sections={"render": {"empty_edition": "send"}, "delivery": delivery, "web": web},
    )
    monkeypatch.setenv("DIGEST_SECRET_KEY", KEY)
    with time_machine.travel(SENT_AT, tick=False):
        result = CliRunner().invoke(cli, ["--config", str(config), "send"])
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "outbox").glob("*.eml"))
    return [email.message_from_bytes(f.read_bytes(), policy=policy.default) for f in files]


def test_each_message_carries_its_readers_own_one_click_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = _send(tmp_path, monkeypatch, unsubscribe_mailto="leave@example.org")
    settings = load_settings(tmp_path / "settings.toml")
    signer = LinkSigner(KEY)
    links = {}
    for message in messages:
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        mailto, url = re.findall(r"<([^>]+)>", str(message["List-Unsubscribe"]))
        assert mailto == "mailto:leave@example.org?subject=unsubscribe"
        assert url.startswith(f"{BASE}/unsubscribe/")
        html, text = body_text(message, "html"), body_text(message, "plain")
        assert f'href="{url}"' in html and f"Unsubscribe: {url}" in text
        assert UNSUBSCRIBE_TOKEN not in html + text
        claim = signer.read("unsubscribe", url.rpartition("/")[2], SENT_AT)
        with Runtime.open(settings) as runtime:
            reader = runtime.store.subscriber_by_id(claim.subscriber_id)
        assert reader is not None and reader.address in str(message["To"])
        links[str(message["To"])] = url
    assert len(set(links.values())) == 2  # one link per reader
    with Runtime.open(settings) as runtime:  # the edition as archived: rendered once
        archived = runtime.store.edition(SENT_AT.date())
    assert archived is not None and UNSUBSCRIBE_TOKEN in archived.html


def test_without_base_url_every_message_keeps_the_static_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    static = "https://lists.example.org/leave"
    messages = _send(tmp_path, monkeypatch, unsubscribe_url=static, static="yes")
    for message in messages:
        assert str(message["List-Unsubscribe"]) == f"<{static}>"
        assert f'href="{static}"' in body_text(message, "html")


TRICKY = RenderedDigest(
    edition_on=date(2024, 3, 1),
    subject="S",
    html=(
        f"{UNSUBSCRIBE_TOKEN}<p>Çanakkale köprüsü " + "é" * 90 + " = 3 </p>\n"
        + "x" * 73 + f'<a href="{BASE}/unsubscribe/{UNSUBSCRIBE_TOKEN}">Unsubscribe</a>  \n'
        + f"{UNSUBSCRIBE_TOKEN}"
    ),
    text=f"Line one \r\nUnsubscribe: {BASE}/unsubscribe/{UNSUBSCRIBE_TOKEN}\n.\nend",
)  # fmt: skip


@pytest.mark.parametrize("token", ["abc.DEF-_123", "t" * 200])
def test_the_body_decodes_as_if_rendered_for_that_reader_alone(token: str) -> None:
    messages = EditionMessages(
        TRICKY,
        sender="Digest <digest@example.org>",
        reader_links={"ann@example.org": f"{BASE}/unsubscribe/{token}"},
    )
    made = messages.for_recipient("Ann <Ann@example.org>", "<id@example.org>", SENT_AT)
    alone = RenderedDigest(
        edition_on=TRICKY.edition_on,
        subject="S",
        html=TRICKY.html.replace(UNSUBSCRIBE_TOKEN, token),
        text=TRICKY.text.replace(UNSUBSCRIBE_TOKEN, token),
    )
    built = build_message(
        alone,
        sender="Digest <digest@example.org>",
        recipient="Ann <Ann@example.org>",
        message_id="<id@example.org>",
        sent_at=SENT_AT,
        unsubscribe_url=f"{BASE}/unsubscribe/{token}",
    )
    expected = email.message_from_bytes(wire_bytes(built), policy=policy.default)
    parsed = email.message_from_bytes(made.data, policy=policy.default)
    for kind in ("plain", "html"):
        assert body_text(parsed, kind) == body_text(expected, kind)
    assert parsed["List-Unsubscribe"] == expected["List-Unsubscribe"]
    body = made.data.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    assert b"\n" not in body.replace(b"\r\n", b"")


def test_a_reader_without_a_link_gets_the_static_headers() -> None:
    messages = EditionMessages(
        TRICKY, sender="digest@example.org", unsubscribe_mailto="leave@example.org",
        reader_links={},
    )  # fmt: skip
    made = messages.for_recipient("zed@example.org", "<id@example.org>", SENT_AT)
    parsed = email.message_from_bytes(made.data, policy=policy.default)
    assert str(parsed["List-Unsubscribe"]) == "<mailto:leave@example.org?subject=unsubscribe>"
    assert parsed["List-Unsubscribe-Post"] is None


def test_links_name_the_subscribers_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    messages = _send(tmp_path, monkeypatch)
    url = re.findall(r"<([^>]+)>", str(messages[0]["List-Unsubscribe"]))[0]
    claim = LinkSigner(KEY).read("unsubscribe", url.rpartition("/")[2], SENT_AT)
    assert claim.list_slug == LIST_SLUG
