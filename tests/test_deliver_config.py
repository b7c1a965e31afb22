"""The delivery settings: a recipients file validated line by line, the list form, and the
list-header keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.config import load_settings
from digest.errors import ConfigError
from tests.conftest import write_settings

FEEDS = [{"url": "https://example.org/rss"}]


def _with_file(tmp_path: Path, content: bytes, recipients: tuple[str, ...] = ()) -> Path:
    (tmp_path / "people.txt").write_bytes(content)
    return write_settings(
        tmp_path,
        FEEDS,
        recipients=recipients,
        sections={"delivery": {"recipients_file": "people.txt"}},
    )


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return str(caught.value)


def test_a_recipients_file_adds_to_the_list_skipping_comments(tmp_path: Path) -> None:
    path = _with_file(
        tmp_path,
        b"# the list\n\nOne <one@example.org>\n  two@example.org  \n# three@example.org\n",
        recipients=("zero@example.org",),
    )
    settings = load_settings(path)
    assert settings.delivery.recipients == (
        "zero@example.org",
        "One <one@example.org>",
        "two@example.org",
    )
    assert settings.delivery.recipients_file == tmp_path / "people.txt"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (
            b"a@example.org\r\nb@example.org\r\n",
            "line 1: 'a@example.org\\r': has a carriage return",
        ),
        (b"a@example.org\nnot an address\n", "line 2: 'not an address': is not an email address"),
        (b"a@example.org\n# c\nA <A@Example.org>\n", "line 3: 'a@example.org' is listed twice"),
        (
            b"a@example.org, b@example.org\n",
            "line 1: 'a@example.org, b@example.org': must be one address",
        ),
        (b"x@example.org\n", "line 1: 'x@example.org' is listed twice"),
        (b"\xff\n", "cannot read it"),
    ],
)
def test_a_bad_line_is_a_config_error_naming_the_file_and_line(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    message = _error(_with_file(tmp_path, content, recipients=("x@example.org",)))
    assert str(tmp_path / "people.txt") in message and "[delivery].recipients_file" in message
    assert problem in message


def test_a_missing_recipients_file_is_an_error_but_no_recipients_is_not(tmp_path: Path) -> None:
    path = write_settings(
        tmp_path, FEEDS, recipients=(), sections={"delivery": {"recipients_file": "nope.txt"}}
    )
    assert "nope.txt" in _error(path) and "cannot read it" in _error(path)
    # The store's subscribers may be the readers: `digest send` says when there are none.
    path = write_settings(tmp_path, FEEDS, recipients=())
    assert load_settings(path).delivery.recipients == ()


def test_the_list_form_is_validated_too(tmp_path: Path) -> None:
    path = write_settings(tmp_path, FEEDS, recipients=("a@example.org", "a@b.org, c@d.org"))
    assert "[delivery].recipients #2 = 'a@b.org, c@d.org': must be one address" in _error(path)
    path = write_settings(tmp_path, FEEDS, recipients=("a b@example.org",))
    assert "is not an email address" in _error(path)


def test_list_header_settings_are_checked(tmp_path: Path) -> None:
    bad = {
        "unsubscribe_url": "javascript:alert(1)",
        "list_id": "x\ny",
        "unsubscribe_mailto": "nope",
    }
    message = _error(write_settings(tmp_path, FEEDS, sections={"delivery": bad}))
    assert "[delivery].unsubscribe_url = 'javascript:alert(1)': must be an http(s) URL" in message
    assert "[delivery].list_id = 'x\\ny': must be one non-empty line" in message
    assert "[delivery].unsubscribe_mailto = 'nope': is not an email address" in message
    good = {"unsubscribe_url": "https://example.org/u", "list_id": "d.example.org"}
    settings = load_settings(write_settings(tmp_path, FEEDS, sections={"delivery": good}))
    assert settings.delivery.unsubscribe_url == "https://example.org/u"


@pytest.mark.parametrize(
    ("where", "address"),
    [("recipients", "ü@example.org"), ("recipients", "Reader <reader@exämple.org>"),
     ("from", "Digest <dîgest@example.org>"), ("recipients_file", "ü@example.org")],
)  # fmt: skip
def test_a_non_ascii_address_is_refused_at_load_naming_the_key(
    tmp_path: Path, where: str, address: str
) -> None:
    # SMTP without SMTPUTF8 cannot carry one: refused by the server or by smtplib, it used to
    # leave the session half-open (the next recipient got "503 nested MAIL command").
    if where == "recipients_file":
        message = _error(_with_file(tmp_path, f"{address}\n".encode(), ("ok@example.org",)))
        assert "[delivery].recipients_file" in message and "line 1" in message
    else:
        recipients = (address,) if where == "recipients" else ("ok@example.org",)
        sections = {"delivery": {"from": address}} if where == "from" else {}
        message = _error(write_settings(tmp_path, FEEDS, recipients=recipients, sections=sections))
        assert f"[delivery].{where}" in message
    assert "non-ASCII" in message and "xn--" in message
