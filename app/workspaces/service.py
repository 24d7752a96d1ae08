"""Read and change the caller's workspace, with an event for every change."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.concurrency import check_if_match
from app.core.errors import FieldError, InvalidInput, NotFound
from app.core.events import emit
from app.models import Workspace
from app.workspaces.schemas import Workspace as WorkspaceSchema
from app.workspaces.schemas import WorkspaceUpdate

log = structlog.get_logger(__name__)


def workspace_data(workspace: Workspace) -> dict[str, Any]:
    """Serialize a workspace as the API shows it, for events."""
    return WorkspaceSchema.model_validate(workspace).model_dump(mode="json")


async def get_workspace(
    session: AsyncSession, workspace_id: uuid.UUID, *, for_update: bool = False
) -> Workspace:
    workspace = await session.get(
        Workspace, workspace_id, with_for_update=for_update, populate_existing=True
    )
    if workspace is None:
        # Deleting a workspace deletes its keys, but a process may still have the key
        # in its authentication cache for auth_cache_seconds.
        log.info("workspace.missing", workspace_id=str(workspace_id))
        raise NotFound(
            f"The workspace {ids.encode('workspace', workspace_id)} of this API key "
            "no longer exists. Use a key of another workspace."
        )
    return workspace


async def update_workspace(
    session: AsyncSession,
    principal: Principal,
    payload: WorkspaceUpdate,
    *,
    if_match: str | None,
) -> Workspace:
    workspace = await get_workspace(session, principal.workspace_id, for_update=True)
    check_if_match(if_match, workspace.version)

    changes = payload.model_dump(exclude_unset=True)
    nulls = [name for name, value in changes.items() if value is None]
    if nulls:
        raise InvalidInput(
            f"{', '.join(nulls)} cannot be null. Omit a field to keep its value.",
            errors=[
                FieldError(name, "cannot be null", "null_not_allowed") for name in nulls
            ],
        )
    for name, value in changes.items():
        setattr(workspace, name, value)
    if not session.is_modified(workspace):
        return workspace
    await session.flush()
    await session.refresh(workspace)

    await emit(
        session,
        workspace_id=workspace.id,
        type="workspace.updated",
        object_type="workspace",
        object_id=workspace.id,
        data=workspace_data(workspace),
        actor=principal.actor,
    )
    log.info(
        "workspace.updated", workspace_id=str(workspace.id), fields=sorted(changes)
    )
    return workspace
