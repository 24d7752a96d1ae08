from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from app.core import ids
from app.core.auth import Principal, require
from app.core.concurrency import IfMatch, set_etag
from app.core.openapi import problem_responses
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.core.paths import parse_path_id
from app.core.routing import UnitOfWorkRoute
from app.users.schemas import (
    Team,
    TeamCreate,
    TeamMemberCreate,
    TeamMemberUpdate,
    TeamUpdate,
    User,
    UserCreate,
    UserUpdate,
)
from app.users.service import team_service, user_service

router = APIRouter(tags=["users"], route_class=UnitOfWorkRoute)


@router.post(
    "/users",
    operation_id="users_create",
    summary="Create a user",
    status_code=status.HTTP_201_CREATED,
    response_model=User,
    responses=problem_responses(403, 409, 413, 415),
)
async def create_user(
    request: Request,
    response: Response,
    payload: UserCreate,
    principal: Principal = Depends(require("users:write")),
) -> User:
    """Create a sales rep, manager or admin; the email is unique in the workspace."""
    user = await user_service.create(request.state.session, principal, payload)
    set_etag(response, user.version)
    response.headers["Location"] = f"/v1/users/{ids.encode('user', user.id)}"
    return User.model_validate(user)


@router.get(
    "/users",
    operation_id="users_list",
    summary="List users",
    response_model=Page[User],
    responses=problem_responses(403),
)
async def list_users(
    request: Request,
    principal: Principal = Depends(require("leads:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    active: Annotated[
        bool | None, Query(description="Only active, or only inactive, users.")
    ] = None,
) -> Page[User]:
    """List users, newest first."""
    rows, next_cursor, has_more = await user_service.list(
        request.state.session,
        principal.workspace_id,
        limit=limit,
        cursor=cursor,
        active=active,
    )
    return Page[User](
        data=[User.model_validate(row) for row in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@router.get(
    "/users/{user_id}",
    operation_id="users_get",
    summary="Get a user",
    response_model=User,
    responses=problem_responses(403, 404),
)
async def get_user(
    request: Request,
    response: Response,
    user_id: str,
    principal: Principal = Depends(require("leads:read")),
) -> User:
    """Fetch one user by id."""
    user = await user_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("user", user_id, "user"),
    )
    set_etag(response, user.version)
    return User.model_validate(user)


@router.patch(
    "/users/{user_id}",
    operation_id="users_update",
    summary="Update a user",
    response_model=User,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def update_user(
    request: Request,
    response: Response,
    user_id: str,
    payload: UserUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("users:write")),
) -> User:
    """Change a user's fields; send active false to deactivate them."""
    user = await user_service.update(
        request.state.session,
        principal,
        parse_path_id("user", user_id, "user"),
        payload,
        if_match=if_match,
    )
    set_etag(response, user.version)
    return User.model_validate(user)


@router.post(
    "/teams",
    operation_id="teams_create",
    summary="Create a team",
    status_code=status.HTTP_201_CREATED,
    response_model=Team,
    responses=problem_responses(403, 413, 415),
)
async def create_team(
    request: Request,
    response: Response,
    payload: TeamCreate,
    principal: Principal = Depends(require("users:write")),
) -> Team:
    """Create a team, optionally with its first members."""
    team = await team_service.create(request.state.session, principal, payload)
    set_etag(response, team.version)
    response.headers["Location"] = f"/v1/teams/{ids.encode('team', team.id)}"
    return team


@router.get(
    "/teams",
    operation_id="teams_list",
    summary="List teams",
    response_model=Page[Team],
    responses=problem_responses(403),
)
async def list_teams(
    request: Request,
    principal: Principal = Depends(require("leads:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[Team]:
    """List teams with their members, newest first."""
    session = request.state.session
    rows, next_cursor, has_more = await team_service.list(
        session, principal.workspace_id, limit=limit, cursor=cursor
    )
    return Page[Team](
        data=await team_service.views(session, rows),
        next_cursor=next_cursor,
        has_more=has_more,
    )


@router.get(
    "/teams/{team_id}",
    operation_id="teams_get",
    summary="Get a team",
    response_model=Team,
    responses=problem_responses(403, 404),
)
async def get_team(
    request: Request,
    response: Response,
    team_id: str,
    principal: Principal = Depends(require("leads:read")),
) -> Team:
    """Fetch one team and its members."""
    session = request.state.session
    team = await team_service.get(
        session, principal.workspace_id, parse_path_id("team", team_id, "team")
    )
    set_etag(response, team.version)
    return await team_service.view(session, team)


@router.patch(
    "/teams/{team_id}",
    operation_id="teams_update",
    summary="Update a team",
    response_model=Team,
    responses=problem_responses(403, 404, 412, 413, 415),
)
async def update_team(
    request: Request,
    response: Response,
    team_id: str,
    payload: TeamUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("users:write")),
) -> Team:
    """Rename a team; send If-Match to guard against concurrent edits."""
    team = await team_service.update(
        request.state.session,
        principal,
        parse_path_id("team", team_id, "team"),
        payload,
        if_match=if_match,
    )
    set_etag(response, team.version)
    return team


@router.post(
    "/teams/{team_id}/members",
    operation_id="teams_add_member",
    summary="Add a member to a team",
    status_code=status.HTTP_201_CREATED,
    response_model=Team,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def add_member(
    request: Request,
    response: Response,
    team_id: str,
    payload: TeamMemberCreate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("users:write")),
) -> Team:
    """Add an active user to a team with a capacity and a weight."""
    team = await team_service.add_member(
        request.state.session,
        principal,
        parse_path_id("team", team_id, "team"),
        payload,
        if_match=if_match,
    )
    set_etag(response, team.version)
    return team


@router.patch(
    "/teams/{team_id}/members/{user_id}",
    operation_id="teams_update_member",
    summary="Change a member's capacity or weight",
    response_model=Team,
    responses=problem_responses(403, 404, 412, 413, 415),
)
async def update_member(
    request: Request,
    response: Response,
    team_id: str,
    user_id: str,
    payload: TeamMemberUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("users:write")),
) -> Team:
    """Change a member's capacity (null for no limit) or weight."""
    team = await team_service.update_member(
        request.state.session,
        principal,
        parse_path_id("team", team_id, "team"),
        parse_path_id("user", user_id, "team member"),
        payload,
        if_match=if_match,
    )
    set_etag(response, team.version)
    return team


@router.delete(
    "/teams/{team_id}/members/{user_id}",
    operation_id="teams_remove_member",
    summary="Remove a member from a team",
    response_model=Team,
    responses=problem_responses(403, 404, 412),
)
async def remove_member(
    request: Request,
    response: Response,
    team_id: str,
    user_id: str,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("users:write")),
) -> Team:
    """Remove a user from a team; the leads they own keep their owner."""
    team = await team_service.remove_member(
        request.state.session,
        principal,
        parse_path_id("team", team_id, "team"),
        parse_path_id("user", user_id, "team member"),
        if_match=if_match,
    )
    set_etag(response, team.version)
    return team
