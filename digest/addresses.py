"""Which addresses digest connects to when it fetches a feed, a redirect or an article page
(the rule against server-side request forgery), and the aiohttp resolver that enforces it.

A feed's links and redirects are someone else's: they must not make digest read a service
only this machine or its network can reach, and mail the answer to every reader. So an
address that is not public (``refused_address``) is connected to only for the host and port
of the configured feed URL itself (a bridge of your own on this machine), or when it lies in
``[collect].allowed_internal_networks``. The rule is applied to the address actually
connected to: at each name lookup (``PolicyResolver``, so a name that resolves or re-binds
to an internal address is caught), to an address written in the URL (aiohttp looks those up
nowhere), and to the connected socket's peer.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Origin = tuple[str, int]  # a URL's host, in lower case, and its port

REFUSED_HINT = (
    "digest connects to an internal address only for a configured feed URL's own host and"
    " port, or one in [collect].allowed_internal_networks"
)
# Named first: ipaddress counts carrier-grade NAT neither private nor global, and the
# metadata services deserve their own name in a message.
_NAMED_NETWORKS: tuple[tuple[IpNetwork, str], ...] = tuple(
    (ipaddress.ip_network(network), reason)
    for network, reason in (
        ("169.254.169.254/32", "a cloud metadata address"),
        ("fd00:ec2::254/128", "a cloud metadata address"),
        ("100.100.100.200/32", "a cloud metadata address"),
        ("192.0.0.192/32", "a cloud metadata address"),
        ("100.64.0.0/10", "a carrier-grade NAT address"),
        ("64:ff9b:1::/48", "a local-use NAT64 address"),
        ("fc00::/7", "a unique-local address"),
    )
)
_CLASSES = (
    ("is_loopback", "a loopback address"),
    ("is_unspecified", "the unspecified address"),
    ("is_link_local", "a link-local address"),
    ("is_multicast", "a multicast address"),
    ("is_site_local", "a site-local address"),
    ("is_private", "a private address"),
    ("is_reserved", "a reserved address"),
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def refused_address(address: IpAddress) -> str | None:
    """Why digest does not connect to ``address`` on a feed's behalf ("a loopback address"),
    or None for a public one. An IPv4 address inside an IPv6 one (mapped, compatible,
    NAT64, 6to4) is judged as itself."""
    embedded = _embedded_ipv4(address)
    if embedded is None:
        return _special(address)
    reason = _special(embedded)
    return f"an IPv6 form of {embedded}, {reason}" if reason else None


def _embedded_ipv4(address: IpAddress) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    is_compatible = address in _IPV4_COMPATIBLE and int(address) > 1  # not :: or ::1
    if address in _NAT64 or is_compatible:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def _special(address: IpAddress) -> str | None:
    for network, reason in _NAMED_NETWORKS:
        if address.version == network.version and address in network:
            return reason
    return next((reason for name, reason in _CLASSES if getattr(address, name, False)), None)


def literal_address(host: str) -> IpAddress | None:
    """The address a URL's host names by itself (``127.0.0.1``, ``::1``, and the old forms
    the system still reads: ``2130706433``, ``0x7f.1``, ``0177.0.0.1``), or None: a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, UnicodeError, ValueError):
        return None


def url_host(url: str) -> str | None:
    """The host of a URL as aiohttp reads it (an IPv6 address without its brackets)."""
    try:
        return URL(url).raw_host
    except (TypeError, ValueError):
        return None


def url_origin(url: str) -> Origin | None:
    """The host and port of an http(s) URL, as aiohttp reads them; None for anything else."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        return None
    if parsed.scheme not in ("http", "https") or not parsed.raw_host or parsed.port is None:
        return None
    return _host_key(parsed.raw_host), parsed.port


def _host_key(host: str) -> str:
    address = literal_address(host)
    return str(address) if address is not None else host.rstrip(".").lower()


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressPolicy:
    """The internal addresses one fetch may connect to: any, for the host and port of
    ``origin`` (the configured feed URL's); those in ``allowed_networks``, for any host."""

    origin: Origin | None = None
    allowed_networks: tuple[IpNetwork, ...] = ()

    def refusal(self, host: str, port: int, address: IpAddress) -> str | None:
        """Why connecting to ``address`` for ``host``:``port`` is refused; None: allowed."""
        reason = refused_address(address)
        if reason is None or (_host_key(host), port) == self.origin:
            return None
        forms = (address, _embedded_ipv4(address))
        allowed = any(
            form in network
            for form in forms
            if form is not None
            for network in self.allowed_networks
            if form.version == network.version
        )
        return None if allowed else reason


class RefusedAddressError(OSError):
    """A connection the address policy refuses; ``description`` says which address and why
    ("localhost resolves to 127.0.0.1, a loopback address")."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class PolicyResolver(AbstractResolver):
    """aiohttp's threaded resolver, keeping only the addresses the policy allows; when none
    is left, the lookup fails with ``RefusedAddressError``."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        self._resolver = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        refusals = [self.policy.refusal(host, port, ipaddress.ip_address(r["host"])) for r in found]
        kept = [result for result, refusal in zip(found, refusals, strict=True) if not refusal]
        if found and not kept:
            first = found[0]["host"]
            raise RefusedAddressError(f"{host} resolves to {first}, {refusals[0]}")
        return kept

    async def close(self) -> None:
        await self._resolver.close()
