"""`digest subscribers list | add | remove | import | export` through the real CLI, on a real
store file, and how the settings file's recipients and the store's subscribers combine on
`digest send` (outbox backend)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import time_machine
from click.testing import CliRunner, Result

from digest.cli import cli
from tests.conftest import FEEDS, write_settings

FEED = [{"url": str(FEEDS / "nasa.xml"), "name": "NASA"}]
DAY_ONE = datetime(2024, 3, 1, 5, tzinfo=UTC)
DAY_TWO = datetime(2024, 3, 2, 5, tzinfo=UTC)


def _config(tmp_path: Path, recipients: tuple[str, ...] = ("Ann <ann@example.org>",)) -> Path:
    sections = {"render": {"empty_edition": "send"}}  # an edition every day, news or not
    return write_settings(tmp_path, FEED, recipients=recipients, sections=sections)


def _digest(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def _listed(config: Path) -> dict[str, dict[str, Any]]:
    result = _digest(config, "subscribers", "list", "--json")
    assert result.exit_code == 0, result.output
    return {s["address"]: s for s in json.loads(result.output)}


def _outbox_recipients(tmp_path: Path) -> list[str]:
    from email import message_from_bytes, policy

    found = []
    for path in sorted((tmp_path / "outbox").rglob("*.eml")):
        found.append(str(message_from_bytes(path.read_bytes(), policy=policy.default)["To"]))
    return found


def test_add_remove_and_list_keep_each_change_and_its_history(tmp_path: Path) -> None:
    config = _config(tmp_path)
    first = _digest(config, "subscribers", "list")
    assert "no subscribers in the store" in first.output
    assert "1 address in the settings file, not in the store yet" in first.output
    with time_machine.travel(DAY_ONE, tick=False):
        added = _digest(config, "subscribers", "add", "Bob Smith <Bob@EXAMPLE.org>")
    assert added.exit_code == 0 and "added Bob@example.org: active" in added.output
    with time_machine.travel(DAY_TWO, tick=False):
        removed = _digest(config, "subscribers", "remove", "bob@example.org")
    assert "Bob@example.org: unsubscribed" in removed.output
    table = _digest(config, "subscribers", "list").output
    assert "Bob@example.org  unsubscribed  2024-03-02 08:00  cli" in table  # Istanbul time
    bob = _listed(config)["Bob@example.org"]
    assert (bob["name"], bob["how"], bob["created_at"]) == ("Bob Smith", "cli", DAY_ONE.isoformat())
    again = _digest(config, "subscribers", "add", "bob@example.org")
    assert again.exit_code == 0 and "Bob@example.org: active again" in again.output
    assert "warning: Bob@example.org was unsubscribed since 2024-03-02 08:00 (cli)" in again.output
    assert "already active" in _digest(config, "subscribers", "add", "BOB@example.org").output
    assert list(_listed(config)) == ["Bob@example.org"]  # one subscriber throughout


def test_removing_an_unknown_address_keeps_the_settings_file_from_adding_it(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, ("Ann <ann@example.org>", "cy@example.org"))
    result = _digest(config, "subscribers", "remove", "ANN@example.org")
    assert "was not a subscriber: recorded as unsubscribed" in result.output
    assert _digest(config, "send").exit_code == 0
    assert _outbox_recipients(tmp_path) == ["cy@example.org"]
    assert _listed(config)["ANN@example.org"]["state"] == "unsubscribed"  # local part as given


def test_a_settings_address_that_unsubscribed_stays_unsubscribed_on_the_next_send(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, ("Ann <ann@example.org>", "Bee <bee@example.org>"))
    with time_machine.travel(DAY_ONE, tick=False):
        assert _digest(config, "send").exit_code == 0
    assert sorted(_outbox_recipients(tmp_path)) == [
        "Ann <ann@example.org>",
        "Bee <bee@example.org>",
    ]
    subscribers = _listed(config)
    assert {s["how"] for s in subscribers.values()} == {"settings"}
    assert _digest(config, "subscribers", "remove", "ann@example.org").exit_code == 0
    with time_machine.travel(DAY_TWO, tick=False):
        result = _digest(config, "send")
        assert result.exit_code == 0, result.output
        assert "ann@example.org" not in _digest(config, "send", "--dry-run").output
    recipients = _outbox_recipients(tmp_path)
    assert recipients.count("Ann <ann@example.org>") == 1  # day one only
    assert recipients.count("Bee <bee@example.org>") == 2
    assert _listed(config)["ann@example.org"]["state"] == "unsubscribed"


def test_with_nobody_in_either_source_send_says_so_and_builds_nothing(tmp_path: Path) -> None:
    config = _config(tmp_path, ())
    result = _digest(config, "send")
    assert result.exit_code == 1
    assert "no one to send to: [delivery].recipients and recipients_file list nobody" in (
        result.output
    )
    assert "has no active subscriber" in result.output and "digest subscribers add" in result.output
    assert _digest(config, "subscribers", "add", "reader@example.org").exit_code == 0
    assert _digest(config, "send").exit_code == 0
    assert _outbox_recipients(tmp_path) == ["reader@example.org"]


def test_import_reports_each_bad_line_of_ten_thousand_and_imports_nothing(tmp_path: Path) -> None:
    config = _config(tmp_path)
    lines = ["email,name"] + [f"reader{n}@example.org,Reader {n}" for n in range(10_000)]
    lines[2_000] = "not an address,X"
    lines[5_000] = '"evil@example.org\r\nBcc: victim@example.org",Evil'
    lines[7_000] = "reader1@EXAMPLE.org,Again"
    lines[9_000] = "zoë@example.org,Zoë"
    csv_file = tmp_path / "readers.csv"
    csv_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = _digest(config, "subscribers", "import", str(csv_file))
    assert result.exit_code == 1
    # Line numbers count the header as line 1; the quoted field spans two lines.
    assert "line 2001: 'not an address': is not an email address" in result.output
    assert "line 5001: 'evil@example.org\\r\\nBcc: victim@example.org': must be a single line" in (
        result.output
    )
    assert "line 7002: 'reader1@example.org' is listed twice (first on line 3)" in result.output
    assert "line 9002: 'zoë@example.org': 'zoë@example.org' has non-ASCII characters" in (
        result.output
    )
    assert "4 bad lines of 10000: nothing imported" in result.output
    assert _listed(config) == {}
    started = time.perf_counter()
    skipped = _digest(config, "subscribers", "import", "--skip-bad", str(csv_file))
    elapsed = time.perf_counter() - started
    assert skipped.exit_code == 0, skipped.output
    assert "imported 9996 new subscribers" in skipped.output and "skipped 4 bad lines" in (
        skipped.output
    )
    assert elapsed < 10, f"importing 10,000 lines took {elapsed:.1f} s"
    listed = _listed(config)
    assert len(listed) == 9_996 and listed["reader7@example.org"]["name"] == "Reader 7"
    assert "evil@example.org" not in listed and "victim@example.org" not in listed


def test_import_keeps_known_addresses_as_they_are(tmp_path: Path) -> None:
    config = _config(tmp_path)
    _digest(config, "subscribers", "remove", "gone@example.org")
    csv_file = tmp_path / "readers.csv"
    csv_file.write_text("name,email\nGone,Gone@example.org\nNew,new@example.org\n")
    result = _digest(config, "subscribers", "import", str(csv_file))
    assert result.exit_code == 0, result.output
    assert "imported 1 new subscriber" in result.output
    assert "1 address already known, kept as they are (1 unsubscribed)" in result.output
    listed = _listed(config)
    assert listed["gone@example.org"]["state"] == "unsubscribed"
    assert (listed["new@example.org"]["state"], listed["new@example.org"]["how"]) == (
        "active", "import",
    )  # fmt: skip


def test_a_file_without_an_email_column_is_refused(tmp_path: Path) -> None:
    csv_file = tmp_path / "readers.csv"
    csv_file.write_text("address\na@example.org\n")
    result = _digest(_config(tmp_path), "subscribers", "import", str(csv_file))
    assert result.exit_code == 1 and "line 1: no 'email' column" in result.output


def test_header_injection_is_refused_by_add_and_remove(tmp_path: Path) -> None:
    config = _config(tmp_path)
    for command in ("add", "remove"):
        result = _digest(config, "subscribers", command, "a@b.co\r\nBcc: x@y.zz")
        assert result.exit_code == 1
        assert "must be a single line" in result.output
    assert _listed(config) == {}


def test_export_writes_every_subscriber_to_stdout_or_a_file(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with time_machine.travel(DAY_ONE, tick=False):
        _digest(config, "subscribers", "add", '"Ann, A." <ann@example.org>')
        _digest(config, "subscribers", "remove", "bob@example.org")
    result = _digest(config, "subscribers", "export")
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "address,name,state,since,how,reason,bounces",
        f'ann@example.org,"Ann, A.",active,{DAY_ONE.isoformat()},cli,,0',
        f"bob@example.org,,unsubscribed,{DAY_ONE.isoformat()},cli,,0",
    ]
    out = tmp_path / "export.csv"
    written = _digest(config, "subscribers", "export", "--out", str(out))
    assert written.exit_code == 0
    assert out.read_text(encoding="utf-8") == result.output
