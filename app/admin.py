"""Administrative operations behind the CLI: workspaces and API keys.

These run outside any request, with a session the caller commits. They flush like
services do and raise ``DomainError`` subclasses, which the CLI prints as messages.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import available_timezones

import structlog
from sqlalchemy import make_url, select, text
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import ALL_SCOPES, NewApiKey, create_api_key, revoke_api_key
from app.core.errors import Conflict, InvalidInput, NotFound
from app.models import ApiKey, Workspace

log = structlog.get_logger(__name__)

DEFAULT_WORKSPACE_NAME = "Default workspace"
DEV_KEY_NAME = "dev admin"
MAX_NAME_LENGTH = 200
# Any constant works: the lock only keeps two first starts from each creating a key.
_BOOTSTRAP_LOCK = 0x5A1E5C1C


def masked_url(url: str) -> str:
    """Render a database URL for messages, with any password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(an invalid URL)"


def _check_name(label: str, name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"The {label} name must be 1 to {MAX_NAME_LENGTH} characters, "
            f"not {len(name)}."
        )
    return name


def parse_id(kind: str, value: str, label: str) -> uuid.UUID:
    try:
        return ids.decode(kind, value)
    except ids.InvalidId as error:
        raise InvalidInput(f"{value!r} is not a valid {label} id: {error}.") from error


def _check_timezone(timezone: str) -> str:
    timezone = timezone.strip()
    if timezone not in available_timezones():
        raise InvalidInput(
            f"{timezone!r} is not an IANA time zone. Give one such as 'Europe/Berlin' "
            "or 'America/New_York'."
        )
    return timezone


async def create_workspace(
    session: AsyncSession, name: str, timezone: str = "UTC"
) -> Workspace:
    workspace = Workspace(
        name=_check_name("workspace", name), timezone=_check_timezone(timezone)
    )
    session.add(workspace)
    await session.flush()
    log.info("workspace.created", workspace_id=str(workspace.id))
    return workspace


async def list_workspaces(session: AsyncSession) -> list[Workspace]:
    result = await session.scalars(
        select(Workspace).order_by(Workspace.created_at, Workspace.id)
    )
    return list(result)


async def resolve_workspace(
    session: AsyncSession, workspace_id: str | None
) -> tuple[Workspace, bool]:
    """Find the workspace a new key belongs to; return it and whether it was created.

    Without an id, the only workspace is chosen, or a default one is created when there
    is none. Several workspaces and no id is ambiguous and raises ``Conflict``.
    """
    if workspace_id is not None:
        workspace = await session.get(
            Workspace, parse_id("workspace", workspace_id, "workspace")
        )
        if workspace is None:
            raise NotFound(f"No workspace with id {workspace_id!r} exists.")
        return workspace, False

    workspaces = await list_workspaces(session)
    if not workspaces:
        return await create_workspace(session, DEFAULT_WORKSPACE_NAME), True
    if len(workspaces) > 1:
        choices = ", ".join(ids.encode("workspace", w.id) for w in workspaces)
        raise Conflict(
            f"There are {len(workspaces)} workspaces ({choices}). Choose one with "
            "--workspace."
        )
    return workspaces[0], False


async def create_key(
    session: AsyncSession,
    *,
    name: str,
    scopes: Iterable[str],
    workspace_id: str | None,
) -> tuple[NewApiKey, Workspace, bool]:
    """Create a secret key; return it, its workspace and whether that was created."""
    name = _check_name("API key", name)
    scopes = list(scopes)
    if not scopes:
        raise InvalidInput(
            "Give at least one --scope, or --all-scopes. Scopes: "
            f"{', '.join(ALL_SCOPES)}."
        )

    workspace, created = await resolve_workspace(session, workspace_id)
    key = await create_api_key(
        session, workspace_id=workspace.id, name=name, scopes=scopes
    )
    return key, workspace, created


async def list_keys(
    session: AsyncSession, workspace_id: str | None = None
) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if workspace_id is not None:
        query = query.where(
            ApiKey.workspace_id == parse_id("workspace", workspace_id, "workspace")
        )
    return list(await session.scalars(query))


async def revoke_key(session: AsyncSession, api_key_id: str) -> ApiKey:
    """Revoke a key by its ``key_…`` id; a missing or already revoked key raises."""
    key = await session.get(
        ApiKey, parse_id("api_key", api_key_id, "API key"), with_for_update=True
    )
    if key is None:
        raise NotFound(
            f"No API key with id {api_key_id!r} exists. List the keys with "
            "'salescycle api-keys list'."
        )
    if key.revoked_at is not None:
        raise Conflict(f"The API key {api_key_id} was already revoked.")

    await revoke_api_key(session, key.id)
    await session.refresh(key)
    return key


@dataclass(frozen=True)
class DevAccess:
    """The key that ``salescycle dev`` reports at start, either new or existing."""

    workspace: Workspace
    created: NewApiKey | None
    existing: ApiKey | None


async def ensure_dev_access(session: AsyncSession) -> DevAccess:
    """Create a workspace and an all-scopes secret key unless an active one exists.

    On a first start this makes the API usable at once. Later starts find the key and
    create nothing, because its secret cannot be shown again.
    """
    await session.execute(
        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _BOOTSTRAP_LOCK}
    )
    existing = await session.scalar(
        select(ApiKey)
        .where(ApiKey.kind == "secret", ApiKey.revoked_at.is_(None))
        .order_by(ApiKey.created_at, ApiKey.id)
        .limit(1)
    )
    if existing is not None:
        workspace = await session.get_one(Workspace, existing.workspace_id)
        return DevAccess(workspace=workspace, created=None, existing=existing)

    workspaces = await list_workspaces(session)
    if workspaces:
        workspace = workspaces[0]
    else:
        workspace = await create_workspace(session, DEFAULT_WORKSPACE_NAME)
    created = await create_api_key(
        session, workspace_id=workspace.id, name=DEV_KEY_NAME, scopes=ALL_SCOPES
    )
    return DevAccess(workspace=workspace, created=created, existing=None)
