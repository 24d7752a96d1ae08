from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from app.core.auth import Principal, authenticate, require
from app.core.concurrency import IfMatch, set_etag
from app.core.errors import Forbidden
from app.core.openapi import problem_responses
from app.core.routing import UnitOfWorkRoute
from app.workspaces.schemas import Workspace, WorkspaceUpdate
from app.workspaces.service import get_workspace, update_workspace

router = APIRouter(tags=["workspace"], route_class=UnitOfWorkRoute)


async def any_secret_key(request: Request) -> Principal:
    """Authenticate the request and accept a secret key of any scopes."""
    principal = await authenticate(request, request.state.session)
    if principal.kind != "secret":
        raise Forbidden(
            "A publishable key cannot read the workspace. Use a secret key (sk_…)."
        )
    return principal


@router.get(
    "/workspace",
    operation_id="workspace_get",
    summary="Get the workspace",
    response_model=Workspace,
    responses=problem_responses(403, 404),
)
async def get_current_workspace(
    request: Request,
    response: Response,
    principal: Principal = Depends(any_secret_key),
) -> Workspace:
    """Show the workspace of the API key: name, time zone and default currency."""
    workspace = await get_workspace(request.state.session, principal.workspace_id)
    set_etag(response, workspace.version)
    return Workspace.model_validate(workspace)


@router.patch(
    "/workspace",
    operation_id="workspace_update",
    summary="Update the workspace",
    response_model=Workspace,
    responses=problem_responses(403, 404, 412, 413, 415),
)
async def update_current_workspace(
    request: Request,
    response: Response,
    payload: WorkspaceUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("workspace:write")),
) -> Workspace:
    """Change the name, the fallback time zone of send windows or the currency."""
    workspace = await update_workspace(
        request.state.session, principal, payload, if_match=if_match
    )
    set_etag(response, workspace.version)
    return Workspace.model_validate(workspace)
