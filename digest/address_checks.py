"""The address policy (digest.addresses) held at both ends of an HTTP connection: a URL
whose host is a refused address literal, and an answer from a refused peer."""

from __future__ import annotations

import ipaddress

import aiohttp

from digest.addresses import AddressPolicy, literal_address, url_host, url_origin
from digest.fetch_outcomes import refused


def refuse_literal(url: str, policy: AddressPolicy) -> None:
    """Refuse a URL whose host is an address the policy refuses (aiohttp does not look an
    address up, so the resolver never sees it)."""
    host, origin = url_host(url), url_origin(url)
    address = literal_address(host) if host else None
    if host and origin and address and (reason := policy.refusal(*origin, address)):
        is_usual_form = ":" in host or host == str(address)  # not 2130706433, say
        written = host if is_usual_form else f"{host} ({address})"
        raise refused(url, f"{written} is {reason}")


def refuse_peer(url: str, http: aiohttp.ClientResponse, policy: AddressPolicy) -> None:
    """Refuse an answer from a peer the policy refuses, however the connection was made."""
    transport = http.connection.transport if http.connection else None
    peer = transport.get_extra_info("peername") if transport else None
    origin = url_origin(url)
    if not peer or origin is None:
        return
    address = ipaddress.ip_address(peer[0])
    if reason := policy.refusal(*origin, address):
        raise refused(url, f"it connected to {address}, {reason}")
