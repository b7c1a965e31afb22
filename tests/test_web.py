"""``digest web`` through Starlette's TestClient: the subscribe form (CSRF, limits, header
injection, a body too large), the confirm and unsubscribe links (tampered, expired, replayed
and wrong-purpose tokens), on a real SQLite store, with confirmation emails written to the
outbox backend's folder."""

from __future__ import annotations

import email
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from digest.cli import cli
from digest.config import Settings, load_settings
from digest.models import Subscriber, SubscriberState
from digest.runtime import Runtime
from digest.subscribers import LIST_SLUG
from digest.subscribing import unsubscribe_link
from digest.web import CSRF_COOKIE, create_app
from digest.web_tokens import LinkSigner
from tests.conftest import FEEDS, free_port, write_settings

KEY = "k" * 40
BASE = "https://news.example.org"
START = datetime(2024, 3, 1, 9, tzinfo=UTC)


class Clock:
    """The application's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _settings(tmp_path: Path, **web: Any) -> Settings:
    config = write_settings(
        tmp_path,
        [{"url": str(FEEDS / "nasa.xml"), "name": "NASA"}],
        sections={"web": {"base_url": BASE, **web}},
    )
    return load_settings(config)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return _settings(tmp_path)


@pytest.fixture
def client(settings: Settings, clock: Clock) -> Iterator[TestClient]:
    with TestClient(
        create_app(settings, KEY, clock=clock), base_url="https://testserver"
    ) as test_client:
        yield test_client


def _csrf(client: TestClient) -> str:
    page = client.get("/subscribe")
    assert page.status_code == 200
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def _post_subscribe(client: TestClient, address: str) -> Any:
    return client.post("/subscribe", data={"csrf": _csrf(client), "email": address})


def _mails(settings: Settings) -> list[EmailMessage]:
    folder = settings.delivery.outbox
    files = sorted(folder.glob("*.eml")) if folder.is_dir() else []
    return [email.message_from_bytes(f.read_bytes(), policy=policy.default) for f in files]


def _confirm_path(message: EmailMessage) -> str:
    text = message.get_content()
    found = re.search(re.escape(BASE) + r"(/confirm/\S+)", text)
    assert found is not None, text
    return found.group(1)


def _subscriber(settings: Settings, address: str) -> Subscriber | None:
    with Runtime.open(settings) as runtime:
        return runtime.store.subscriber(LIST_SLUG, address)


def _unsubscribe_path(settings: Settings, address: str) -> str:
    found = _subscriber(settings, address)
    assert found is not None
    return unsubscribe_link("", LinkSigner(KEY), found)


def _subscribed(client: TestClient, settings: Settings, address: str) -> Subscriber:
    assert _post_subscribe(client, address).status_code == 200
    assert client.get(_confirm_path(_mails(settings)[-1])).status_code == 200
    found = _subscriber(settings, address)
    assert found is not None
    return found


# The form


def test_subscribe_form_is_a_labelled_form_with_a_csrf_field_and_cookie(client: TestClient) -> None:
    page = client.get("/subscribe")
    assert page.status_code == 200
    assert '<label for="email">' in page.text and 'id="email"' in page.text
    assert '<html lang="en">' in page.text
    assert re.search(r'name="csrf" value="[^"]+"', page.text)
    cookie = page.headers["set-cookie"]
    assert CSRF_COOKIE in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" in cookie  # base_url is https
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "frame" in page.headers["x-frame-options"].lower() or page.headers["x-frame-options"]


def test_subscribe_mails_a_confirm_link_that_makes_the_reader_active(
    client: TestClient, settings: Settings
) -> None:
    answer = _post_subscribe(client, "Ann@Example.ORG")
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    pending = _subscriber(settings, "ann@example.org")
    assert pending is not None and (pending.state, pending.how) == ("pending", "form")
    [mail] = _mails(settings)
    assert mail["To"] == "Ann@example.org" and "Confirm your subscription" in mail["Subject"]
    confirmed = client.get(_confirm_path(mail))
    assert confirmed.status_code == 200 and "You are subscribed" in confirmed.text
    active = _subscriber(settings, "ann@example.org")
    assert active is not None and (active.state, active.how) == ("active", "form")
    again = client.get(_confirm_path(mail))  # a second click: the same answer, no change
    assert again.status_code == 200
    assert _subscriber(settings, "ann@example.org") == active


def test_the_answer_is_the_same_whether_or_not_the_address_is_subscribed(
    client: TestClient, settings: Settings
) -> None:
    _subscribed(client, settings, "ann@example.org")
    mails_before = len(_mails(settings))
    known = _post_subscribe(client, "ann@example.org")
    new = _post_subscribe(client, "bob@example.org")
    assert (known.status_code, known.text) == (new.status_code, new.text)
    assert [m["To"] for m in _mails(settings)[mails_before:]] == ["bob@example.org"]


def test_a_post_without_a_valid_csrf_token_is_refused_and_changes_nothing(
    client: TestClient, settings: Settings
) -> None:
    token = _csrf(client)
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    no_field = client.post("/subscribe", data={"email": "a@example.org"})
    other = client.post("/subscribe", data={"csrf": tampered, "email": "a@example.org"})
    client.cookies.clear()
    no_cookie = client.post("/subscribe", data={"csrf": token, "email": "a@example.org"})
    assert [r.status_code for r in (no_field, other, no_cookie)] == [403, 403, 403]
    assert _mails(settings) == [] and _subscriber(settings, "a@example.org") is None


def test_an_old_form_token_is_refused(client: TestClient, settings: Settings) -> None:
    token = _csrf(client)
    import time_machine

    with time_machine.travel(datetime.now(UTC) + timedelta(hours=3), tick=False):
        late = client.post("/subscribe", data={"csrf": token, "email": "a@example.org"})
    assert late.status_code == 403 and _mails(settings) == []


@pytest.mark.parametrize(
    "address",
    ["a@b.c\r\nBcc: x@y.z", "a@b.c\nBcc: x@y.z", "Ann <ann@example.org>", "a@b.c, d@e.f",
     "not an address", "", "ä@example.org"],
)  # fmt: skip
def test_anything_but_one_plain_address_is_refused(
    client: TestClient, settings: Settings, address: str
) -> None:
    answer = _post_subscribe(client, address)
    assert answer.status_code == 400 and "one email address" in answer.text
    assert _mails(settings) == []
    with Runtime.open(settings) as runtime:
        assert runtime.store.subscribers(LIST_SLUG) == ()


def test_a_flood_for_one_address_sends_at_most_the_daily_limit(
    tmp_path: Path, clock: Clock
) -> None:
    settings = _settings(tmp_path, posts_per_client_per_hour=1000)
    with TestClient(
        create_app(settings, KEY, clock=clock), base_url="https://testserver"
    ) as client:
        answers = [_post_subscribe(client, "victim@example.org") for _ in range(12)]
        assert {a.status_code for a in answers} == {200}
        assert len({a.text for a in answers}) == 1  # the same page every time
        assert len(_mails(settings)) == 3
        clock.now += timedelta(hours=25)  # a day later, one more
        _post_subscribe(client, "victim@example.org")
    assert len(_mails(settings)) == 4


def test_the_per_client_limit_holds_across_restarts(tmp_path: Path, clock: Clock) -> None:
    settings = _settings(tmp_path, posts_per_client_per_hour=2)
    with TestClient(
        create_app(settings, KEY, clock=clock), base_url="https://testserver"
    ) as client:
        codes = [_post_subscribe(client, f"r{n}@example.org").status_code for n in range(2)]
    with TestClient(
        create_app(settings, KEY, clock=clock), base_url="https://testserver"
    ) as restarted:
        over = _post_subscribe(restarted, "r9@example.org")
        assert codes == [200, 200] and over.status_code == 429
        assert _subscriber(settings, "r9@example.org") is None
        clock.now += timedelta(minutes=61)
        assert _post_subscribe(restarted, "r9@example.org").status_code == 200


def test_a_body_over_the_limit_is_refused_with_413(client: TestClient, settings: Settings) -> None:
    token = _csrf(client)
    big = client.post(
        "/subscribe", data={"csrf": token, "email": "a@example.org", "x": "y" * 2**20}
    )
    assert big.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it is read
        yield f"csrf={token}&email=a%40example.org&x=".encode()
        for _ in range(64):
            yield b"y" * 16384

    chunked = client.post(
        "/subscribe",
        content=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert chunked.status_code == 413
    assert _mails(settings) == [] and _subscriber(settings, "a@example.org") is None


# The links


def test_an_expired_confirm_link_is_refused(
    client: TestClient, settings: Settings, clock: Clock
) -> None:
    _post_subscribe(client, "ann@example.org")
    clock.now += timedelta(hours=48, seconds=1)
    answer = client.get(_confirm_path(_mails(settings)[0]))
    assert answer.status_code == 400 and "expired" in answer.text
    pending = _subscriber(settings, "ann@example.org")
    assert pending is not None and pending.state is SubscriberState.PENDING


def test_a_tampered_link_is_refused(client: TestClient, settings: Settings) -> None:
    _post_subscribe(client, "ann@example.org")
    path = _confirm_path(_mails(settings)[0])
    payload, _, signature = path.rpartition(".")
    flipped = "A" if signature[0] != "A" else "B"
    for bad in (f"{payload}.{flipped}{signature[1:]}", path[:-5], "/confirm/nonsense"):
        answer = client.get(bad)
        assert answer.status_code == 400 and "This link does not work" in answer.text
    pending = _subscriber(settings, "ann@example.org")
    assert pending is not None and pending.state is SubscriberState.PENDING


def test_confirm_and_unsubscribe_tokens_are_not_interchangeable(
    client: TestClient, settings: Settings
) -> None:
    _post_subscribe(client, "ann@example.org")
    confirm_token = _confirm_path(_mails(settings)[0]).rpartition("/")[2]
    as_unsubscribe = client.post(
        f"/unsubscribe/{confirm_token}", data={"List-Unsubscribe": "One-Click"}
    )
    assert as_unsubscribe.status_code == 400
    client.get(f"/confirm/{confirm_token}")
    unsubscribe_token = _unsubscribe_path(settings, "ann@example.org").rpartition("/")[2]
    client.post(f"/unsubscribe/{unsubscribe_token}", data={"List-Unsubscribe": "One-Click"})
    assert client.get(f"/confirm/{unsubscribe_token}").status_code == 400
    gone = _subscriber(settings, "ann@example.org")
    assert gone is not None and gone.state is SubscriberState.UNSUBSCRIBED


def test_a_replayed_confirm_link_never_brings_back_a_reader_who_left(
    client: TestClient, settings: Settings, clock: Clock
) -> None:
    _post_subscribe(client, "ann@example.org")
    confirm = _confirm_path(_mails(settings)[0])
    client.get(confirm)
    clock.now += timedelta(minutes=5)
    client.post(
        _unsubscribe_path(settings, "ann@example.org"), data={"List-Unsubscribe": "One-Click"}
    )
    clock.now += timedelta(minutes=5)
    replayed = client.get(confirm)
    assert replayed.status_code == 400 and "subscribe again" in replayed.text
    gone = _subscriber(settings, "ann@example.org")
    assert gone is not None and gone.state is SubscriberState.UNSUBSCRIBED
    # Subscribing again through the form (a new link) works.
    _post_subscribe(client, "ann@example.org")
    assert client.get(_confirm_path(_mails(settings)[-1])).status_code == 200
    back = _subscriber(settings, "ann@example.org")
    assert back is not None and back.state is SubscriberState.ACTIVE


def test_get_unsubscribe_shows_a_button_and_changes_nothing(
    client: TestClient, settings: Settings
) -> None:
    before = _subscribed(client, settings, "ann@example.org")
    page = client.get(_unsubscribe_path(settings, "ann@example.org"))
    assert page.status_code == 200
    assert '<form method="post">' in page.text and "<button" in page.text
    assert 'name="List-Unsubscribe" value="One-Click"' in page.text
    assert _subscriber(settings, "ann@example.org") == before


def test_one_click_unsubscribes_with_200_and_no_redirect_once_and_again(
    client: TestClient, settings: Settings, clock: Clock
) -> None:
    _subscribed(client, settings, "ann@example.org")
    path = _unsubscribe_path(settings, "ann@example.org")
    clock.now += timedelta(days=400)  # an old message's link still works
    first = client.post(
        path,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert first.status_code == 200 and "You are unsubscribed" in first.text
    gone = _subscriber(settings, "ann@example.org")
    assert gone is not None and (gone.state, gone.how) == ("unsubscribed", "one-click")
    again = client.post(path, data={"List-Unsubscribe": "One-Click"}, follow_redirects=False)
    assert again.status_code == 200
    assert _subscriber(settings, "ann@example.org") == gone


def test_a_post_without_the_one_click_body_changes_nothing(
    client: TestClient, settings: Settings
) -> None:
    before = _subscribed(client, settings, "ann@example.org")
    answer = client.post(_unsubscribe_path(settings, "ann@example.org"), data={})
    assert answer.status_code == 400
    assert _subscriber(settings, "ann@example.org") == before


# The key


def test_web_and_check_refuse_without_the_secret_key(tmp_path: Path) -> None:
    config = write_settings(
        tmp_path,
        [{"url": str(FEEDS / "nasa.xml"), "name": "NASA"}],
        sections={"web": {"base_url": BASE}},
    )
    served = CliRunner().invoke(cli, ["--config", str(config), "web", "--port", "1"])
    assert served.exit_code != 0 and "DIGEST_SECRET_KEY is not set" in served.output
    checked = CliRunner().invoke(cli, ["--config", str(config), "check"])
    assert checked.exit_code == 1
    assert "[web].base_url is set, but $DIGEST_SECRET_KEY is not set" in checked.output
    sent = CliRunner().invoke(cli, ["--config", str(config), "send", "--no-collect"])
    assert sent.exit_code == 2 and "DIGEST_SECRET_KEY is not set" in sent.output
    assert not (tmp_path / "outbox").exists() or not list((tmp_path / "outbox").iterdir())


def test_a_mail_server_that_cannot_be_reached_gets_a_try_later_page(
    tmp_path: Path, clock: Clock
) -> None:
    config = write_settings(
        tmp_path,
        [{"url": str(FEEDS / "nasa.xml"), "name": "NASA"}],
        sections={
            "web": {"base_url": BASE},
            "delivery": {"backend": "smtp"},
            "smtp": {"host": "127.0.0.1", "port": free_port(), "security": "none",
                     "retries": 0, "timeout_seconds": 2.0},
        },
    )  # fmt: skip
    settings = load_settings(config)
    with TestClient(
        create_app(settings, KEY, clock=clock), base_url="https://testserver"
    ) as client:
        answer = _post_subscribe(client, "ann@example.org")
    assert answer.status_code == 503 and "try again later" in answer.text
    pending = _subscriber(settings, "ann@example.org")
    assert pending is not None and pending.state is SubscriberState.PENDING
