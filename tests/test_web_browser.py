"""``digest web``'s forms in a real browser: headless Chromium (the DevTools helpers of
tests/test_browser.py) fills in and submits the subscribe form (its CSRF cookie and field as
a browser sends them), follows the emailed confirm link, and presses the unsubscribe page's
button; the page must raise no console error (a CSP violation is one). The application runs
under uvicorn in a thread, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email
import json
import re
import threading
import time
from collections.abc import Iterator
from email import policy
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvicorn

from digest.config import Settings, load_settings
from digest.runtime import Runtime
from digest.subscribers import LIST_SLUG
from digest.subscribing import unsubscribe_link
from digest.web import create_app
from digest.web_tokens import LinkSigner
from tests.conftest import FEEDS, free_port, write_settings
from tests.test_browser import _Cdp, _errors, devtools  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow

KEY = "browser-" + "k" * 40


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_settings(
        tmp_path,
        [{"url": str(FEEDS / "nasa.xml"), "name": "NASA"}],
        sections={"web": {"base_url": base}},
    )
    settings = load_settings(config)
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, KEY), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield base, settings
    finally:
        server.should_exit = True
        thread.join(timeout=20)


async def _open(cdp: _Cdp, url: str) -> None:
    cdp.events.clear()
    await cdp.call("Page.navigate", url=url)
    await cdp.wait_for("Page.loadEventFired")


async def _run(cdp: _Cdp, script: str) -> Any:
    """Evaluate ``script`` in the page; its value."""
    cdp.events.clear()
    answer = await cdp.call("Runtime.evaluate", expression=script, returnByValue=True)
    return answer["result"].get("value")


async def _text(cdp: _Cdp) -> str:
    return str(await _run(cdp, "document.body.innerText"))


async def _submit(cdp: _Cdp, script: str) -> str:
    await _run(cdp, script)
    await cdp.wait_for("Page.loadEventFired")
    errors = _errors(cdp.events)
    assert not errors, errors
    return await _text(cdp)


async def _journey(ws_url: str, base: str, settings: Settings) -> dict[str, str]:
    seen: dict[str, str] = {}
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
        cdp = _Cdp(ws)
        for domain in ("Page", "Runtime", "Log"):
            await cdp.call(f"{domain}.enable")
        await _open(cdp, f"{base}/subscribe")
        label = await _run(cdp, "document.querySelector('label[for=email]').textContent")
        seen["label"] = str(label)
        typed = json.dumps("ann@example.org")
        seen["subscribed"] = await _submit(
            cdp,
            f"document.getElementById('email').value = {typed};"
            " document.querySelector('form').requestSubmit(); true",
        )
        [mail] = list(settings.delivery.outbox.glob("*.eml"))
        message = email.message_from_bytes(mail.read_bytes(), policy=policy.default)
        link = re.search(re.escape(base) + r"/confirm/\S+", message.get_content())
        assert link is not None
        await _open(cdp, link.group(0))
        seen["confirmed"] = await _text(cdp)
        with Runtime.open(settings) as runtime:
            found = runtime.store.subscriber(LIST_SLUG, "ann@example.org")
        assert found is not None
        await _open(cdp, unsubscribe_link(base, LinkSigner(KEY), found))
        seen["unsubscribe page"] = await _text(cdp)
        seen["unsubscribed"] = await _submit(cdp, "document.querySelector('button').click(); true")
    return seen


def test_subscribe_confirm_and_unsubscribe_in_chromium(
    devtools: str,  # noqa: F811 - the fixture imported above
    site: tuple[str, Settings],
) -> None:
    base, settings = site
    seen = asyncio.run(_journey(devtools, base, settings))
    assert seen["label"] == "Your email address"
    assert "Check your inbox" in seen["subscribed"]
    assert "You are subscribed" in seen["confirmed"]
    assert "Press the button" in seen["unsubscribe page"]
    assert "You are unsubscribed" in seen["unsubscribed"]
    with Runtime.open(settings) as runtime:
        found = runtime.store.subscriber(LIST_SLUG, "ann@example.org")
    assert found is not None and (found.state, found.how) == ("unsubscribed", "one-click")
