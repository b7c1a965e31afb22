"""Preflight: what the mail backend needs, checked before any work and without the network.

``mailer_problems(settings, password)`` reads the file system only (the CA file, the outbox
folder, the sendmail command; the password is given, as read from the environment by
``digest.runtime``) and, with ``[web].base_url``, whether ``$DIGEST_SECRET_KEY`` can sign
the readers' links, so ``digest send`` can
refuse in a moment instead of after collecting and building, and ``digest check`` reports
the same problems. Addresses and the recipients file are validated when the settings load.
"""

from __future__ import annotations

import os
import shutil
import ssl
from pathlib import Path

from digest.config import Settings
from digest.errors import ConfigError
from digest.smtp_mailer import PASSWORD_ENV_VAR
from digest.web_tokens import SECRET_KEY_VARIABLE, secret_key_problem

_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
# Ports whose protocol is fixed by convention: 465 speaks TLS from the first byte (RFC
# 8314), 587 and 25 start in plain text and upgrade with STARTTLS.
_IMPLICIT_TLS_PORTS = {465}
_PLAIN_START_PORTS = {25, 587}


def mailer_problems(settings: Settings, password: str | None) -> list[str]:
    """Each reason the configured mail backend cannot work, naming the key and the fix
    (``password``: the SMTP password, None if not set), and a missing link-signing key."""
    return [*_backend_problems(settings, password), *_link_key_problems(settings)]


def _backend_problems(settings: Settings, password: str | None) -> list[str]:
    backend = settings.delivery.backend
    if backend == "smtp":
        return _smtp_problems(settings, password)
    if backend == "sendmail":
        return _sendmail_problems(settings.delivery.sendmail_command)
    return _outbox_problems(settings.delivery.outbox)


def _link_key_problems(settings: Settings) -> list[str]:
    """With ``[web].base_url`` every message carries a signed link: the key must be there."""
    problem = secret_key_problem() if settings.web.base_url else None
    if problem is None:
        return []
    return [f"[web].base_url is set, but {problem}: export {SECRET_KEY_VARIABLE}=... (see README)"]


def _smtp_problems(settings: Settings, password: str | None) -> list[str]:
    smtp = settings.smtp
    problems = []
    if smtp.username and not password:
        problems.append(
            f"[smtp].username = {smtp.username!r} is set but ${PASSWORD_ENV_VAR} is not: "
            f"export {PASSWORD_ENV_VAR}=... in the environment digest runs in, "
            "or remove [smtp].username if the server takes mail without a login"
        )
    problems.extend(_port_problems(smtp.security, smtp.port))
    if smtp.security == "none" and smtp.username and smtp.host not in _LOOPBACK_HOSTS:
        problems.append(
            f"[smtp].security = 'none' with [smtp].username would send the password to "
            f"{smtp.host} unencrypted: use security = 'starttls' (port 587) or 'tls' (465)"
        )
    if smtp.ca_file is not None:
        problems.extend(_ca_file_problems(smtp.ca_file, smtp.security))
    return problems


def _port_problems(security: str, port: int) -> list[str]:
    if security == "tls" and port in _PLAIN_START_PORTS:
        return [
            f"[smtp].security = 'tls' with [smtp].port = {port}: port {port} starts in plain "
            "text; use security = 'starttls' with it, or port = 465 for 'tls'"
        ]
    if security != "tls" and port in _IMPLICIT_TLS_PORTS:
        return [
            f"[smtp].security = {security!r} with [smtp].port = {port}: port {port} expects "
            "TLS from the first byte; use security = 'tls' with it, or port = 587"
        ]
    return []


def _ca_file_problems(ca_file: Path, security: str) -> list[str]:
    if security == "none":
        return [
            f"[smtp].ca_file = {str(ca_file)!r} is set but [smtp].security = 'none' uses no "
            "TLS: set security = 'starttls' or 'tls', or remove ca_file"
        ]
    try:
        ssl.create_default_context(cafile=str(ca_file))
    except OSError as exc:
        return [
            f"[smtp].ca_file: cannot read {ca_file}: {exc.strerror or exc}: "
            "point it at a readable PEM file of the CA(s) to trust"
        ]
    except ssl.SSLError as exc:
        return [
            f"[smtp].ca_file: {ca_file} holds no usable PEM certificate ({exc.reason}): "
            "point it at the CA's certificate in PEM form (-----BEGIN CERTIFICATE-----)"
        ]
    return []


def _sendmail_problems(command: tuple[str, ...]) -> list[str]:
    program = command[0]
    if shutil.which(program) is None:
        return [
            f"[delivery].sendmail_command: {program!r} is not an executable program "
            f"{'here' if os.sep in program else 'on the PATH'}: install a sendmail-compatible "
            "MTA, or give the command's full path"
        ]
    return []


def _outbox_problems(folder: Path) -> list[str]:
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing != folder and not existing.is_dir():
        return [
            f"[delivery].outbox = {str(folder)!r}: cannot be created, {existing} is not a "
            "folder: choose another path"
        ]
    if not existing.is_dir():
        return [f"[delivery].outbox = {str(folder)!r} is not a folder: choose another path"]
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "it" if existing == folder else f"{existing}, where it would be created,"
        return [
            f"[delivery].outbox = {str(folder)!r}: {where} is not writable by this user: "
            "make it writable or choose another path"
        ]
    return []


def require_usable_mailer(settings: Settings, password: str | None) -> None:
    """Raise a ConfigError (exit 2) listing ``mailer_problems``, if there are any."""
    problems = mailer_problems(settings, password)
    if problems:
        listed = "".join(f"\n  - {problem}" for problem in problems)
        raise ConfigError(
            f"{settings.config_path}: cannot send with these mail settings "
            f"(nothing was collected, built or sent):{listed}",
            hint="`digest check` reports these and every other problem",
        )
