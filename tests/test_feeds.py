"""`digest feeds`: list, failures, add, import, export, through the CLI on real parts
(a loopback feed server, a settings file and a SQLite store under tmp_path)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from digest.cli import cli
from digest.config import load_settings
from digest.models import FeedSource
from digest.opml import read_opml
from digest.settings_file import append_feeds
from tests.conftest import FEEDS, SAMPLE, FeedServer, write_settings

OPML = SAMPLE / "opml"  # copies of real exports from the corpus
CANADA = OPML / "plenaryapp__awesome-rss-feeds" / "countries" / "with_category" / "Canada.opml"


def _run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


def _config(tmp_path: Path, server: FeedServer, *paths: str) -> Path:
    feeds = [{"url": server.url(p), "name": p.rsplit("/", 1)[-1]} for p in paths]
    path = write_settings(tmp_path, feeds)
    # A comment the edits must keep where it is.
    path.write_text("# my digest, hand-edited\n" + path.read_text(encoding="utf-8"))
    return path


def _urls(config: Path) -> list[str]:
    return [f.url for f in load_settings(config).feeds]


# list and failures


def test_list_before_any_collect_shows_new_feeds_and_creates_no_store(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = _config(tmp_path, feed_server, "feeds/nasa.xml")
    result = _run(config, "feeds", "list")
    assert result.exit_code == 0, result.output
    header, row, summary = result.output.splitlines()
    assert header.split()[:4] == ["status", "name", "stories", "fails"]
    assert row.split()[:5] == ["new", "nasa.xml", "0", "0", "never"]
    assert row.endswith(feed_server.url("feeds/nasa.xml"))
    assert summary.startswith("1 feed: 1 new")
    assert not (tmp_path / "digest.db").exists()


def test_list_shows_a_failing_feed_with_its_error_kind_and_history(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = _config(tmp_path, feed_server, "feeds/nasa.xml", "status/500")
    _run(config, "collect")
    _run(config, "collect")
    result = _run(config, "feeds", "list")
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line for line in result.output.splitlines()[1:-1]}
    assert rows["nasa.xml"].split()[:4] == ["ok", "nasa.xml", "1", "0"]
    failing = rows["500"]
    assert failing.split()[:5] == ["failing", "500", "0", "2", "never"]
    assert "http: HTTP 500 Internal Server Error" in failing
    assert result.output.splitlines()[-1].startswith("2 feeds: 1 ok, 1 failing;")

    history = _run(config, "feeds", "failures", feed_server.url("status/500"))
    assert history.exit_code == 0
    lines = history.output.splitlines()
    assert "2 most recent failures, newest first" in lines[0]
    assert len(lines) == 3
    assert all(
        line.split()[2:] == ["http", "HTTP", "500", "Internal", "Server", "Error"]
        for line in lines[1:]
    )
    assert (
        "no failures recorded"
        in _run(config, "feeds", "failures", feed_server.url("feeds/nasa.xml")).output
    )


def test_collect_shows_each_failed_feed_with_its_error_kind(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.extra_routes["/old.xml"] = (301, {"Location": "/feeds/nasa.xml"}, b"")
    config = _config(tmp_path, feed_server, "old.xml", "status/500", "garbage")
    lines = _run(config, "collect").output.splitlines()
    assert lines[1].split()[:3] == ["old.xml", "new", "1"]
    assert lines[1].endswith(f"(moved permanently to {feed_server.url('feeds/nasa.xml')})")
    assert lines[2].split()[:3] == ["500", "failed", "0"]
    assert lines[2].endswith("  http: HTTP 500 Internal Server Error")
    assert lines[3].split()[:4] == ["garbage", "failed", "0", "parse:"]


def test_list_json(tmp_path: Path, feed_server: FeedServer) -> None:
    config = _config(tmp_path, feed_server, "feeds/nasa.xml", "status/503")
    _run(config, "collect")
    result = _run(config, "feeds", "list", "--json")
    assert result.exit_code == 0
    by_name = {item["name"]: item for item in json.loads(result.output)}
    ok, failing = by_name["nasa.xml"], by_name["503"]
    assert ok["status"] == "ok" and ok["stories"] == 1 and ok["last_success_at"].endswith("+00:00")
    assert failing["status"] == "failing" and failing["failures"] == 1
    assert failing["last_error_kind"] == "http" and "503" in failing["last_error"]
    assert failing["url"] == feed_server.url("status/503") and failing["is_gone"] is False


def test_a_moved_feed_shows_where_it_is_fetched_from_now(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    new_home = feed_server.url("feeds/nasa.xml")
    feed_server.extra_routes["/old.xml"] = (301, {"Location": new_home}, b"")
    config = _config(tmp_path, feed_server, "old.xml")
    _run(config, "collect")
    result = _run(config, "feeds", "list")
    assert f"moved permanently to {new_home} (fetched from there)" in result.output
    assert json.loads(_run(config, "feeds", "list", "--json").output)[0]["fetch_url"] == new_home


def test_failures_of_an_unknown_feed_is_a_clear_error(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = _config(tmp_path, feed_server, "feeds/nasa.xml")
    result = _run(config, "feeds", "failures", "https://elsewhere.example.org/rss")
    assert result.exit_code == 1
    assert "is not one of the configured feeds" in result.output


# add


def test_add_checks_the_feed_and_takes_its_title(tmp_path: Path, feed_server: FeedServer) -> None:
    config = _config(tmp_path, feed_server, "feeds/nasa.xml")
    before = config.read_text(encoding="utf-8")
    url = feed_server.url("feeds/jsonfeed.json")
    result = _run(config, "feeds", "add", url, "--category", "Tech")
    assert result.exit_code == 0, result.output
    assert f"added JSON Feed ({url})" in result.output
    after = config.read_text(encoding="utf-8")
    assert after.startswith(before)  # comments and layout untouched: appended only
    assert (
        after[len(before) :]
        == f'\n[[feeds]]\nurl = "{url}"\nname = "JSON Feed"\ncategory = "Tech"\n'
    )
    added = load_settings(config).feeds[-1]
    assert (added.url, added.name, added.category) == (url, "JSON Feed", "Tech")
    assert (feed_server.requests[-1][0]) == "/feeds/jsonfeed.json"  # really fetched


def test_add_a_duplicate_adds_nothing(tmp_path: Path, feed_server: FeedServer) -> None:
    config = _config(tmp_path, feed_server, "feeds/nasa.xml")
    before = config.read_bytes()
    same = feed_server.url("feeds/nasa.xml").replace("http://", "HTTP://") + "/"
    result = _run(config, "feeds", "add", same)
    assert result.exit_code == 1
    assert "is already configured (as 'nasa.xml'); nothing added" in result.output
    assert config.read_bytes() == before
    assert feed_server.requests == []  # no check needed to know


def test_a_feed_that_fails_the_check_is_not_added(tmp_path: Path, feed_server: FeedServer) -> None:
    config = _config(tmp_path, feed_server, "feeds/nasa.xml")
    before = config.read_bytes()
    for path, reason in [
        ("status/404", "http: HTTP 404 Not Found; not added"),
        ("garbage", "not a readable feed"),
    ]:
        result = _run(config, "feeds", "add", feed_server.url(path))
        assert result.exit_code == 1
        assert reason in result.output and "--no-check" in result.output
    assert config.read_bytes() == before


def test_no_check_adds_without_fetching(tmp_path: Path, feed_server: FeedServer) -> None:
    config = _config(tmp_path, feed_server, "feeds/nasa.xml")
    url = feed_server.url("status/404")
    name = 'Quotes "and" back\\slash\tand a tab'
    result = _run(config, "feeds", "add", url, "--no-check", "--name", name)
    assert result.exit_code == 0, result.output
    assert feed_server.requests == []
    added = load_settings(config).feeds[-1]
    assert (added.url, added.name) == (url, name)


def test_add_takes_the_new_address_of_a_moved_feed(tmp_path: Path, feed_server: FeedServer) -> None:
    config = _config(tmp_path, feed_server, "feeds/jsonfeed.json")
    feed_server.extra_routes["/old.xml"] = (308, {"Location": "/feeds/nasa.xml"}, b"")
    result = _run(config, "feeds", "add", feed_server.url("old.xml"))
    assert result.exit_code == 0, result.output
    assert "has moved permanently: added its new address" in result.output
    assert _urls(config)[-1] == feed_server.url("feeds/nasa.xml")


def test_readding_a_gone_feed_revives_it(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.extra_routes["/gone.xml"] = (410, {}, b"gone")
    config = _config(tmp_path, feed_server, "feeds/nasa.xml", "gone.xml")
    url = feed_server.url("gone.xml")
    _run(config, "collect")
    listed = _run(config, "feeds", "list").output
    assert "gone (410) — remove it, or re-add it" in listed
    assert [line.split()[0] for line in listed.splitlines()[1:3]] == ["ok", "gone"]

    still_gone = _run(config, "feeds", "add", url)
    assert still_gone.exit_code == 1 and "answers 410 Gone" in still_gone.output

    body = (FEEDS / "nasa.xml").read_bytes()
    feed_server.extra_routes["/gone.xml"] = (200, {"Content-Type": "application/rss+xml"}, body)
    before = config.read_bytes()
    revived = _run(config, "feeds", "add", url)
    assert revived.exit_code == 0, revived.output
    assert "revived gone.xml" in revived.output
    assert config.read_bytes() == before  # it was configured all along
    _run(config, "collect")
    health = json.loads(_run(config, "feeds", "list", "--json").output)
    assert [(h["status"], h["is_gone"]) for h in health] == [("ok", False), ("ok", False)]


def test_a_config_that_cannot_take_a_table_is_left_unchanged(tmp_path: Path) -> None:
    config = write_settings(tmp_path, [])
    inline = 'feeds = [{url = "https://one.example.org/rss"}]\n'
    config.write_text(inline + config.read_text(encoding="utf-8"), encoding="utf-8")
    before = config.read_bytes()
    result = _run(config, "feeds", "add", "--no-check", "https://two.example.org/rss")
    assert result.exit_code == 2
    assert "would not be valid TOML" in result.output and "inline array" in result.output
    assert config.read_bytes() == before


def test_append_feeds_skips_configured_and_repeated_urls(tmp_path: Path) -> None:
    config = write_settings(tmp_path, [{"url": "https://one.example.org/rss"}])
    feeds = (
        FeedSource(url="https://ONE.example.org:443/rss/"),
        FeedSource(url="https://two.example.org/rss", name="Two"),
        FeedSource(url="http://two.example.org/rss"),
    )
    assert append_feeds(config, feeds, dry_run=True) == feeds[1:2]
    assert _urls(config) == ["https://one.example.org/rss"]
    assert append_feeds(config, feeds) == feeds[1:2]
    assert _urls(config) == ["https://one.example.org/rss", "https://two.example.org/rss"]


# import and export


def test_import_adds_what_an_invalid_file_lists_and_says_what_was_wrong(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = _config(tmp_path, feed_server, "feeds/nasa.xml")
    before = config.read_text(encoding="utf-8")
    dry = _run(config, "feeds", "import", str(CANADA), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would add 10 to" in dry.output
    assert config.read_text(encoding="utf-8") == before

    result = _run(config, "feeds", "import", str(CANADA))
    assert result.exit_code == 0, result.output
    assert "  + Financial Post [Canada]  https://business.financialpost.com/feed/" in result.output
    assert "  ! not valid XML (not well-formed (invalid token) at line 12" in result.output
    assert result.output.splitlines()[-1].endswith(
        "10 feeds found, 10 added, 0 already configured, 1 problem(s)"
    )
    assert config.read_text(encoding="utf-8").startswith(before)
    feeds = load_settings(config).feeds
    assert len(feeds) == 11 and {f.category for f in feeds[1:]} == {"Canada"}

    again = _run(config, "feeds", "import", str(CANADA))
    assert again.exit_code == 0  # nothing to do is not a failure
    assert "skipped 10 already configured:" in again.output
    assert len(load_settings(config).feeds) == 11


def test_import_with_a_category_puts_every_feed_in_it(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = _config(tmp_path, feed_server, "feeds/nasa.xml")
    opml = OPML / "newsboat__newsboat" / "example.opml"
    result = _run(config, "feeds", "import", str(opml), "--category", "Imported")
    assert result.exit_code == 0, result.output
    assert {f.category for f in load_settings(config).feeds[1:]} == {"Imported"}


def test_import_of_a_file_with_no_feeds_fails_and_changes_nothing(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = _config(tmp_path, feed_server, "feeds/nasa.xml")
    before = config.read_bytes()
    for name in (
        "stringer-rss__stringer/fixtures/invalid.opml",
        "rometools__rome/opml_1.0_links.xml",
    ):
        result = _run(config, "feeds", "import", str(OPML / name))
        assert result.exit_code == 1
        assert "no feeds found" in result.output
    assert "... and 11 more" in result.output  # 41 problems in the links file: 30 shown
    missing = _run(config, "feeds", "import", str(tmp_path / "missing.opml"))
    assert missing.exit_code == 1 and "cannot read" in missing.output
    assert config.read_bytes() == before


def test_export_round_trips_through_import(tmp_path: Path, feed_server: FeedServer) -> None:
    config = _config(tmp_path, feed_server, "feeds/nasa.xml")
    assert (
        _run(config, "feeds", "import", str(OPML / "newsboat__newsboat" / "example.opml")).exit_code
        == 0
    )
    configured = [(f.url, f.name, f.category) for f in load_settings(config).feeds]
    exported = _run(config, "feeds", "export")
    assert exported.exit_code == 0
    found = read_opml(exported.stdout_bytes, "stdout")
    assert found.problems == ()
    assert sorted((f.url, f.name, f.category) for f in found.feeds) == sorted(configured)

    out = tmp_path / "feeds.opml"
    written = _run(config, "feeds", "export", "--out", str(out))
    assert written.exit_code == 0 and out.read_bytes() == exported.stdout_bytes

    other = tmp_path / "other"
    other.mkdir()
    fresh = write_settings(other, [{"url": feed_server.url("feeds/nasa.xml"), "name": "nasa.xml"}])
    assert _run(fresh, "feeds", "import", str(out)).exit_code == 0
    assert sorted((f.url, f.name, f.category) for f in load_settings(fresh).feeds) == sorted(
        configured
    )
