"""API keys and scopes.

A secret key (``sk_…``) is shown once; the database keeps its SHA-256 digest, which is
enough for keys with 256 random bits. A verified key is cached in the process for
``auth_cache_seconds``, so a revoked key stops working within that time.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import structlog
from fastapi import Request
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.clock import utcnow
from app.core.errors import FieldError, Forbidden, InvalidInput, Unauthenticated
from app.models import ApiKey

log = structlog.get_logger(__name__)

SCOPES: dict[str, str] = {
    "leads:read": "Read leads.",
    "leads:write": "Create, update and convert leads.",
    "nurture:read": "Read sequences and enrolments.",
    "nurture:write": "Create sequences and enrol leads.",
    "sales:read": "Read customers, contacts, pipelines and opportunities.",
    "sales:write": "Change customers, contacts and opportunities.",
    "billing:read": "Read invoices and payments.",
    "billing:write": "Create, finalize and void invoices; record payments.",
    "events:read": "Read the event log.",
    "users:write": "Create and change users, teams and assignment rules.",
    "activities:read": "Read activities and record timelines.",
    "activities:write": "Log activities and create and complete tasks.",
    "webhooks:manage": "Create, change and delete webhook endpoints.",
    "workspace:write": "Change the workspace's name, time zone and default currency.",
}
ALL_SCOPES = tuple(SCOPES)
MAX_ON_BEHALF_OF = 200


@dataclass(frozen=True)
class Principal:
    """The caller of a request: its key, workspace, scopes and the rep it acts for."""

    api_key_id: uuid.UUID
    workspace_id: uuid.UUID
    scopes: frozenset[str]
    kind: str
    on_behalf_of: str | None = None

    @property
    def actor(self) -> str:
        return self.on_behalf_of or ids.encode("api_key", self.api_key_id)


@dataclass(frozen=True)
class NewApiKey:
    """A freshly created key: the row and the plain secret, which is never stored."""

    record: ApiKey
    secret: str


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def validate_scopes(scopes: Iterable[str]) -> list[str]:
    chosen = sorted(set(scopes))
    unknown = [scope for scope in chosen if scope not in SCOPES]
    if unknown:
        raise InvalidInput(
            f"Unknown scope {unknown[0]!r}. Choose from: {', '.join(ALL_SCOPES)}.",
            errors=[
                FieldError("scopes", f"{scope!r} is not a scope", "unknown_scope")
                for scope in unknown
            ],
        )
    return chosen


async def create_api_key(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    name: str,
    scopes: Iterable[str],
    kind: str = "secret",
) -> NewApiKey:
    """Create a key; the caller must show ``secret`` once, as it cannot be recovered."""
    prefix = "sk" if kind == "secret" else "pk"
    secret = f"{prefix}_{secrets.token_urlsafe(32)}"
    record = ApiKey(
        workspace_id=workspace_id,
        name=name,
        kind=kind,
        prefix=secret[:11],
        key_hash=hash_key(secret),
        scopes=validate_scopes(scopes),
    )
    session.add(record)
    await session.flush()
    log.info(
        "api_key.created", api_key_id=str(record.id), workspace_id=str(workspace_id)
    )
    return NewApiKey(record=record, secret=secret)


async def revoke_api_key(session: AsyncSession, api_key_id: uuid.UUID) -> bool:
    result = await session.execute(
        update(ApiKey)
        .where(ApiKey.id == api_key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .returning(ApiKey.id)
    )
    revoked = result.scalar_one_or_none() is not None
    if revoked:
        log.info("api_key.revoked", api_key_id=str(api_key_id))
    return revoked


class KeyCache:
    """Principals by key digest, trusted for a few seconds to spare a query per call."""

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, digest: str) -> Principal | None:
        entry = self._entries.get(digest)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, digest: str, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[digest] = (time.monotonic() + self.ttl, principal)


def _bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthenticated(
            "The Authorization header is missing. Send 'Authorization: Bearer <key>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "The Authorization header must be 'Bearer <key>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token.strip()


async def authenticate(request: Request, session: AsyncSession) -> Principal:
    """Return the principal of the request's bearer key, or raise ``Unauthenticated``."""
    # request.state keeps its values in scope["state"]; reading the dict spares the
    # AttributeError that State raises for a missing name, which cost more than the
    # rest of a cached authentication.
    cached = request.scope.get("state", {}).get("principal")
    if isinstance(cached, Principal):
        return cached
    token = _bearer_token(request)
    digest = hash_key(token)
    cache: KeyCache = request.app.state.key_cache
    principal = cache.get(digest)
    if principal is None:
        row = (
            await session.execute(
                select(
                    ApiKey.id, ApiKey.workspace_id, ApiKey.scopes, ApiKey.kind
                ).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
            )
        ).one_or_none()
        if row is None:
            log.info("auth.rejected", key_prefix=token[:11])
            raise Unauthenticated(
                "The API key is invalid or revoked. Create a new key with "
                "'salescycle api-keys create --name NAME --scope SCOPE', repeating "
                "--scope for each scope it needs.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        principal = Principal(
            api_key_id=row.id,
            workspace_id=row.workspace_id,
            scopes=frozenset(row.scopes),
            kind=row.kind,
        )
        cache.put(digest, principal)
    on_behalf_of = request.headers.get("on-behalf-of")
    if on_behalf_of is not None:
        on_behalf_of = on_behalf_of.strip()
        if not on_behalf_of or len(on_behalf_of) > MAX_ON_BEHALF_OF:
            raise InvalidInput(
                "The On-Behalf-Of header must be a user id of 1 to 200 characters.",
                errors=[
                    FieldError("header.On-Behalf-Of", "invalid user id", "invalid")
                ],
            )
        principal = Principal(
            api_key_id=principal.api_key_id,
            workspace_id=principal.workspace_id,
            scopes=principal.scopes,
            kind=principal.kind,
            on_behalf_of=on_behalf_of,
        )
    request.state.principal = principal
    return principal


def require(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """Build a dependency that authenticates the request and checks one scope."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    async def dependency(request: Request) -> Principal:
        principal = await authenticate(request, request.state.session)
        if principal.kind != "secret" or scope not in principal.scopes:
            raise Forbidden(
                f"This API key lacks the scope {scope!r}. Use a secret key that has it.",
                missing_scope=scope,
            )
        return principal

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency
