"""``Idempotency-Key`` on POST requests.

The key is scoped to the API key. A transaction-scoped advisory lock on the pair gives a
second request with the same key a 409 while the first is still running. Once the first
has committed, its stored response is replayed with ``Idempotent-Replayed: true``, to
any number of concurrent requests, because a replay does not take the lock.
A JSON body is compared in a canonical form. The same document with its keys in another
order or with other whitespace is the same request. Any other body is compared byte for
byte.
Only 2xx responses are stored: they commit with the change they describe, while a failed
request changed nothing and may simply run again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import structlog
from fastapi import Request
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.errors import Conflict, FieldError, InvalidInput
from app.models import IdempotencyKey

log = structlog.get_logger(__name__)

HEADER = "idempotency-key"
MAX_KEY_LENGTH = 255
REPLAYED_HEADERS = ("content-type", "location", "etag")


class _JsonNumber(str):
    """A JSON number's literal text, kept so that 1, 1.0 and 1e0 stay distinct."""


def _is_json(request: Request) -> bool:
    # A body without a Content-Type is parsed as JSON, as the routes do.
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media_type in ("", "application/json") or media_type.endswith("+json")


def _encode_canonical(value: Any) -> str:
    if isinstance(value, dict):
        members = (
            f"{json.dumps(name)}:{_encode_canonical(value[name])}"
            for name in sorted(value)
        )
        return "{" + ",".join(members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_encode_canonical(item) for item in value) + "]"
    if isinstance(value, _JsonNumber):
        return str(value)
    return json.dumps(value)


def canonical_body(request: Request, body: bytes) -> bytes:
    """Return a JSON body re-encoded with sorted keys and no whitespace.

    Strings are re-escaped the same way, numbers keep their literal text, and a
    duplicated key keeps its last value as the request parser does. A body that is not
    JSON by its ``Content-Type``, or does not parse, is returned unchanged.
    """
    if not body or not _is_json(request):
        return body
    try:
        document = json.loads(
            body,
            parse_int=_JsonNumber,
            parse_float=_JsonNumber,
            parse_constant=_JsonNumber,
        )
        return _encode_canonical(document).encode()
    except (ValueError, RecursionError):
        return body


def _fingerprint(request: Request, body: bytes) -> str:
    digest = hashlib.sha256()
    digest.update(request.method.encode())
    digest.update(b" ")
    digest.update(request.url.path.encode())
    digest.update(b"?")
    digest.update(request.url.query.encode())
    digest.update(b"\n")
    digest.update(body)
    return digest.hexdigest()


def _lock_key(principal: Principal, key: str) -> int:
    digest = hashlib.sha256(f"{principal.api_key_id}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def validate_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInput(
            "The Idempotency-Key header must be 1 to 255 printable characters; a UUID "
            "works well.",
            errors=[
                FieldError(
                    "header.Idempotency-Key", "invalid idempotency key", "invalid"
                )
            ],
        )
    return key


async def run_idempotent(
    request: Request,
    session: AsyncSession,
    principal: Principal,
    key: str,
    call: Callable[[Request], Awaitable[Response]],
    ttl_seconds: int,
) -> Response:
    """Replay the stored response for ``key``, or run ``call`` and store its response."""
    key = validate_key(key)
    body = await request.body()
    fingerprint = _fingerprint(request, canonical_body(request, body))
    # A key stored before JSON bodies were compared canonically contains the
    # fingerprint of the raw bytes, and the same bytes are the same request.
    accepted = {fingerprint, _fingerprint(request, body)}

    # A stored response is replayed without the lock, so concurrent replays of a
    # finished request do not block each other. Only a key without a live stored
    # response takes the lock, which the running request holds until it commits.
    now = utcnow()
    stored = await _find_stored(session, principal, key)
    if stored is None or stored.expires_at <= now:
        locked = await session.scalar(
            select(func.pg_try_advisory_xact_lock(_lock_key(principal, key)))
        )
        if not locked:
            raise _KeyInUse(
                "A request with this Idempotency-Key is still running. Retry after "
                "it ends."
            )
        # The request that held the lock may have committed since the first read.
        stored = await _find_stored(session, principal, key)
    if stored is not None and stored.expires_at <= now:
        await session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.id == stored.id)
        )
        stored = None
    if stored is not None:
        if stored.fingerprint not in accepted:
            raise _KeyReused()
        log.info("idempotency.replayed", idempotency_key=key)
        headers = dict(stored.response_headers)
        headers["idempotent-replayed"] = "true"
        return Response(
            content=stored.response_body,
            status_code=stored.status_code,
            headers=headers,
        )

    response = await call(request)
    if 200 <= response.status_code < 300:
        session.add(
            IdempotencyKey(
                api_key_id=principal.api_key_id,
                key=key,
                method=request.method,
                path=request.url.path,
                fingerprint=fingerprint,
                status_code=response.status_code,
                response_body=bytes(response.body),
                response_headers={
                    name: value
                    for name, value in response.headers.items()
                    if name in REPLAYED_HEADERS
                },
                created_at=now,
                expires_at=now + timedelta(seconds=ttl_seconds),
            )
        )
        await session.flush()
    return response


async def _find_stored(
    session: AsyncSession, principal: Principal, key: str
) -> IdempotencyKey | None:
    return await session.scalar(
        select(IdempotencyKey)
        .where(
            IdempotencyKey.api_key_id == principal.api_key_id,
            IdempotencyKey.key == key,
        )
        .execution_options(populate_existing=True)
    )


class _KeyInUse(Conflict):
    code = "idempotency_key_in_use"
    title = "Idempotency key in use"


class _KeyReused(InvalidInput):
    code = "idempotency_key_reused"
    title = "Idempotency key reused"

    def __init__(self) -> None:
        super().__init__(
            "This Idempotency-Key was used with a different request. Use a new key for "
            "a new request.",
            errors=[
                FieldError(
                    "header.Idempotency-Key",
                    "the key was first used with another method, path or body",
                    "idempotency_key_reused",
                )
            ],
        )


async def prune_expired(session: AsyncSession) -> int:
    result = await session.execute(
        delete(IdempotencyKey)
        .where(IdempotencyKey.expires_at <= utcnow())
        .returning(IdempotencyKey.id)
    )
    return len(result.all())
