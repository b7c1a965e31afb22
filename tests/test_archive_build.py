"""``digest archive build DIR`` through the real CLI on a real SQLite store: the static pages
are the bytes ``digest web`` serves, the feed is valid Atom, no reader's token is written,
and a rerun adds a new edition while keeping the others."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import feedparser
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from digest.cli import cli
from digest.config import load_settings
from digest.messages import UNSUBSCRIBE_TOKEN
from digest.models import RenderedDigest
from digest.runtime import Runtime
from digest.web import create_app
from tests.conftest import FEEDS, write_settings

BASE = "https://news.example.org"


def _add_edition(config: Path, day: int, subject: str) -> None:
    link = f"{BASE}/unsubscribe/{UNSUBSCRIBE_TOKEN}"
    edition = RenderedDigest(
        edition_on=date(2024, 3, day),
        subject=subject,
        html=f'<html><body><h1>{subject}</h1><a href="{link}">Unsubscribe</a></body></html>',
        text=f"{subject}\nUnsubscribe: {link}\n",
    )
    with Runtime.open(load_settings(config)) as runtime:
        runtime.store.create_edition(edition, [], datetime(2024, 3, day, 5, tzinfo=UTC))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    written = write_settings(
        tmp_path,
        [{"url": str(FEEDS / "nasa.xml"), "name": "NASA"}],
        sections={"web": {"base_url": BASE}, "render": {"title": "Morning & Co"}},
    )
    _add_edition(written, 1, "First <news>")
    _add_edition(written, 2, "Second")
    return written


def _build(config: Path, site: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(config), "archive", "build", str(site)])
    assert result.exit_code == 0, result.output


def test_the_static_files_are_what_digest_web_serves(config: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    _build(config, site)
    app = create_app(load_settings(config), "k" * 40)
    with TestClient(app, base_url="https://testserver") as client:
        for path in ("/archive/", "/archive/2024-03-01/", "/archive/2024-03-02/"):
            served = client.get(path)
            assert served.status_code == 200
            assert (site / path.strip("/") / "index.html").read_bytes() == served.content
        assert (site / "feed.atom").read_bytes() == client.get("/feed.atom").content


def test_the_feed_is_atom_with_the_required_elements(config: Path, tmp_path: Path) -> None:
    _build(config, tmp_path / "site")
    parsed = feedparser.parse((tmp_path / "site" / "feed.atom").read_bytes())
    assert not parsed.bozo and parsed.version == "atom10"
    assert parsed.feed.id == f"{BASE}/feed.atom" and parsed.feed.title == "Morning & Co"
    assert parsed.feed.updated and parsed.feed.author
    assert [e.link for e in parsed.entries] == [
        f"{BASE}/archive/2024-03-02/",
        f"{BASE}/archive/2024-03-01/",
    ]
    assert all(e.id and e.title and e.updated for e in parsed.entries)


def test_no_file_carries_a_readers_link(config: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    _build(config, site)
    written = [p for p in site.rglob("*") if p.is_file()]
    assert len(written) == 4
    for path in written:
        text = path.read_text()
        assert UNSUBSCRIBE_TOKEN not in text and "/unsubscribe/" not in text, path


def test_a_rerun_adds_the_new_edition_and_keeps_the_rest(config: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    _build(config, site)
    (site / "robots.txt").write_text("User-agent: *\n")
    _add_edition(config, 3, "Third")
    _build(config, site)
    names = sorted(str(p.relative_to(site)) for p in site.rglob("*") if p.is_file())
    assert names == [
        "archive/2024-03-01/index.html",
        "archive/2024-03-02/index.html",
        "archive/2024-03-03/index.html",
        "archive/index.html",
        "feed.atom",
        "robots.txt",
    ]
    assert "<h1>Third</h1>" in (site / "archive" / "2024-03-03" / "index.html").read_text()
    assert f"{BASE}/archive/2024-03-03/" in (site / "archive" / "index.html").read_text()
    assert "Third" in (site / "feed.atom").read_text()


def test_without_a_base_url_it_refuses_and_writes_nothing(tmp_path: Path) -> None:
    config = write_settings(tmp_path, [{"url": str(FEEDS / "nasa.xml"), "name": "NASA"}])
    site = tmp_path / "site"
    result = CliRunner().invoke(cli, ["--config", str(config), "archive", "build", str(site)])
    assert result.exit_code == 2 and "[web].base_url" in result.output
    assert not site.exists()
