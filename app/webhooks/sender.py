"""The HTTP client that sends webhook requests: one aiohttp session per worker.

aiohttp, not httpx: on the delivery workload (many small signed POSTs to a few
receivers) aiohttp sends many times more requests per second. Every connection goes
through ``SafeResolver`` and ``GuardedSocketFactory``. An http:// URL is sent only when
the policy allows plain HTTP. Redirects are never followed, proxies from the
environment are ignored and no cookies are kept.
"""

from __future__ import annotations

import functools
import os
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime

import aiohttp
import structlog
import yarl
from aiohttp.abc import AbstractResolver

from app.core.clock import utcnow
from app.settings import Settings
from app.webhooks.errors import InvalidWebhookUrl, WebhookUrlNotAllowed
from app.webhooks.signing import webhook_headers
from app.webhooks.url_safety import (
    AddressPolicy,
    GuardedSocketFactory,
    SafeResolver,
    UnsafeAddress,
    WebhookUrl,
    dialling,
    parse_webhook_url,
)

log = structlog.get_logger(__name__)

USER_AGENT = "salescycle-webhooks/1"
MAX_EXCERPT_BYTES = 1024
# Characters of an attempt's error that are stored, shown by the API and logged.
# aiohttp quotes a malformed status or header line whole, up to its 8 KB line limit,
# so a receiver could otherwise fill every failed attempt's error.
MAX_ERROR_CHARS = 500
# Connections per receiver host, so a burst of events does not flood one receiver.
CONNECTIONS_PER_HOST = 20


@dataclass(frozen=True)
class OutgoingRequest:
    """One signed webhook request: where it goes and what it carries."""

    url: str
    message_id: str
    body: bytes
    signing_secrets: tuple[str, ...]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AttemptResult:
    """The outcome of one request: a status, or the error that prevented one."""

    attempted_at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    response_excerpt: str | None = None
    retry_after: str | None = None
    location: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@functools.lru_cache(maxsize=4096)
def _parse_url(text: str) -> tuple[WebhookUrl, yarl.URL]:
    """Parse a webhook URL once per distinct text; raises ``InvalidWebhookUrl``.

    Returns the checked URL, and the ``yarl.URL`` that aiohttp would otherwise parse
    from the text on every request. The parse reads only the text, so the cache
    cannot go stale. The address checks happen later, on every connection, in
    ``SafeResolver`` and ``GuardedSocketFactory``.
    """
    return parse_webhook_url(text), yarl.URL(text)


def _find_unsafe(error: BaseException) -> UnsafeAddress | None:
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, UnsafeAddress):
            return current
        pending.extend(
            [
                current.__cause__,
                current.__context__,
                getattr(current, "os_error", None),
            ]
        )
    return None


def _reason(error: aiohttp.ClientConnectorError) -> str:
    """Return the operating system's reason for a failed connection, such as
    "Connection refused", rather than asyncio's text, which repeats the address."""
    os_error = error.os_error
    if isinstance(os_error, ssl.SSLError):
        return _tls_reason(os_error)
    if isinstance(os_error.errno, int) and os_error.errno > 0:
        return os.strerror(os_error.errno)
    return os_error.strerror or str(os_error) or type(os_error).__name__


def _tls_reason(error: BaseException) -> str:
    """Return OpenSSL's reason for a failed handshake in words, such as "self-signed
    certificate" or "wrong version number"; its errno is OpenSSL's code, not the
    operating system's."""
    if isinstance(error, ssl.SSLCertVerificationError) and error.verify_message:
        return error.verify_message
    if isinstance(error, ssl.SSLError) and error.reason:
        reason = error.reason.lower().replace("_", " ")
        if error.reason == "WRONG_VERSION_NUMBER":
            return f"{reason}, as when the port serves plain HTTP"
        return reason
    return str(error)


def _describe_error(error: BaseException, timeout: float) -> str:
    description = _error_text(error, timeout)
    if len(description) > MAX_ERROR_CHARS:
        return description[: MAX_ERROR_CHARS - 1] + "…"
    return description


def _error_text(error: BaseException, timeout: float) -> str:
    unsafe = _find_unsafe(error)
    if unsafe is not None:
        return f"Blocked before connecting: {unsafe}."
    if isinstance(error, TimeoutError):
        return f"Timed out after {timeout:g} s."
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return (
            f"The TLS certificate of {error.host}:{error.port} was not accepted: "
            f"{_tls_reason(error.certificate_error)}."
        )
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return f"Could not resolve {error.host}: {_reason(error)}."
    if isinstance(error, aiohttp.ClientSSLError):
        return (
            f"The TLS handshake with {error.host}:{error.port} failed: "
            f"{_reason(error)}."
        )
    if isinstance(error, aiohttp.ClientConnectorError):
        # aiohttp's own text names "ssl:default" even for plain HTTP, which misleads.
        return f"Could not connect to {error.host}:{error.port}: {_reason(error)}."
    if isinstance(error, aiohttp.ClientResponseError):
        # Its str() ends with the request URL, whose path or query may carry the
        # receiver's token. The error is stored, shown by the API and logged.
        return (
            f"Request failed: {type(error).__name__}: {error.status}, {error.message}."
        )
    return f"Request failed: {type(error).__name__}: {error}."


def _header_text(value: str | None) -> str | None:
    """Convert a response header value to text that PostgreSQL can store.

    aiohttp decodes header bytes as UTF-8 with ``surrogateescape``, so bytes that are
    not UTF-8 arrive as lone surrogates, which asyncpg cannot encode. They become
    U+FFFD here, as in the response excerpt.
    """
    if value is None:
        return None
    raw = value.encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "replace")


async def _read_excerpt(response: aiohttp.ClientResponse) -> str | None:
    """Read at most ``MAX_EXCERPT_BYTES`` of the body; the rest is never read."""
    raw = bytearray()
    while len(raw) < MAX_EXCERPT_BYTES:
        chunk = await response.content.read(MAX_EXCERPT_BYTES - len(raw))
        if not chunk:
            break
        raw.extend(chunk)
    if not raw:
        return None
    # PostgreSQL text cannot hold NUL characters.
    return raw.decode("utf-8", "replace").replace("\x00", "")


class WebhookSender:
    """Sends signed webhook requests with one shared aiohttp session."""

    def __init__(
        self,
        settings: Settings,
        *,
        resolver: AbstractResolver | None = None,
        policy: AddressPolicy | None = None,
    ) -> None:
        self.policy = policy or AddressPolicy.from_settings(settings)
        self.timeout = settings.webhook_timeout_seconds
        self._resolver = SafeResolver(self.policy, resolver)
        connector = aiohttp.TCPConnector(
            resolver=self._resolver,
            socket_factory=GuardedSocketFactory(self.policy),
            limit_per_host=CONNECTIONS_PER_HOST,
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"User-Agent": USER_AGENT},
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            auto_decompress=False,
        )

    async def send(
        self,
        request: OutgoingRequest,
        *,
        extra_headers: dict[str, str] | None = None,
    ) -> AttemptResult:
        """POST one request; a network error or timeout is returned as a result.

        The request's own headers and ``extra_headers`` go first, so they cannot
        replace the signature headers.
        """
        attempted_at = utcnow()
        started = time.perf_counter()
        timestamp = int(attempted_at.timestamp())
        headers = {
            **request.headers,
            **(extra_headers or {}),
            "Content-Type": "application/json",
            **webhook_headers(
                request.signing_secrets, request.message_id, timestamp, request.body
            ),
        }
        try:
            url, target = _parse_url(request.url)
            self.policy.check_scheme(url)
        except (InvalidWebhookUrl, WebhookUrlNotAllowed) as error:
            return AttemptResult(
                attempted_at=attempted_at, duration_ms=0, error=error.detail
            )
        try:
            with dialling(url.host):
                async with self.session.post(
                    target,
                    data=request.body,
                    headers=headers,
                    allow_redirects=False,
                ) as response:
                    excerpt = await _read_excerpt(response)
                    return AttemptResult(
                        attempted_at=attempted_at,
                        duration_ms=self._elapsed_ms(started),
                        status_code=response.status,
                        response_excerpt=excerpt,
                        retry_after=response.headers.get("Retry-After"),
                        location=_header_text(response.headers.get("Location")),
                    )
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as error:
            return AttemptResult(
                attempted_at=attempted_at,
                duration_ms=self._elapsed_ms(started),
                error=_describe_error(error, self.timeout),
            )

    @staticmethod
    def _elapsed_ms(started: float) -> int:
        return round((time.perf_counter() - started) * 1000)

    async def close(self) -> None:
        await self.session.close()
        await self._resolver.close()
