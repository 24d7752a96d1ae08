from __future__ import annotations

import ipaddress
import socket

import pytest

from app.webhooks.errors import (
    InvalidWebhookUrl,
    WebhookHostUnresolvable,
    WebhookUrlNotAllowed,
)
from app.webhooks.url_safety import (
    AddressPolicy,
    GuardedSocketFactory,
    SafeResolver,
    UnsafeAddress,
    check_webhook_url,
    dialling,
    is_public,
    parse_webhook_url,
)
from tests.webhooks.conftest import StaticResolver, static_resolve

NO_ALLOW_LIST = AddressPolicy()


class TestIsPublic:
    @pytest.mark.parametrize(
        "address",
        [
            "127.0.0.1",
            "127.8.9.10",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.170.2",
            "100.64.0.1",
            "100.100.100.200",
            "192.0.0.192",
            "0.0.0.0",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
            "2001:0:4136:e378:8000:63bf:f5ff:fffe",
        ],
    )
    def test_not_public(self, address: str) -> None:
        assert not is_public(ipaddress.ip_address(address))

    @pytest.mark.parametrize(
        "address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450::1"]
    )
    def test_public(self, address: str) -> None:
        assert is_public(ipaddress.ip_address(address))


class TestParseWebhookUrl:
    def test_https_default_port(self) -> None:
        url = parse_webhook_url("  https://Example.COM/hooks?x=1 ")

        assert url.url == "https://Example.COM/hooks?x=1"
        assert url.scheme == "https"
        assert url.host == "example.com"
        assert url.port == 443
        assert url.address is None

    def test_http_explicit_port(self) -> None:
        url = parse_webhook_url("http://127.0.0.1:8080/x")

        assert url.port == 8080
        assert url.address == ipaddress.ip_address("127.0.0.1")

    def test_ipv6_literal(self) -> None:
        url = parse_webhook_url("http://[::1]:9000/")

        assert url.host == "::1"
        assert url.address == ipaddress.ip_address("::1")

    def test_idna_host(self) -> None:
        url = parse_webhook_url("https://bücher.example/hook")

        assert url.host == "xn--bcher-kva.example"

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("", "empty"),
            ("ftp://example.com/", "scheme must be http or https, not ftp://"),
            ("file:///etc/passwd", "scheme must be http or https"),
            ("javascript:alert(1)", "scheme must be http or https"),
            ("example.com/hooks", "has no scheme; start it with https://"),
            ("https://user:pass@example.com/", "credentials"),
            ("https://example.com/#frag", "fragment"),
            ("https:///path", "host is missing"),
            ("https://example.com:99999/", "Port out of range"),
            ("https://example.com:0/", "port 0"),
            ("https://exa mple.com/", "whitespace"),
            ("https://example.com/\x00", "control characters"),
            ("http://2130706433/", "dotted-quad"),
            ("http://127.1/", "dotted-quad"),
            ("http://0x7f.0.0.1/", "dotted-quad"),
            ("http://[not-ipv6]/", "not-ipv6"),
            ("https://example.com/" + "a" * 2048, "longer than 2048"),
        ],
    )
    def test_invalid(self, text: str, reason: str) -> None:
        with pytest.raises(InvalidWebhookUrl) as caught:
            parse_webhook_url(text)

        assert reason in caught.value.detail
        assert caught.value.errors[0]["field"] == "url"

    def test_hex_looking_name_is_a_host(self) -> None:
        url = parse_webhook_url("https://0xcafe.example.com/")

        assert url.host == "0xcafe.example.com"

    def test_idna_2008_host(self) -> None:
        # IDNA 2003 maps "ß" to "ss", but aiohttp's URL parser dials the IDNA 2008
        # name, so the address checks must resolve that one.
        url = parse_webhook_url("https://straße.example/hook")

        assert url.host == "xn--strae-oqa.example"

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("https://\u2488.example/", "not a valid host name"),
            ("https://a\uff0fb.example/", "invalid characters"),
            ("https://[2606:4700::1]x/", "Invalid IPv6 URL"),
            ("https://a!b.example/", "not a valid host name"),
        ],
    )
    def test_host_yarl_rejects(self, text: str, reason: str) -> None:
        with pytest.raises(InvalidWebhookUrl) as caught:
            parse_webhook_url(text)

        assert reason in caught.value.detail


class TestAddressPolicy:
    def test_parses_entries(self) -> None:
        policy = AddressPolicy.from_entries(
            ["LocalHost.", ".internal", "10.0.0.0/8", "127.0.0.1", "[::1]", " "]
        )

        assert policy.hostnames == frozenset({"localhost"})
        assert policy.domains == (".internal",)
        assert ipaddress.ip_network("10.0.0.0/8") in policy.networks
        assert ipaddress.ip_network("::1/128") in policy.networks

    def test_host_name_allows_private_addresses(self) -> None:
        policy = AddressPolicy.from_entries(["hooks.internal"])

        policy.check("hooks.internal", [ipaddress.ip_address("10.1.2.3")])

        with pytest.raises(UnsafeAddress):
            policy.check("other.internal", [ipaddress.ip_address("10.1.2.3")])

    def test_domain_suffix(self) -> None:
        policy = AddressPolicy.from_entries([".corp.example"])

        assert policy.allows_host("a.corp.example")
        assert policy.allows_host("A.B.Corp.Example.")
        assert not policy.allows_host("corp.example.evil.com")

    def test_network_allows_its_addresses_only(self) -> None:
        policy = AddressPolicy.from_entries(["10.0.0.0/8"])

        policy.check("anything", [ipaddress.ip_address("10.200.0.1")])
        with pytest.raises(UnsafeAddress):
            policy.check("anything", [ipaddress.ip_address("192.168.0.1")])

    def test_one_bad_address_rejects_the_host(self) -> None:
        addresses = [ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("10.0.0.1")]

        with pytest.raises(UnsafeAddress) as caught:
            NO_ALLOW_LIST.check("mixed.example", addresses)

        assert caught.value.address == ipaddress.ip_address("10.0.0.1")

    def test_metadata_needs_its_exact_address(self) -> None:
        metadata = ipaddress.ip_address("169.254.169.254")
        broad = AddressPolicy.from_entries(["169.254.0.0/16", "metadata.internal"])
        exact = AddressPolicy.from_entries(["169.254.169.254"])

        with pytest.raises(UnsafeAddress) as caught:
            broad.check("metadata.internal", [metadata])
        exact.check("169.254.169.254", [metadata])

        assert "cloud metadata" in str(caught.value)


class TestCheckWebhookUrl:
    async def test_private_literal_rejected(self) -> None:
        with pytest.raises(WebhookUrlNotAllowed) as caught:
            await check_webhook_url("http://10.0.0.1/hooks", NO_ALLOW_LIST)

        assert caught.value.extra["address"] == "10.0.0.1"

    async def test_metadata_literal_rejected(self) -> None:
        with pytest.raises(WebhookUrlNotAllowed):
            await check_webhook_url("http://169.254.169.254/latest/", NO_ALLOW_LIST)

    async def test_name_resolving_private_rejected(self) -> None:
        resolve = static_resolve({"evil.example": ["8.8.8.8", "127.0.0.1"]})

        with pytest.raises(WebhookUrlNotAllowed) as caught:
            await check_webhook_url(
                "https://evil.example/", NO_ALLOW_LIST, resolve=resolve
            )

        assert caught.value.extra["address"] == "127.0.0.1"

    @pytest.mark.parametrize("path", ["/%zz", "/a%2", "/a%"])
    async def test_bad_percent_escape_rejected(self, path: str) -> None:
        resolve = static_resolve({"hooks.example": ["8.8.8.8"]})

        with pytest.raises(InvalidWebhookUrl) as caught:
            await check_webhook_url(
                f"https://hooks.example{path}", NO_ALLOW_LIST, resolve=resolve
            )

        assert "not a percent-escape" in caught.value.detail

    async def test_percent_escapes_accepted(self) -> None:
        resolve = static_resolve({"hooks.example": ["8.8.8.8"]})

        url = await check_webhook_url(
            "https://hooks.example/a%20b?q=%C3%A9", NO_ALLOW_LIST, resolve=resolve
        )

        assert url.url == "https://hooks.example/a%20b?q=%C3%A9"

    async def test_name_resolving_public_accepted(self) -> None:
        resolve = static_resolve({"hooks.example": ["8.8.8.8", "2606:4700::1111"]})

        url = await check_webhook_url(
            "https://hooks.example/in", NO_ALLOW_LIST, resolve=resolve
        )

        assert url.host == "hooks.example"

    async def test_unresolvable(self) -> None:
        with pytest.raises(WebhookHostUnresolvable):
            await check_webhook_url(
                "https://missing.example/", NO_ALLOW_LIST, resolve=static_resolve({})
            )

    async def test_no_addresses(self) -> None:
        resolve = static_resolve({"empty.example": []})

        with pytest.raises(WebhookHostUnresolvable):
            await check_webhook_url(
                "https://empty.example/", NO_ALLOW_LIST, resolve=resolve
            )

    async def test_localhost_allowed_by_name(self) -> None:
        policy = AddressPolicy.from_entries(["localhost"])

        url = await check_webhook_url("http://localhost:8080/hooks", policy)

        assert url.host == "localhost"


class TestSafeResolver:
    async def test_rejects_rebound_name(self) -> None:
        inner = StaticResolver({"rebind.example": ["127.0.0.1"]})
        resolver = SafeResolver(NO_ALLOW_LIST, inner)

        with pytest.raises(UnsafeAddress):
            await resolver.resolve("rebind.example", 443)

    async def test_passes_public_addresses(self) -> None:
        inner = StaticResolver({"hooks.example": ["8.8.8.8"]})
        resolver = SafeResolver(NO_ALLOW_LIST, inner)

        results = await resolver.resolve("hooks.example", 443)

        assert [result["host"] for result in results] == ["8.8.8.8"]


class TestGuardedSocketFactory:
    def test_rejects_private_address(self) -> None:
        factory = GuardedSocketFactory(NO_ALLOW_LIST)
        addr_info = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", 80))

        with pytest.raises(UnsafeAddress):
            factory(addr_info)

    def test_allowed_host_name_applies_while_dialling(self) -> None:
        factory = GuardedSocketFactory(AddressPolicy.from_entries(["localhost"]))
        addr_info = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80))

        with dialling("localhost"):
            sock = factory(addr_info)
        sock.close()
        with pytest.raises(UnsafeAddress):
            factory(addr_info)

    def test_allowed_address(self) -> None:
        factory = GuardedSocketFactory(AddressPolicy.from_entries(["127.0.0.1"]))
        addr_info = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80))

        sock = factory(addr_info)

        assert sock.family == socket.AF_INET
        sock.close()
