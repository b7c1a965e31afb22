"""Shared fixtures and helpers: a real feed server on 127.0.0.1 (``feed_server``; any other
handler through ``serving`` / ``start_server``), ``free_port``, ``make_story``, settings files
under tmp_path, a clean environment. No test reaches any other address. The SMTP sink and the
edition message are in tests/deliver_sink.py, the hostile edition in tests/hostile.py; test
modules import these, never each other.

Tests that read the ../shared/data corpus beside the clone carry ``@pytest.mark.corpus``
(parametrisations over its files come from ``corpus_files``): without the corpus they are
skipped, saying which path is missing, and under ``CI=true`` they fail instead. The few cases
that matter most per stage read ``SAMPLE``, byte-for-byte copies of corpus files kept in the
repository, so a fresh clone still exercises every stage.

Tests marked ``postgres`` use a real PostgreSQL server (tests/postgres.py: a database of the
run's own, a schema per test): without one they are skipped, saying why, and under
``CI=true`` they fail.

Tests marked ``netns`` create a network namespace of their own (tests/netns.py): without root
and a working ``ip netns`` they are skipped, saying why, and under ``CI=true`` they fail.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn

import pytest
from pydantic import BaseModel

from digest.models import Story
from tests.postgres import postgres_database, postgres_url
from tests.postgres import unavailable_reason as postgres_unavailable

__all__ = ["postgres_database", "postgres_url"]  # fixtures for every test module

FIXTURES = Path(__file__).parent / "fixtures"
FEEDS = FIXTURES / "feeds"
REPO = Path(__file__).parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
# Files copied byte for byte from SHARED_DATA, under the same relative paths (see SOURCES.md).
SAMPLE = FIXTURES / "corpus"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "corpus(*paths): reads the ../shared/data corpus beside the clone (the paths under it);"
        " skipped without it, failed under CI=true",
    )
    config.addinivalue_line(
        "markers",
        "postgres: uses the PostgreSQL server of $DIGEST_TEST_POSTGRES_URL (default"
        " 127.0.0.1:5432/test); skipped without it, failed under CI=true",
    )
    config.addinivalue_line(
        "markers",
        "netns: creates a network namespace (root and `ip netns`); skipped without them,"
        " failed under CI=true",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Without the corpus (or a way to create a network namespace), the tests that need it
    are skipped with the reason (reported at the test)."""
    if os.environ.get("CI") == "true":
        return
    for item in items:
        if reason := _missing_corpus(item):
            item.add_marker(pytest.mark.skip(reason=f"{reason}; put the corpus there to run it"))
        elif reason := _missing_netns(item):
            item.add_marker(pytest.mark.skip(reason=f"{reason}; it needs root and iproute2"))
        elif reason := _missing_postgres(item):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Under CI=true a missing corpus fails its tests, before their fixtures read anything,
    and so does a missing way to create a network namespace."""
    if os.environ.get("CI") != "true":
        return
    if reason := _missing_corpus(item):
        pytest.fail(f"{reason}; CI must provide it there", pytrace=False)
    if reason := _missing_netns(item):
        pytest.fail(f"{reason}; CI must run these tests as root, with iproute2", pytrace=False)
    if reason := _missing_postgres(item):
        pytest.fail(f"{reason}; CI must provide a PostgreSQL server", pytrace=False)


def _missing_postgres(item: pytest.Item) -> str | None:
    """Why a ``postgres`` test cannot reach its server, or None."""
    return postgres_unavailable() if item.get_closest_marker("postgres") else None


def _missing_netns(item: pytest.Item) -> str | None:
    """Why a ``netns`` test cannot create its network namespace here, or None."""
    return _netns_unavailable() if item.get_closest_marker("netns") else None


@functools.cache
def _netns_unavailable() -> str | None:
    if sys.platform != "linux":
        return "this test creates a network namespace, which only Linux has"
    if os.geteuid() != 0:
        return "this test creates a network namespace, which needs root"
    if shutil.which("ip") is None:
        return "this test creates a network namespace with `ip netns`, and `ip` is missing"
    probe = f"digest-probe-{os.getpid()}"
    added = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if added.returncode != 0:
        return f"`ip netns add` failed here: {added.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True, check=True)
    return None


def _missing_corpus(item: pytest.Item) -> str | None:
    """Why the test cannot run (the first path it needs that is missing), or None."""
    marker = item.get_closest_marker("corpus")
    if marker is None:
        return None
    needed = [SHARED_DATA, *(SHARED_DATA / str(path) for path in marker.args)]
    missing = next((path for path in needed if not path.exists()), None)
    if missing is None:
        return None
    where = "" if missing == SHARED_DATA else f" ({SHARED_DATA})"
    return (
        f"{missing} is missing: this test reads the ../shared/data corpus beside the clone{where}"
    )


def in_corpus(path: str, *values: object, id: str | None = None) -> Any:
    """One parametrize case that reads SHARED_DATA/path, marked ``corpus``."""
    return pytest.param(*values, marks=pytest.mark.corpus(path), id=id)


def corpus_files(folder: str, keep: Callable[[Path], bool] = lambda path: True) -> list[Any]:
    """The files under SHARED_DATA/folder as pytest params marked ``corpus``, ids relative
    to the folder. Without the corpus: one case, which is skipped with the reason."""
    root = SHARED_DATA / folder
    marks = pytest.mark.corpus(folder)
    if not root.is_dir():
        return [pytest.param(root, marks=marks, id=f"{folder}-missing")]
    files = sorted(p for p in root.rglob("*") if p.is_file() and keep(p))
    return [pytest.param(p, marks=marks, id=str(p.relative_to(root))) for p in files]


# A folder read-only for real, even to root: bind-mounted read-only in a private mount
# namespace (unshare's default propagation is private), which only the command in it sees.
_READ_ONLY_MOUNT = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'


def in_read_only_mount(folder: Path, argv: Sequence[str]) -> list[str]:
    """``argv`` as a command that runs with ``folder`` mounted read-only, for it alone. Where
    no mount namespace can be made (not root, no unshare) the test is skipped, saying why;
    under CI=true it fails instead."""
    if problem := _mount_namespace_problem():
        cannot_run_here(problem)
    return ["unshare", "--mount", "sh", "-c", _READ_ONLY_MOUNT, "sh", str(folder), *argv]


def cannot_run_here(reason: str) -> NoReturn:
    """Skip the test, saying what this machine lacks for it; under CI=true, which runs as root
    with util-linux, fail it instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must be able to run it", pytrace=False)
    pytest.skip(reason)


@functools.cache
def _mount_namespace_problem() -> str | None:
    """Why a folder cannot be mounted read-only in a private mount namespace here, or None."""
    if shutil.which("unshare") is None:
        return "needs unshare (util-linux) to mount a folder read-only"
    is_writable = "import os, sys; sys.exit(os.access(sys.argv[1], os.W_OK))"
    with tempfile.TemporaryDirectory() as folder:
        probe = ["unshare", "--mount", "sh", "-c", _READ_ONLY_MOUNT, "sh", folder]
        done = subprocess.run(
            [*probe, sys.executable, "-c", is_writable, folder], capture_output=True, text=True
        )
    if done.returncode != 0:
        return (
            "cannot mount a folder read-only in a private mount namespace (unshare --mount "
            f"needs root): {done.stderr.strip() or f'exit {done.returncode}'}"
        )
    return None


STORY_AT = datetime(2024, 3, 1, 6, tzinfo=UTC)


def make_story(n: int, **fields: Any) -> Story:
    """Story ``n``: id sha256:n, "Story n" from the feed https://example.org/feed, linking to
    https://example.org/n, with text "Text n."; any field can be given instead."""
    story = Story(
        story_id=f"sha256:{n}",
        feed_url="https://example.org/feed",
        source_name="Example",
        category="World",
        url=f"https://example.org/{n}",
        title=f"Story {n}",
        published_at=STORY_AT,
        text=f"Text {n}.",
        html=f"<p>Text {n}.</p>",
    )
    return replace(story, **fields)


def outlet_story(number: int, feed: str, title: str, *, at: datetime, **fields: Any) -> Story:
    """Story ``number`` of the outlet at ``https://{feed}/``, published at ``at``, in
    English, with no text unless given: what dedupe tests cluster."""
    defaults: dict[str, Any] = {
        "story_id": f"sha256:{number:04d}",
        "feed_url": f"https://{feed}/feed.xml",
        "source_name": feed,
        "url": f"https://{feed}/story/{number}",
        "title": title,
        "published_at": at,
        "text": "",
        "html": "",
        "language": "en",
    }
    return make_story(number, **(defaults | fields))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DIGEST_* variable from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("DIGEST_"):
            monkeypatch.delenv(name)


@dataclass
class FeedServer:
    """What the loopback feed server saw, and where it listens."""

    base_url: str
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    extra_routes: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"


def _handler_for(server_state: FeedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            server_state.requests.append((self.path, dict(self.headers)))
            path = self.path.split("?")[0]
            if path in server_state.extra_routes:
                status, headers, body = server_state.extra_routes[path]
                return self._reply(status, headers, body)
            if path.startswith("/status/"):
                return self._reply(int(path.rsplit("/", 1)[1]), {}, b"error page")
            if path == "/garbage":
                return self._reply(200, {"Content-Type": "text/html"}, b"<html><p>hi</p>")
            if path == "/slow":
                time.sleep(5)
                return self._reply(200, {}, b"")
            if path == "/huge":
                return self._reply(200, {"Content-Type": "application/xml"}, b"x" * 3_000_000)
            if path.startswith("/feeds/"):
                return self._serve_file(FEEDS / path.removeprefix("/feeds/"))
            return self._reply(404, {}, b"not found")

        def _serve_file(self, file: Path) -> None:
            if not file.is_file():
                return self._reply(404, {}, b"not found")
            etag = f'"{int(file.stat().st_mtime)}-{file.stat().st_size}"'
            if self.headers.get("If-None-Match") == etag:
                return self._reply(304, {"ETag": etag}, b"")
            body = file.read_bytes()
            headers = {"ETag": etag, "Content-Type": _content_type(file)}
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                body = gzip.compress(body)
                headers["Content-Encoding"] = "gzip"
            return self._reply(200, headers, body)

        def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if status != 304:
                # The client may have given up first, as the timeout tests intend.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

    return Handler


def _content_type(file: Path) -> str:
    if file.suffix == ".json":
        return "application/feed+json"
    if file.suffix == ".atom":
        return "application/atom+xml"
    return "application/rss+xml; charset=utf-8"


def start_server(
    handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1"
) -> ThreadingHTTPServer:
    """A threaded HTTP server for ``handler`` on ``host`` (never all interfaces) at a free port,
    serving in a thread of its own until ``stop_server``."""
    httpd = ThreadingHTTPServer((host, 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    return httpd


def stop_server(httpd: ThreadingHTTPServer) -> None:
    httpd.shutdown()
    httpd.server_close()


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on 127.0.0.1 for the block; yield its base URL."""
    httpd = start_server(handler)
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        stop_server(httpd)


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """A threaded HTTP server on 127.0.0.1 (never all interfaces) serving tests/fixtures/feeds."""
    state = FeedServer(base_url="")
    with serving(_handler_for(state)) as base_url:
        state.base_url = base_url
        yield state


def settings_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every key a settings file can hold, dotted ("smtp.port"), from the pydantic models."""
    keys = set()
    for name, info in model.model_fields.items():
        if name == "config_path":
            continue
        key = info.alias or name
        annotation = info.annotation
        nested = [
            a
            for a in (annotation, *getattr(annotation, "__args__", ()))
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if nested:
            keys |= settings_keys(nested[0], f"{prefix}{key}.")
        else:
            keys.add(prefix + key)
    return keys


def toml_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return str(value)


def write_settings(
    folder: Path,
    feeds: list[dict[str, str]],
    *,
    recipients: tuple[str, ...] = ("reader@example.org", "Second <second@example.org>"),
    sections: dict[str, dict[str, Any]] | None = None,
    timezone: str = "Europe/Istanbul",
) -> Path:
    """Write a complete settings file for a test and return its path; ``sections`` add to
    (or, with None, remove) the default keys."""
    chosen: dict[str, dict[str, Any]] = {
        "store": {"path": "digest.db"},
        "collect": {"max_age_days": 0, "timeout_seconds": 3, "full_text": False},
        "summarize": {"summarizer": "lead", "words": 40},
        "delivery": {
            "backend": "outbox",
            "outbox": "outbox",
            "from": "Digest <digest@example.org>",
            "recipients": list(recipients),
        },
    }
    for name, values in (sections or {}).items():  # a key given as None is left out
        merged = {**chosen.get(name, {}), **values}
        chosen[name] = {key: value for key, value in merged.items() if value is not None}
    lines = [f"timezone = {toml_value(timezone)}"]
    for feed in feeds:
        lines.append("[[feeds]]")
        lines += [f"{key} = {toml_value(value)}" for key, value in feed.items()]
    for name, values in chosen.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
    path = folder / "settings.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
