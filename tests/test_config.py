from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from digest.config import Settings, find_config_path, load_settings
from digest.errors import ConfigError
from digest.reader_links import reader_link_warnings, reserved_name
from tests.conftest import REPO, settings_keys, write_settings


def _problems(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return str(caught.value)


def test_example_settings_file_is_valid_and_resolves_paths_next_to_it() -> None:
    settings = load_settings(REPO / "settings.toml")
    assert settings.timezone == "Europe/Istanbul"
    assert settings.store.path == REPO / "digest.db"
    assert settings.delivery.outbox == REPO / "outbox"
    assert settings.summarize.summarizer == "extractive"
    assert all(feed.url.startswith("https://") for feed in settings.feeds)


def _document_keys(document: dict[str, object], prefix: str = "") -> set[str]:
    keys = set()
    for key, value in document.items():
        if isinstance(value, dict):
            keys |= _document_keys(value, f"{prefix}{key}.")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for table in value:
                keys |= _document_keys(table, f"{prefix}{key}.")
        else:
            keys.add(prefix + key)
    return keys


def test_every_setting_is_documented_in_the_example_file() -> None:
    text = (REPO / "settings.toml").read_text()
    documented = _document_keys(tomllib.loads(text))
    # template_dir and the abstractive token limits are optional and shown commented out
    documented.add("render.template_dir")
    documented |= {"summarize.max_new_tokens", "summarize.min_new_tokens"}
    documented.add("summarize.max_input_tokens")
    documented.add("summarize.prompt")  # a long template: shown commented out
    documented.add("schedule.log_file")
    # the optional delivery extras too (a recipients file would have to exist)
    documented |= {"delivery.recipients_file", "delivery.unsubscribe_url"}
    documented |= {"delivery.unsubscribe_mailto", "delivery.list_id", "smtp.ca_file"}
    # and what readers would see or the server would be asked: no working value to ship
    documented |= {"render.archive_url", "smtp.username", "web.base_url"}
    # and the rate limits: unset is no limit
    documented |= {"delivery.max_per_minute", "delivery.max_per_hour"}
    documented.add("store.url")  # instead of path: shown commented out
    assert "# max_per_minute = " in text and "# max_per_hour = " in text
    assert settings_keys(Settings) == documented


def test_demo_config_loads_with_local_feed_files() -> None:
    settings = load_settings(REPO / "examples" / "demo.toml")
    for feed in settings.feeds:
        assert Path(feed.url).is_file(), feed.url
    assert settings.collect.max_age_days == 0
    assert settings.delivery.backend == "outbox"


def test_typo_in_a_key_names_the_file_the_key_and_the_fix(tmp_path: Path) -> None:
    path = write_settings(
        tmp_path, [{"url": "https://example.org/rss"}], sections={"smtp": {"prot": 25}}
    )
    message = _problems(path)
    assert str(path) in message
    assert "[smtp].prot: unknown key; did you mean 'port'?" in message
    assert "valid keys: ca_file, host, max_messages_per_connection, port, retries," in message


def test_every_problem_is_reported_at_once_with_the_bad_value(tmp_path: Path) -> None:
    path = write_settings(
        tmp_path,
        [{"url": "htp://example.org/rss"}, {"urll": "feeds/a.xml"}],
        timezone="Europe/Istanbl",
        sections={"smtp": {"port": "abc"}, "schedule": {"send_at": "7am"}},
    )
    message = _problems(path)
    assert "timezone = 'Europe/Istanbl': is not an IANA time zone name" in message
    assert "[[feeds]] #1.url = 'htp://example.org/rss': must be an http:// or https://" in message
    assert "[[feeds]] #2.url: required, but not set" in message
    assert "[[feeds]] #2.urll: unknown key; did you mean 'url'?" in message
    assert "[smtp].port = 'abc'" in message
    assert "[schedule].send_at = '7am': must be a quoted 24-hour time in the timezone" in message
    assert "6 problem(s)" in message


def test_a_problem_in_a_feed_names_the_feed_by_its_url(tmp_path: Path) -> None:
    long_url = "https://example.org/" + "a" * 200
    feeds = [
        {"url": "https://example.org/one"},
        {"url": "https://example.org/two"},
        {"url": "https://example.org/three/rss", "nmae": "Three"},
        {"url": long_url, "priority": "high"},
    ]
    message = _problems(write_settings(tmp_path, feeds))
    assert (
        "[[feeds]] #3 (https://example.org/three/rss).nmae: unknown key; did you mean 'name'?"
        in (message)
    )
    assert "[[feeds]] #4 (https://example.org/aaa" in message
    assert "a…).priority = 'high': Input should be a valid integer" in message
    assert " .nmae" not in message and long_url not in message


@pytest.mark.parametrize(
    ("written", "kept"), [("7:00", "07:00"), ("07:00", "07:00"), ("9:05:30", "09:05:30")]
)
def test_send_at_takes_h_mm_and_keeps_it_as_hh_mm(tmp_path: Path, written: str, kept: str) -> None:
    path = write_settings(
        tmp_path, [{"url": "https://example.org/rss"}], sections={"schedule": {"send_at": written}}
    )
    schedule = load_settings(path).schedule
    assert schedule.send_at == kept
    assert schedule.editions[0]["hour"] == str(int(kept[:2]))


@pytest.mark.parametrize("written", ["7", "07:00:00", "7.5", '"24:00"', '"7:60"', '"7.00"'])
def test_send_at_that_is_not_a_quoted_time_says_what_to_write(tmp_path: Path, written: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        '[[feeds]]\nurl = "https://example.org/rss"\n'
        '[delivery]\nfrom = "a@example.org"\nrecipients = ["b@example.org"]\n'
        f"[schedule]\nsend_at = {written}\n"
    )
    if written == "07:00:00":  # TOML's unquoted local time: what was meant is clear
        assert load_settings(path).schedule.send_at == "07:00:00"
        return
    message = _problems(path)
    assert f"[schedule].send_at = {tomllib.loads(f'v = {written}')['v']!r}: must be" in message
    assert 'a quoted 24-hour time in the timezone, like send_at = "07:00"' in message
    assert "valid string" not in message


def test_bad_addresses_and_duplicate_recipients_are_config_errors(tmp_path: Path) -> None:
    path = write_settings(
        tmp_path,
        [{"url": "https://example.org/rss"}],
        recipients=("a@example.org", "not-an-address"),
    )
    assert "[delivery].recipients #2 = 'not-an-address': is not an email address" in _problems(path)
    path = write_settings(
        tmp_path,
        [{"url": "https://example.org/rss"}],
        recipients=("a@example.org", "Someone <A@example.org>"),
    )
    assert "lists 'a@example.org' twice" in _problems(path)


def test_header_injection_in_a_recipient_is_refused(tmp_path: Path) -> None:
    path = write_settings(
        tmp_path, [{"url": "https://example.org/rss"}], recipients=("a@example.org\nBcc: x@y.org",)
    )
    assert "must be a single line" in _problems(path)


def test_missing_feeds_and_missing_file(tmp_path: Path) -> None:
    message = _problems(tmp_path / "nowhere.toml")
    assert "config file not found" in message
    assert "DIGEST_CONFIG" in message
    empty = tmp_path / "empty.toml"
    empty.write_text('[delivery]\nfrom = "a@example.org"\nrecipients = ["b@example.org"]\n')
    assert "at least one [[feeds]] table with a url is required" in _problems(empty)


def test_invalid_toml_says_where(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('timezone = "UTC"\n[store\npath = 1\n')
    message = _problems(path)
    assert "not valid TOML" in message
    assert "line 2" in message


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    path = write_settings(folder, [{"url": "feeds/local.xml"}, {"url": "file:///srv/x.xml"}])
    settings = load_settings(path)
    assert settings.feeds[0].url == str(folder / "feeds" / "local.xml")
    assert settings.feeds[1].url == "/srv/x.xml"
    assert settings.store.path == folder / "digest.db"


def test_default_paths_are_beside_the_config_file_when_their_table_is_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "conf"
    (folder / "sshleifer" / "distilbart-cnn-12-6").mkdir(parents=True)  # the default model's
    path = folder / "settings.toml"
    path.write_text(
        '[[feeds]]\nurl = "https://example.org/rss"\n'
        '[delivery]\nfrom = "d@example.org"\nrecipients = ["r@example.org"]\n'
    )
    monkeypatch.chdir(tmp_path)
    settings = load_settings(Path("conf/settings.toml"))
    assert settings.store.path == folder / "digest.db"
    assert settings.delivery.outbox == folder / "outbox"
    assert settings.summarize.model == str(folder / "sshleifer" / "distilbart-cnn-12-6")


def test_config_is_found_from_option_then_environment_then_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config_path(None) == Path("settings.toml")
    monkeypatch.setenv("DIGEST_CONFIG", "/etc/digest.toml")
    assert find_config_path(None) == Path("/etc/digest.toml")
    assert find_config_path("mine.toml") == Path("mine.toml")


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(write_settings(tmp_path, [{"url": "https://example.org/rss"}]))
    with pytest.raises(ValueError, match="frozen"):
        settings.timezone = "UTC"


def test_numbers_are_not_guessed_from_other_types(tmp_path: Path) -> None:
    path = write_settings(
        tmp_path,
        [{"url": "https://example.org/rss"}],
        sections={"smtp": {"port": 25.0}, "collect": {"max_age_days": True}},
    )
    message = _problems(path)
    assert "[smtp].port = 25.0: Input should be a valid integer" in message
    assert "[collect].max_age_days = True: Input should be a valid integer" in message


def test_wrong_types_and_table_checks_read_as_the_file_is_written(tmp_path: Path) -> None:
    path = write_settings(
        tmp_path,
        [{"url": "https://example.org/rss", "dedupe": "no"}],
        sections={
            "summarize": {"min_new_tokens": 50, "max_new_tokens": 20},
            "render": {"title": 5},
        },
    )
    message = _problems(path)
    assert "[[feeds]] #1 (https://example.org/rss).dedupe = 'no': must be true or false" in message
    assert "[render].title = 5: must be text in double quotes" in message
    assert "[summarize]: min_new_tokens (50) is larger than max_new_tokens (20)" in message
    assert "{" not in message and "Input should" not in message


def test_a_missing_section_is_named_as_a_table(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[[feeds]]\nurl = "https://example.org/rss"\n[store]\npath = "~/digest.db"\n')
    assert "[delivery]: required, but not set" in _problems(path)
    path.write_text(
        path.read_text() + '[delivery]\nfrom = "a@example.org"\nrecipients = ["b@example.org"]\n'
    )
    assert load_settings(path).store.path == Path.home() / "digest.db"


# Links readers will see


def _uncommented(text: str, *keys: str) -> str:
    for key in keys:
        text = text.replace(f"# {key} = ", f"{key} = ")
    return text


def test_the_example_settings_are_safe_to_copy() -> None:
    # Copied as it is, nothing a reader clicks or that logs in may be filled in: only the
    # required sender is, and check says to change it.
    settings = load_settings(REPO / "settings.toml")
    assert settings.render.archive_url is None and settings.delivery.unsubscribe_url is None
    assert settings.delivery.unsubscribe_mailto is None and settings.delivery.list_id is None
    assert settings.smtp.username is None
    (warning,) = reader_link_warnings(settings)
    assert warning.startswith("[delivery].from = 'Daily Digest <digest@example.org>': example.org")


def test_the_commented_examples_are_warned_about_once_uncommented(tmp_path: Path) -> None:
    text = (REPO / "settings.toml").read_text(encoding="utf-8")
    keys = ("archive_url", "unsubscribe_url", "unsubscribe_mailto", "list_id")
    path = tmp_path / "settings.toml"
    path.write_text(_uncommented(text, *keys), encoding="utf-8")
    warnings = reader_link_warnings(load_settings(path))
    for key in ("[render].archive_url", "[delivery].unsubscribe_url"):
        (found,) = [w for w in warnings if w.startswith(f"{key} = 'https://example.org/")]
        assert "reserved for examples (RFC 2606)" in found and "leads nowhere" not in found
    assert any(w.startswith("[delivery].unsubscribe_mailto = 'unsubscribe@") for w in warnings)
    assert any(w.startswith("[delivery].list_id = ") for w in warnings)
    assert len(warnings) == 5  # and the sender


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("example.org", "RFC 2606"),
        ("News.Example.COM.", "RFC 2606"),
        ("example.net", "RFC 2606"),
        ("digest.example", "RFC 2606"),
        ("mail.test", "testing (RFC 6761)"),
        ("digest.invalid", "invalid (RFC 6761)"),
        ("localhost", "this machine"),
        ("news.localhost", "this machine"),
        ("printer.local", "mDNS"),
        ("127.0.0.1", "this machine"),
        ("::1", "this machine"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("169.254.1.1", "private"),
        ("example.org.uk", None),
        ("myexample.org", None),
        ("news.example-site.com", None),
        ("testing.com", None),
        ("93.184.215.14", None),
    ],
)
def test_reserved_names_are_the_rfc_ones_and_no_others(host: str, reason: str | None) -> None:
    found = reserved_name(host)
    assert found == reason if reason is None else reason in (found or ""), found


def test_each_reader_visible_setting_is_checked(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "digest.txt.j2").write_text(
        "{{ title }}\nAbout us: https://news.example.com/about\n"
        "Write to mailto:editor@localhost?subject=hi or see https://real-news.org/x\n"
    )
    path = write_settings(
        tmp_path,
        [{"url": "https://example.org/rss"}],  # a feed is not shown as a link: not checked
        sections={
            "render": {"archive_url": "http://127.0.0.1:8000/{date}", "template_dir": "templates"},
            "delivery": {
                "from": "Digest <digest@real-news.org>",
                "unsubscribe_url": "https://real-news.org/unsubscribe",
                "unsubscribe_mailto": "leave@lists.test",
                "list_id": "Digest <digest.localhost>",  # RFC 2919's own choice: fine
            },
        },
    )
    warnings = reader_link_warnings(load_settings(path))
    assert [w.split(" = ")[0] for w in warnings[:2]] == [
        "[render].archive_url",
        "[delivery].unsubscribe_mailto",
    ]
    assert "127.0.0.1 is this machine's address" in warnings[0]
    assert "lists.test is a top-level domain reserved for testing" in warnings[1]
    template = str(templates / "digest.txt.j2")
    assert warnings[2].startswith(f"{template}, line 2: the link 'https://news.example.com/about'")
    assert warnings[3].startswith(f"{template}, line 3: the link 'mailto:editor@localhost?")
    assert len(warnings) == 4


def test_check_prints_the_warnings_and_still_passes(tmp_path: Path) -> None:
    text = (REPO / "settings.toml").read_text(encoding="utf-8")
    path = tmp_path / "settings.toml"
    path.write_text(_uncommented(text, "archive_url"), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(path), "check"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "OK (5 feeds" in result.stdout
    assert "WARNING" in result.stderr
    assert "[render].archive_url = 'https://example.org/digest/{date}.html'" in result.stderr
    assert "[delivery].from = 'Daily Digest <digest@example.org>'" in result.stderr


def _numbers(model: type[BaseModel], prefix: str = "") -> dict[str, Any]:
    """Each int or float setting (nested sections too) with its pydantic field info."""
    found: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        args = (info.annotation, *getattr(info.annotation, "__args__", ()))
        nested = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if nested:
            found |= _numbers(nested[0], f"{prefix}{info.alias or name}.")
        elif any(a in (int, float) for a in args) and info.annotation is not bool:
            found[prefix + (info.alias or name)] = info
    return found


def test_every_number_in_the_settings_has_an_upper_bound() -> None:
    # A value that validates but breaks every run (timeout_seconds = inf: a traceback per
    # recipient) is caught at load instead.
    unbounded = [
        key
        for key, info in _numbers(Settings).items()
        if not any(hasattr(m, "le") or hasattr(m, "lt") for m in info.metadata)
    ]
    assert len(_numbers(Settings)) > 20 and unbounded == []


@pytest.mark.parametrize("value", ["inf", "nan", "1e308"])
def test_an_infinite_timeout_is_refused_at_load(tmp_path: Path, value: str) -> None:
    path = write_settings(tmp_path, [{"url": "https://example.org/rss"}])
    path.write_text(path.read_text() + f"[smtp]\ntimeout_seconds = {value}\n", encoding="utf-8")
    assert "[smtp].timeout_seconds" in _problems(path)


@pytest.mark.parametrize(
    "subject", ["{{ range(10**9)|list|length }}", "{{ 'x' * 10**10 }}", "{{ 9 ** (10**9) }}"]
)
def test_a_subject_template_cannot_take_the_machines_memory(tmp_path: Path, subject: str) -> None:
    from click.testing import CliRunner

    from digest.cli import cli

    config = write_settings(
        tmp_path, [{"url": "https://example.org/rss"}], sections={"render": {"subject": subject}}
    )
    result = CliRunner().invoke(cli, ["--config", str(config), "check"])
    assert result.exit_code == 1, result.output
    assert "subject" in result.output and "Traceback" not in result.output


# [store].url


def _store_url_settings(tmp_path: Path, **store: str | None) -> Path:
    feeds = [{"url": "https://example.org/rss"}]
    return write_settings(tmp_path, feeds, sections={"store": {"path": None, **store}})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///state/digest.db", "state/digest.db"),  # beside the settings file
        ("sqlite:////var/lib/digest.db", "/var/lib/digest.db"),
    ],
)
def test_a_sqlite_url_is_the_same_as_a_path(tmp_path: Path, url: str, expected: str) -> None:
    settings = load_settings(_store_url_settings(tmp_path, url=url))
    assert settings.store.path == tmp_path / expected and settings.store.url is None


def test_a_postgresql_url_names_the_server_and_keeps_libpq_parameters(tmp_path: Path) -> None:
    url = "postgres://digest@db.example.org:6543/news?sslmode=require&application_name=d"
    settings = load_settings(_store_url_settings(tmp_path, url=url))
    assert settings.store.url == url
    assert settings.store.location == "db.example.org:6543/news"
    service = "postgresql:///?service=digest"
    assert load_settings(_store_url_settings(tmp_path, url=service)).store.url == service


@pytest.mark.parametrize(
    ("store", "said"),
    [
        ({"url": "sqlite:///a.db", "path": "b.db"}, "[store]: both path and url are set"),
        ({"url": "mysql://db/news"}, "[store].url = 'mysql://db/news': is not a store URL"),
        ({"url": "sqlite://digest.db"}, "is not a SQLite URL digest reads"),
        ({"url": "postgresql://db:port/news"}, "is not a well-formed URL"),
        ({"url": "postgresql://db/news?nonsense=1"}, "is not a URL libpq reads"),
    ],
)
def test_a_store_url_that_cannot_work_is_refused(
    tmp_path: Path, store: dict[str, str], said: str
) -> None:
    problems = _problems(_store_url_settings(tmp_path, **store))
    assert str(tmp_path / "settings.toml") in problems and said in problems


@pytest.mark.parametrize(
    "url",
    ["postgresql://digest:s3cret@db.example.org/news", "postgresql://db/news?password=s3cret"],
)
def test_a_password_in_the_store_url_is_refused_and_never_shown(tmp_path: Path, url: str) -> None:
    problems = _problems(_store_url_settings(tmp_path, url=url))
    assert "[store].url" in problems and "s3cret" not in problems
    assert "passwords come from $PGPASSWORD, a ~/.pgpass file or a pg_service.conf" in problems
