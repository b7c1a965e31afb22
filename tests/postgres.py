"""A real PostgreSQL for the tests that need one (marked ``postgres``), on 127.0.0.1 only.

The server is ``$DIGEST_TEST_POSTGRES_URL`` (a ``postgresql://`` URL), else
``postgresql://postgres@127.0.0.1:5432/test``. A test run makes a database of its own there
(``digest_test_<pid>_<random>``) and drops it at the end; each test gets a schema of its own
in it (its URL sets ``search_path`` to it), so no test sees another's rows. Without a server
the tests are skipped with the reason; under ``CI=true`` they fail (tests/conftest.py).
"""

from __future__ import annotations

import functools
import itertools
import os
import secrets
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

URL_ENV_VAR = "DIGEST_TEST_POSTGRES_URL"
# Read on import: the clean_environ fixture removes DIGEST_* variables from each test.
SERVER_URL = os.environ.get(URL_ENV_VAR) or "postgresql://postgres@127.0.0.1:5432/test"
_schemas = itertools.count(1)


def with_database(url: str, database: str) -> str:
    """``url`` naming another database on the same server."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def with_schema(url: str, schema: str) -> str:
    """``url`` whose sessions keep their tables in ``schema`` (their search_path)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _server(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5432}{parts.path}"


def _close_pools() -> None:
    # Imported here: the conftest imports this module, and no test of the conftest itself
    # (tests/test_corpus_marker.py) should need digest's PostgreSQL store to import it.
    from digest.pg_connection import close_pools

    close_pools()


@functools.cache
def unavailable_reason() -> str | None:
    """Why the tests' PostgreSQL cannot be used here, or None."""
    try:
        psycopg.connect(SERVER_URL, connect_timeout=5).close()
    except psycopg.Error as exc:
        said = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (
            f"PostgreSQL at {_server(SERVER_URL)} is unreachable: {said};"
            f" set {URL_ENV_VAR} to a server these tests may create databases on"
        )
    return None


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database of this test run's own on the tests' server (its URL), dropped at the end."""
    name = f"digest_test_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(SERVER_URL, name)
    finally:
        _close_pools()
        with psycopg.connect(SERVER_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def postgres_url(postgres_database: str) -> Iterator[str]:
    """The URL of an empty schema of the test's own, in this run's database."""
    schema = f"test_{next(_schemas)}"
    with psycopg.connect(postgres_database, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield with_schema(postgres_database, schema)
    _close_pools()  # the test's sessions end with it
