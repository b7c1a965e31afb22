"""``[store].url``: which engine holds the store, and where (pure; no connection is made).

``sqlite:///digest.db`` is a SQLite file (after the third slash a relative path, so
``sqlite:////var/lib/digest.db`` is absolute), the same as ``path = "digest.db"``.
``postgresql://user@host:port/database`` (or ``postgres://``, with libpq's query parameters
such as ``?sslmode=require`` or ``?service=digest``) is a PostgreSQL server. The password is
never in the settings file: libpq reads it from $PGPASSWORD, ~/.pgpass or pg_service.conf.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

_POSTGRES_SCHEMES = ("postgresql", "postgres")
_FORMS = 'write "sqlite:///digest.db" or "postgresql://user@host:5432/database"'
_NO_PASSWORD = (
    "has a password: passwords come from $PGPASSWORD, a ~/.pgpass file or a pg_service.conf"
    " service, never the settings file; remove it from the URL"
)
_USERINFO_PASSWORD = re.compile(r"(://[^/@:]*):[^/@]*@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&'\"\s]*", re.IGNORECASE)


def sqlite_url_path(url: object) -> str | None:
    """The file a well-formed ``sqlite:///path`` URL names, as written; None for anything else."""
    if not isinstance(url, str) or not url.lower().startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :]
    return path if path and "?" not in path and "#" not in path else None


def check_postgres_url(url: str) -> str:
    """The URL if it names a PostgreSQL server without a password; else ValueError saying
    what is wrong (the settings' other engine, SQLite, is taken before this is asked)."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        raise ValueError(f"is not a SQLite URL digest reads: {_FORMS} (three slashes)")
    if scheme not in _POSTGRES_SCHEMES:
        raise ValueError(f"is not a store URL digest knows (sqlite or postgresql): {_FORMS}")
    parts = urlsplit(url)
    try:
        has_password = parts.password is not None
        _ = parts.port  # a port that is not a number raises here
    except ValueError as exc:
        raise ValueError(f"is not a well-formed URL ({exc}): {_FORMS}") from None
    if has_password or "password" in {k.lower() for k in parse_qs(parts.query)}:
        raise ValueError(_NO_PASSWORD)
    _check_libpq_reads(url)
    return url


def _check_libpq_reads(url: str) -> None:
    from psycopg import ProgrammingError  # the PostgreSQL driver: only for a postgresql URL
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(url)
    except ProgrammingError as exc:
        raise ValueError(f"is not a URL libpq reads ({exc}): {_FORMS}") from None


def hide_password(text: str) -> str:
    """``text`` with any URL password in it replaced by ``***``, for messages."""
    return _QUERY_PASSWORD.sub(r"\1***", _USERINFO_PASSWORD.sub(r"\1:***@", text))
