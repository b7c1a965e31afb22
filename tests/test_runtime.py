"""The runtime: how each access opens the store, and what a read-only runtime cannot do."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from digest.config import Settings, load_settings
from digest.errors import ConfigError, StoreError
from digest.models import JobRun
from digest.runtime import Runtime
from tests.conftest import FEEDS, write_settings

NOW = datetime(2024, 3, 1, 6, 0, tzinfo=UTC)


def _settings(tmp_path: Path, **sections: dict[str, object]) -> Settings:
    feeds = [{"url": str(FEEDS / "nasa.xml"), "name": "NASA"}]
    return load_settings(write_settings(tmp_path, feeds, sections=sections))


def _run() -> JobRun:
    return JobRun(job="collect", started_at=NOW, finished_at=NOW, outcome="ok", summary="-")


def test_read_before_any_store_gives_an_empty_read_only_one_and_creates_nothing(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path)
    with Runtime.open(settings, access="read") as runtime:
        assert runtime.store.is_read_only and runtime.mailers is None
        assert runtime.store.deliveries(date(2024, 3, 1)) == ()
        assert runtime.store.last_activity() is None
        with pytest.raises(StoreError):
            runtime.store.add_job_run(_run())
    assert not settings.store.path.exists()


def test_write_creates_the_store_and_can_send(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with Runtime.open(settings, clock=lambda: NOW) as runtime:
        assert not runtime.store.is_read_only and runtime.mailers is not None
        runtime.store.add_job_run(_run())
        assert runtime.clock() == NOW
    with Runtime.open(settings, access="read") as runtime:
        assert runtime.store.last_activity() == NOW


def test_update_writes_an_existing_store_and_never_creates_one(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with Runtime.open(settings, access="update") as runtime:
        assert runtime.store.is_read_only
    assert not settings.store.path.exists()
    with Runtime.open(settings):
        pass
    with Runtime.open(settings, access="update") as runtime:
        runtime.store.add_job_run(_run())


def test_the_password_is_read_once_when_the_runtime_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(
        tmp_path,
        delivery={"backend": "smtp"},
        smtp={"host": "127.0.0.1", "port": 2525, "username": "digest"},
    )
    with Runtime.open(settings) as runtime:
        monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "set too late")
        assert runtime.mailers is not None
        with pytest.raises(ConfigError, match=r"DIGEST_SMTP_PASSWORD is not"):
            runtime.mailers.require_usable()
    with Runtime.open(settings) as runtime:
        assert runtime.mailers is not None
        runtime.mailers.require_usable()


def test_reopen_gives_another_connection_with_the_same_access(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with Runtime.open(settings):
        pass
    with Runtime.open(settings, access="read") as runtime, runtime.reopen() as other:
        assert other.store is not runtime.store and other.store.is_read_only
        assert other.settings is settings
