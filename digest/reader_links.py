"""Reader links: warnings about the settings' links and addresses that readers will see but
that lead nowhere, because they name a domain reserved for examples and tests (RFC 2606,
RFC 6761), this machine, or a private address.

A copied example config would otherwise mail every reader a dead "view in browser" link and
an unsubscribe link that cannot work. These are warnings, not problems: a test or demo
setup uses such names on purpose. Reads the user's own templates (``[render].template_dir``)
to find the links written into them; nothing else.
"""

from __future__ import annotations

import ipaddress
import re
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import urlsplit

from digest.config import Settings

_EXAMPLE_DOMAINS = ("example.com", "example.net", "example.org")
_RESERVED_TLDS = {
    "example": "a top-level domain reserved for examples (RFC 2606)",
    "test": "a top-level domain reserved for testing (RFC 6761)",
    "invalid": "a top-level domain reserved to be invalid (RFC 6761)",
    "localhost": "a name for this machine (RFC 6761)",
    "local": "a name only this network resolves (mDNS, RFC 6762)",
}
# A link written into a template: only literal ones, not {{ … }} expressions.
_TEMPLATE_LINK = re.compile(r"""(?:https?://|mailto:)[^\s"'<>{}]+""", re.IGNORECASE)


def reader_link_warnings(settings: Settings) -> list[str]:
    """Each reader-visible link or address in the settings (and the user's templates) that
    points at an example, test or local name, with what readers would get and the fix."""
    render, delivery = settings.render, settings.delivery
    found = [
        _url_warning("[render].archive_url", render.archive_url, 'the "view in browser" link'),
        _url_warning(
            "[delivery].unsubscribe_url",
            delivery.unsubscribe_url,
            "the Unsubscribe link and the List-Unsubscribe header",
        ),
        _url_warning(
            "[web].base_url",
            settings.web.base_url,
            "the readers' own Unsubscribe links and the confirmation links",
        ),
        _address_warning(
            "[delivery].unsubscribe_mailto",
            delivery.unsubscribe_mailto,
            "the List-Unsubscribe address",
        ),
        _address_warning("[delivery].from", delivery.from_, "the sender readers see and reply to"),
        _list_id_warning(delivery.list_id),
    ]
    if render.template_dir is not None:
        found.extend(_template_warnings(render.template_dir))
    return [warning for warning in found if warning]


def reserved_name(host: str) -> str | None:
    """Why readers cannot reach ``host`` (a domain or an IP address), or None if they may."""
    host = host.lower().rstrip(".").strip("[]")
    if host in _EXAMPLE_DOMAINS or host.endswith(tuple(f".{d}" for d in _EXAMPLE_DOMAINS)):
        return "a domain reserved for examples (RFC 2606)"
    if host in _RESERVED_TLDS or host.rpartition(".")[2] in _RESERVED_TLDS:
        return _RESERVED_TLDS[host.rpartition(".")[2]]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.is_loopback or address.is_unspecified:
        return "this machine's address"
    if address.is_private or address.is_link_local or address.is_reserved:
        return "a private address readers' machines cannot reach"
    return None


def _url_warning(key: str, url: str | None, shown_as: str) -> str | None:
    host = urlsplit(url).hostname if url else None
    reason = reserved_name(host) if host else None
    if url is None or host is None or reason is None:
        return None
    return (
        f"{key} = {url!r}: {host} is {reason}, so {shown_as} in every edition would lead nowhere; "
        "set your own address, or comment the key out"
    )


def _address_warning(key: str, value: str | None, shown_as: str) -> str | None:
    domain = parseaddr(value)[1].rpartition("@")[2] if value else ""
    reason = reserved_name(domain) if domain else None
    if reason is None:
        return None
    return (
        f"{key} = {value!r}: {domain} is {reason}, so {shown_as} cannot receive mail; "
        "use an address on your own domain"
    )


def _list_id_warning(list_id: str | None) -> str | None:
    if list_id is None:
        return None
    identifier = list_id.rpartition("<")[2].partition(">")[0] if "<" in list_id else list_id
    namespace = identifier.strip().lower()
    # RFC 2919 reserves "localhost" for list ids that are not meant to be unique: allowed.
    reason = None if namespace.endswith("localhost") else reserved_name(namespace)
    if reason is None:
        return None
    return (
        f"[delivery].list_id = {list_id!r}: {namespace} is under {reason}, not a domain you "
        "control, so readers' filters on this List-ID may match other lists; use a name under "
        "your own domain (or end it in .localhost, RFC 2919)"
    )


def _template_warnings(template_dir: Path) -> list[str]:
    warnings = []
    files = sorted(template_dir.glob("*.j2")) if template_dir.is_dir() else []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            for link in _TEMPLATE_LINK.findall(line):
                warnings.append(_template_link_warning(path, number, link))
    return [warning for warning in warnings if warning]


def _template_link_warning(path: Path, number: int, link: str) -> str:
    if link.lower().startswith("mailto:"):
        host = parseaddr(link[len("mailto:") :].partition("?")[0])[1].rpartition("@")[2]
    else:
        host = urlsplit(link).hostname or ""
    reason = reserved_name(host) if host else None
    if reason is None:
        return ""
    return (
        f"{path}, line {number}: the link {link!r} goes to {host}, {reason}: it leads nowhere "
        "for readers; put your own address there"
    )
