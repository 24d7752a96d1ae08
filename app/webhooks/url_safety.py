"""Webhook destination checks: the URL at creation, the dialled address at connect time.

A webhook URL makes the worker send requests on a caller's behalf, so an unchecked URL
could reach the worker's own network or a cloud metadata service (server-side request
forgery). Hosts must resolve to public addresses only, unless the
``webhook_allow_private_hosts`` setting names the host, the address or its network.

The check runs twice. At creation every resolved address is checked. At delivery the
worker's resolver checks every address again, and the socket factory checks the one
address it is about to dial, so a DNS record that changed since creation (DNS rebinding)
is caught. Cloud metadata addresses pass only when the allow-list names that exact
address.
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from app.core.errors import quoted
from app.settings import Settings
from app.webhooks.errors import (
    InvalidWebhookUrl,
    WebhookHostUnresolvable,
    WebhookUrlNotAllowed,
)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolve = Callable[[str, int], Awaitable[list[Address]]]

MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT_SECONDS = 5.0
SCHEMES = ("http", "https")

# Instance metadata services, which hand out cloud credentials: AWS, Azure, GCP,
# OpenStack and DigitalOcean (169.254.169.254), AWS ECS task metadata (169.254.170.2),
# AWS IMDS over IPv6 (fd00:ec2::254), Alibaba Cloud (100.100.100.200), Oracle Cloud
# (192.0.0.192).
METADATA_ADDRESSES: frozenset[Address] = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",
        "169.254.170.2",
        "fd00:ec2::254",
        "100.100.100.200",
        "192.0.0.192",
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Hosts such as 2130706433, 0x7f.1 or 127.1 are IPv4 addresses to the socket library
# but not to most URL parsers.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*\.?$")
# A "%" not followed by two hexadecimal digits. yarl, and so aiohttp, would send it
# as "%25", a path other than the one given.
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2}).{0,2}")
# One label of an ASCII host name. The underscore is not valid in host names but
# appears in real DNS records, and resolvers accept it.
_HOST_LABEL = re.compile(r"^[a-z0-9_-]{1,63}$")
MAX_HOST_LENGTH = 253

# The host of the request being sent. The socket factory gets only an address, and
# reads the host from here to apply an allow-listed host name.
_dialled_host: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "webhook_dialled_host", default=None
)


class UnsafeAddress(OSError):
    """A webhook request would reach an address that the policy forbids."""

    def __init__(self, host: str, address: Address) -> None:
        kind = "a cloud metadata" if address in METADATA_ADDRESSES else "a non-public"
        super().__init__(f"{host} resolves to {address}, {kind} address")
        self.host = host
        self.address = address


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """Return the IPv4 address that an IPv6 transition address forwards to, if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def is_public(address: Address) -> bool:
    """Tell whether ``address`` is a globally routable unicast address."""
    if address in METADATA_ADDRESSES:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None and not is_public(inner):
            return False
    return (
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not address.is_unspecified
    )


def _normalize_host(host: str) -> str:
    return host.strip().lower().rstrip(".")


@dataclass(frozen=True)
class AddressPolicy:
    """The destinations webhooks may reach: the allow-list, and whether plain HTTP is
    accepted.

    The allow-list has host names, ``.domain`` suffixes, and addresses or networks.
    """

    hostnames: frozenset[str] = frozenset()
    domains: tuple[str, ...] = ()
    networks: tuple[Network, ...] = ()
    allow_http: bool = True

    @classmethod
    def from_entries(
        cls, entries: Iterable[str], *, allow_http: bool = True
    ) -> AddressPolicy:
        """Parse allow-list entries such as ``localhost``, ``.corp`` or ``10.0.0.0/8``.

        An entry that parses as an address or network is used as one. An entry that
        starts with a dot is a domain suffix, and any other is an exact host name.
        """
        hostnames: set[str] = set()
        domains: list[str] = []
        networks: list[Network] = []
        for entry in entries:
            text = entry.strip().lower()
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if text.startswith("."):
                domains.append(_normalize_host(text))
            else:
                hostnames.add(_normalize_host(text))
        return cls(frozenset(hostnames), tuple(domains), tuple(networks), allow_http)

    @classmethod
    def from_settings(cls, settings: Settings) -> AddressPolicy:
        return cls.from_entries(
            settings.webhook_allow_private_hosts, allow_http=settings.webhook_allow_http
        )

    def check_scheme(self, url: WebhookUrl) -> None:
        """Raise ``WebhookUrlNotAllowed`` for an http:// URL unless HTTP is allowed."""
        if url.scheme == "http" and not self.allow_http:
            raise WebhookUrlNotAllowed(
                "The webhook URL must use https://. Plain http:// is accepted only "
                "when an operator sets SALESCYCLE_WEBHOOK_ALLOW_HTTP.",
                reason="https is required",
            )

    def allows_host(self, host: str) -> bool:
        name = _normalize_host(host)
        return name in self.hostnames or any(
            name.endswith(domain) for domain in self.domains
        )

    def allows_address(self, address: Address, *, host_allowed: bool) -> bool:
        """Tell whether a request may dial ``address`` for a host allowed or not."""
        if address in METADATA_ADDRESSES:
            return any(
                network.num_addresses == 1 and address in network
                for network in self.networks
            )
        if is_public(address) or host_allowed:
            return True
        return any(address in network for network in self.networks)

    def check(self, host: str, addresses: Sequence[Address]) -> None:
        """Raise ``UnsafeAddress`` unless every address of ``host`` is allowed."""
        host_allowed = self.allows_host(host)
        for address in addresses:
            if not self.allows_address(address, host_allowed=host_allowed):
                raise UnsafeAddress(host, address)


@lru_cache(maxsize=8)
def policy_for(entries: tuple[str, ...], allow_http: bool) -> AddressPolicy:
    """Return the parsed policy of the ``webhook_allow_private_hosts`` and
    ``webhook_allow_http`` settings."""
    return AddressPolicy.from_entries(entries, allow_http=allow_http)


@dataclass(frozen=True)
class WebhookUrl:
    """A parsed webhook URL: its host is lower-case IDNA 2008, or an IP literal."""

    url: str
    scheme: str
    host: str
    port: int
    address: Address | None


def _invalid(reason: str) -> InvalidWebhookUrl:
    return InvalidWebhookUrl(
        f"The webhook URL is invalid: {reason}. Use an absolute http:// or https:// "
        "URL such as https://example.com/webhooks.",
        reason=reason,
    )


def _parse_ip_literal(host: str, bracketed: bool) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if bracketed:
        raise _invalid(f"{host!r} is not an IPv6 address")
    if _NUMERIC_HOST.match(host):
        raise _invalid(f"{host!r} is not a dotted-quad IPv4 address")
    return None


def parse_webhook_url(text: str) -> WebhookUrl:
    """Parse and normalise a webhook URL, raising ``InvalidWebhookUrl``."""
    url = text.strip()

    if not url:
        raise _invalid("the URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise _invalid(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(char.isspace() or not char.isprintable() for char in url):
        raise _invalid("the URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise _invalid(str(error)) from error

    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        if not scheme:
            raise _invalid(
                "the URL has no scheme; start it with https://, such as "
                "https://example.com/webhooks"
            )
        raise _invalid(f"the scheme must be http or https, not {scheme}://")
    if parts.username is not None or parts.password is not None:
        raise _invalid("credentials in the URL are not accepted")
    if parts.fragment:
        raise _invalid("a fragment (#...) is not accepted")

    raw_host = parts.hostname
    if not raw_host:
        raise _invalid("the host is missing")
    # The sender passes the URL to aiohttp, which parses it with yarl, so a URL that
    # yarl rejects could never be sent. The host checked here is the one yarl dials.
    # yarl encodes names with IDNA 2008 (UTS 46), while Python's "idna" codec
    # follows IDNA 2003, which maps "ß" to "ss", a different host.
    try:
        yarl_url = yarl.URL(url)
    except ValueError as error:
        raise _invalid(str(error)) from error
    bracketed = "[" in parts.netloc
    address = _parse_ip_literal(raw_host, bracketed)
    if address is not None:
        host = str(address)
    else:
        host = _normalize_host(yarl_url.raw_host or "")
        if len(host) > MAX_HOST_LENGTH or not all(
            _HOST_LABEL.match(label) for label in host.split(".")
        ):
            raise _invalid(f"{quoted(raw_host)} is not a valid host name")
    if port == 0:
        raise _invalid("port 0 is not a valid port")

    return WebhookUrl(
        url=url,
        scheme=scheme,
        host=host,
        port=port or (443 if scheme == "https" else 80),
        address=address,
    )


async def resolve_host(host: str, port: int) -> list[Address]:
    """Resolve ``host`` with the system resolver into its distinct addresses."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: dict[Address, None] = {}
    for _, _, _, _, sockaddr in infos:
        addresses[ipaddress.ip_address(sockaddr[0])] = None
    return list(addresses)


async def check_webhook_url(
    text: str, policy: AddressPolicy, *, resolve: Resolve = resolve_host
) -> WebhookUrl:
    """Parse ``text`` and check every address its host resolves to.

    Raises ``InvalidWebhookUrl``, ``WebhookHostUnresolvable`` or
    ``WebhookUrlNotAllowed`` (also for http:// when the policy requires https://);
    nothing is ever dialled.
    """
    url = parse_webhook_url(text)
    bad_escape = _BAD_ESCAPE.search(url.url)
    if bad_escape is not None:
        # Checked here, not in parse_webhook_url, so that a URL stored before this
        # check still sends as it did.
        raise _invalid(
            f"{bad_escape.group()!r} is not a percent-escape (write a literal % as %25)"
        )
    policy.check_scheme(url)
    if url.address is not None:
        addresses: list[Address] = [url.address]
    else:
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
                addresses = await resolve(url.host, url.port)
        except (OSError, TimeoutError) as error:
            raise WebhookHostUnresolvable(
                f"The host {url.host!r} of the webhook URL could not be resolved. "
                "Check the spelling, or retry once its DNS record exists.",
                host=url.host,
            ) from error
        if not addresses:
            raise WebhookHostUnresolvable(
                f"The host {url.host!r} of the webhook URL has no address.",
                host=url.host,
            )
    try:
        policy.check(url.host, addresses)
    except UnsafeAddress as error:
        raise WebhookUrlNotAllowed(
            f"The webhook URL is not allowed: {error}. Webhooks go to public "
            "addresses only; an operator can allow private hosts with the "
            "SALESCYCLE_WEBHOOK_ALLOW_PRIVATE_HOSTS setting.",
            host=url.host,
            address=str(error.address),
        ) from error
    return url


class SafeResolver(AbstractResolver):
    """An aiohttp resolver that fails unless every address of a host is allowed."""

    def __init__(
        self, policy: AddressPolicy, inner: AbstractResolver | None = None
    ) -> None:
        self.policy = policy
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        self.policy.check(
            host, [ipaddress.ip_address(result["host"]) for result in results]
        )
        return results

    async def close(self) -> None:
        await self._inner.close()


class GuardedSocketFactory:
    """An aiohttp socket factory that checks the address about to be dialled.

    aiohttp dials an IP-literal URL without asking the resolver, so this is also the
    check for literals. Send requests inside ``dialling(host)`` so an allow-listed
    host name applies; without it only public and allow-listed addresses pass.
    """

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy

    def __call__(self, addr_info: tuple[Any, ...]) -> socket.socket:
        family, kind, proto, _, sockaddr = addr_info
        address = ipaddress.ip_address(sockaddr[0])
        host = _dialled_host.get()
        host_allowed = host is not None and self.policy.allows_host(host)
        if not self.policy.allows_address(address, host_allowed=host_allowed):
            raise UnsafeAddress(host or str(address), address)
        return socket.socket(family=family, type=kind, proto=proto)


@contextmanager
def dialling(host: str) -> Iterator[None]:
    """Name the host whose connection the socket factory is about to check."""
    token = _dialled_host.set(host)
    try:
        yield
    finally:
        _dialled_host.reset(token)
