"""The address policy (digest.addresses) on its own: which addresses, in every form a URL can
write them, are refused, and what a configured feed's host and port and the allowed
networks let through. Real connections under the policy are in tests/test_ssrf.py."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from digest.addresses import AddressPolicy, literal_address, refused_address, url_origin


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.1", "a loopback address"),
        ("2130706433", "a loopback address"),
        ("017700000001", "a loopback address"),
        ("0x7f.1", "a loopback address"),
        ("0x7f000001", "a loopback address"),
        ("::1", "a loopback address"),
        ("::ffff:127.0.0.1", "an IPv6 form of 127.0.0.1, a loopback address"),
        ("::ffff:7f00:1", "an IPv6 form of 127.0.0.1, a loopback address"),
        ("::127.0.0.1", "an IPv6 form of 127.0.0.1, a loopback address"),
        ("64:ff9b::7f00:1", "an IPv6 form of 127.0.0.1, a loopback address"),
        ("2002:7f00:1::", "an IPv6 form of 127.0.0.1, a loopback address"),
        ("2002:a00:1::1", "an IPv6 form of 10.0.0.1, a private address"),
        ("0", "the unspecified address"),
        ("0.0.0.0", "the unspecified address"),
        ("::", "the unspecified address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("172.31.255.255", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fe80::1", "a link-local address"),
        ("169.254.1.1", "a link-local address"),
        ("fd00::1", "a unique-local address"),
        ("fec0::1", "a site-local address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("240.0.0.1", "a private address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("::ffff:169.254.169.254", "an IPv6 form of 169.254.169.254, a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("100.100.100.200", "a cloud metadata address"),
        ("100.64.0.1", "a carrier-grade NAT address"),
        ("64:ff9b:1::a00:1", "a local-use NAT64 address"),
    ],
)
def test_an_internal_address_is_refused_in_every_form(host: str, reason: str) -> None:
    address = literal_address(host)
    assert address is not None
    assert refused_address(address) == reason


@pytest.mark.parametrize(
    "host",
    [
        "93.184.216.34",
        "2606:4700::1111",
        "::ffff:93.184.216.34",  # IPv4-mapped, IPv4-compatible, NAT64, 6to4: judged as
        "::93.184.216.34",  # the public address they carry, not as the reserved
        "64:ff9b::5db8:d822",  # IPv6 range they sit in (an IPv6-only network with DNS64
        "2002:5db8:d822::1",  # reaches every IPv4 site through 64:ff9b::/96)
    ],
)
def test_a_public_address_is_not_refused(host: str) -> None:
    address = literal_address(host)
    assert address is not None
    assert refused_address(address) is None


@pytest.mark.parametrize("host", ["example.com", "cafe.be", "0x7f.example", "localhost", ""])
def test_a_name_is_not_an_address(host: str) -> None:
    assert literal_address(host) is None


def test_the_origin_is_the_host_and_port_as_aiohttp_reads_them() -> None:
    assert url_origin("http://LocalHost./feed") == ("localhost", 80)
    assert url_origin("https://[::FFFF:7f00:1]/x") == url_origin("https://[::ffff:127.0.0.1]:443")
    assert url_origin("http://2130706433:8080/") == ("127.0.0.1", 8080)
    assert url_origin("/home/me/feed.xml") is None


def test_a_configured_feeds_host_and_port_may_be_internal_and_nothing_else() -> None:
    loopback = ip_address("127.0.0.1")
    policy = AddressPolicy(origin=("localhost", 8080))
    assert policy.refusal("localhost", 8080, loopback) is None
    assert policy.refusal("LOCALHOST.", 8080, loopback) is None
    assert policy.refusal("localhost", 8081, loopback) == "a loopback address"
    assert policy.refusal("127.0.0.1", 8080, loopback) == "a loopback address"
    assert policy.refusal("example.com", 80, ip_address("93.184.216.34")) is None


def test_an_allowed_network_lets_any_host_reach_it_in_any_form() -> None:
    policy = AddressPolicy(allowed_networks=(ip_network("192.168.1.0/24"),))
    assert policy.refusal("nas.lan", 80, ip_address("192.168.1.5")) is None
    assert policy.refusal("nas.lan", 80, ip_address("::ffff:192.168.1.5")) is None
    assert policy.refusal("router.lan", 80, ip_address("192.168.2.1")) == "a private address"
