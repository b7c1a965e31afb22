"""Signed links (pure but for reading the key from the environment): the tokens in the
confirm and unsubscribe links, and the subscribe form's CSRF token.

A token is an itsdangerous HMAC-SHA256 signature over ``{subscriber id, list, issued at}``
with the purpose as its salt, so a confirm token never works as an unsubscribe token and the
other way round. Confirm tokens expire (``[web].confirm_hours``, counted from "issued at" by
the caller's clock); unsubscribe tokens never do: an old message's link must keep working.
The key is ``$DIGEST_SECRET_KEY`` and nothing else (never the settings file).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from itsdangerous import BadData, URLSafeSerializer, URLSafeTimedSerializer

from digest.errors import DigestError

SECRET_KEY_VARIABLE = "DIGEST_SECRET_KEY"
MIN_KEY_LENGTH = 32
Purpose = Literal["confirm", "unsubscribe"]
_KEY_HINT = (
    f'export {SECRET_KEY_VARIABLE}="$(python -c "import secrets;'
    ' print(secrets.token_urlsafe(32))")" (keep it: changing it breaks every link already mailed)'
)


class BadTokenError(DigestError):
    """A link's token is tampered with, for another purpose, or expired."""


def secret_key_problem(environ: dict[str, str] | None = None) -> str | None:
    """Why ``$DIGEST_SECRET_KEY`` cannot sign links (missing, too short); None if it can."""
    key = (os.environ if environ is None else environ).get(SECRET_KEY_VARIABLE, "")
    if not key:
        return f"${SECRET_KEY_VARIABLE} is not set: the web links cannot be signed"
    if len(key) < MIN_KEY_LENGTH:
        return f"${SECRET_KEY_VARIABLE} is {len(key)} characters; use at least {MIN_KEY_LENGTH}"
    return None


def read_secret_key() -> str:
    """The signing key from the environment; DigestError saying how to make one if unusable."""
    problem = secret_key_problem()
    if problem:
        raise DigestError(problem, hint=_KEY_HINT)
    return os.environ[SECRET_KEY_VARIABLE]


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkClaim:
    """What a valid token says: whose link it is, for which list, and when it was made."""

    subscriber_id: str
    list_slug: str
    issued_at: datetime


class LinkSigner:
    """Makes and reads the tokens of confirm and unsubscribe links with one key."""

    def __init__(self, key: str) -> None:
        self._key = key

    def _serializer(self, purpose: Purpose) -> URLSafeSerializer:
        return URLSafeSerializer(self._key, salt=f"digest.{purpose}")

    def sign(self, purpose: Purpose, subscriber_id: str, list_slug: str, now: datetime) -> str:
        """A token for ``purpose`` naming the subscriber and list, issued ``now``."""
        payload = {"s": subscriber_id, "l": list_slug, "t": now.isoformat()}
        return str(self._serializer(purpose).dumps(payload))

    def read(
        self, purpose: Purpose, token: str, now: datetime, max_age: timedelta | None = None
    ) -> LinkClaim:
        """The claim of a token signed for ``purpose`` (and younger than ``max_age``, if
        given); BadTokenError if it is tampered with, for another purpose, or expired."""
        try:
            payload = self._serializer(purpose).loads(token)
            claim = LinkClaim(
                subscriber_id=str(payload["s"]),
                list_slug=str(payload["l"]),
                issued_at=datetime.fromisoformat(payload["t"]),
            )
        except (BadData, KeyError, TypeError, ValueError) as exc:
            raise BadTokenError("this link is not valid (changed, cut short, or not ours)") from exc
        if max_age is not None and now - claim.issued_at > max_age:
            raise BadTokenError("this link has expired")
        return claim


class FormTokens:
    """The subscribe form's CSRF token: a random value, signed and timestamped by
    itsdangerous, sent both in a hidden field and a cookie; a post is accepted only when the
    two are the same and the signature is good and younger than ``max_age_seconds``."""

    def __init__(self, key: str, max_age_seconds: int = 2 * 3600) -> None:
        self._serializer = URLSafeTimedSerializer(key, salt="digest.form")
        self._max_age = max_age_seconds

    def new(self) -> str:
        return str(self._serializer.dumps(secrets.token_urlsafe(16)))

    def is_valid(self, field: str | None, cookie: str | None) -> bool:
        if not field or not cookie or not secrets.compare_digest(field, cookie):
            return False
        try:
            self._serializer.loads(field, max_age=self._max_age)
        except BadData:
            return False
        return True
