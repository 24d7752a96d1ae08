"""``/v1/opportunities/{id}/objections`` and ``/v1/lost-reasons``."""

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
from app.opportunities.lost_reasons import lost_reason_service
from app.opportunities.objections import objection_service
from app.opportunities.schemas import (
    LostReason,
    LostReasonCreate,
    LostReasonUpdate,
    Objection,
    ObjectionCreate,
    ObjectionStatus,
    ObjectionUpdate,
)

router = APIRouter(route_class=UnitOfWorkRoute)


@router.post(
    "/opportunities/{opportunity_id}/objections",
    tags=["objections"],
    operation_id="objections_create",
    summary="Record an objection",
    status_code=status.HTTP_201_CREATED,
    response_model=Objection,
    responses=problem_responses(403, 404, 413, 415),
)
async def create_objection(
    request: Request,
    response: Response,
    opportunity_id: str,
    payload: ObjectionCreate,
    principal: Principal = Depends(require("sales:write")),
) -> Objection:
    """Record an objection the customer raised on the opportunity."""
    opportunity = parse_path_id("opportunity", opportunity_id, "opportunity")
    objection = await objection_service.create(
        request.state.session, principal, opportunity, payload
    )
    set_etag(response, objection.version)
    response.headers["Location"] = (
        f"/v1/opportunities/{opportunity_id}/objections/"
        f"{ids.encode('objection', objection.id)}"
    )
    return Objection.model_validate(objection)


@router.get(
    "/opportunities/{opportunity_id}/objections",
    tags=["objections"],
    operation_id="objections_list",
    summary="List an opportunity's objections",
    response_model=Page[Objection],
    responses=problem_responses(403, 404),
)
async def list_objections(
    request: Request,
    opportunity_id: str,
    principal: Principal = Depends(require("sales:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    status: Annotated[
        ObjectionStatus | None, Query(description="Only this status.")
    ] = None,
) -> Page[Objection]:
    """List the opportunity's objections, newest first."""
    rows, next_cursor, has_more = await objection_service.list(
        request.state.session,
        principal.workspace_id,
        parse_path_id("opportunity", opportunity_id, "opportunity"),
        limit=limit,
        cursor=cursor,
        status=status,
    )
    return Page[Objection](
        data=[Objection.model_validate(row) for row in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@router.get(
    "/opportunities/{opportunity_id}/objections/{objection_id}",
    tags=["objections"],
    operation_id="objections_get",
    summary="Get an objection",
    response_model=Objection,
    responses=problem_responses(403, 404),
)
async def get_objection(
    request: Request,
    response: Response,
    opportunity_id: str,
    objection_id: str,
    principal: Principal = Depends(require("sales:read")),
) -> Objection:
    """Fetch one objection of the opportunity."""
    objection = await objection_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("opportunity", opportunity_id, "opportunity"),
        parse_path_id("objection", objection_id, "objection"),
    )
    set_etag(response, objection.version)
    return Objection.model_validate(objection)


@router.patch(
    "/opportunities/{opportunity_id}/objections/{objection_id}",
    tags=["objections"],
    operation_id="objections_update",
    summary="Update an objection",
    response_model=Objection,
    responses=problem_responses(403, 404, 412, 413, 415),
)
async def update_objection(
    request: Request,
    response: Response,
    opportunity_id: str,
    objection_id: str,
    payload: ObjectionUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> Objection:
    """Change an objection, for example resolve it with resolution notes."""
    objection = await objection_service.update(
        request.state.session,
        principal,
        parse_path_id("opportunity", opportunity_id, "opportunity"),
        parse_path_id("objection", objection_id, "objection"),
        payload,
        if_match=if_match,
    )
    set_etag(response, objection.version)
    return Objection.model_validate(objection)


@router.delete(
    "/opportunities/{opportunity_id}/objections/{objection_id}",
    tags=["objections"],
    operation_id="objections_delete",
    summary="Delete an objection",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(403, 404, 412),
)
async def delete_objection(
    request: Request,
    opportunity_id: str,
    objection_id: str,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> Response:
    """Delete an objection recorded by mistake."""
    await objection_service.delete(
        request.state.session,
        principal,
        parse_path_id("opportunity", opportunity_id, "opportunity"),
        parse_path_id("objection", objection_id, "objection"),
        if_match=if_match,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/lost-reasons",
    tags=["lost reasons"],
    operation_id="lost_reasons_create",
    summary="Create a lost reason",
    status_code=status.HTTP_201_CREATED,
    response_model=LostReason,
    responses=problem_responses(403, 409, 413, 415),
)
async def create_lost_reason(
    request: Request,
    response: Response,
    payload: LostReasonCreate,
    principal: Principal = Depends(require("sales:write")),
) -> LostReason:
    """Add a reason to the workspace's catalogue of lost reasons."""
    reason = await lost_reason_service.create(request.state.session, principal, payload)
    set_etag(response, reason.version)
    response.headers["Location"] = (
        f"/v1/lost-reasons/{ids.encode('lost_reason', reason.id)}"
    )
    return LostReason.model_validate(reason)


@router.get(
    "/lost-reasons",
    tags=["lost reasons"],
    operation_id="lost_reasons_list",
    summary="List lost reasons",
    response_model=Page[LostReason],
    responses=problem_responses(403),
)
async def list_lost_reasons(
    request: Request,
    principal: Principal = Depends(require("sales:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    active: Annotated[
        bool | None, Query(description="Only active (true) or inactive (false) ones.")
    ] = None,
) -> Page[LostReason]:
    """List the workspace's lost reasons, newest first."""
    rows, next_cursor, has_more = await lost_reason_service.list(
        request.state.session,
        principal.workspace_id,
        limit=limit,
        cursor=cursor,
        active=active,
    )
    return Page[LostReason](
        data=[LostReason.model_validate(row) for row in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@router.get(
    "/lost-reasons/{lost_reason_id}",
    tags=["lost reasons"],
    operation_id="lost_reasons_get",
    summary="Get a lost reason",
    response_model=LostReason,
    responses=problem_responses(403, 404),
)
async def get_lost_reason(
    request: Request,
    response: Response,
    lost_reason_id: str,
    principal: Principal = Depends(require("sales:read")),
) -> LostReason:
    """Fetch one lost reason."""
    reason = await lost_reason_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("lost_reason", lost_reason_id, "lost reason"),
    )
    set_etag(response, reason.version)
    return LostReason.model_validate(reason)


@router.patch(
    "/lost-reasons/{lost_reason_id}",
    tags=["lost reasons"],
    operation_id="lost_reasons_update",
    summary="Update a lost reason",
    response_model=LostReason,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def update_lost_reason(
    request: Request,
    response: Response,
    lost_reason_id: str,
    payload: LostReasonUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> LostReason:
    """Rename, describe, or deactivate a lost reason."""
    reason = await lost_reason_service.update(
        request.state.session,
        principal,
        parse_path_id("lost_reason", lost_reason_id, "lost reason"),
        payload,
        if_match=if_match,
    )
    set_etag(response, reason.version)
    return LostReason.model_validate(reason)


@router.delete(
    "/lost-reasons/{lost_reason_id}",
    tags=["lost reasons"],
    operation_id="lost_reasons_delete",
    summary="Delete a lost reason",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(403, 404, 409, 412),
)
async def delete_lost_reason(
    request: Request,
    lost_reason_id: str,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> Response:
    """Delete a lost reason that no opportunity names; 409 names the count."""
    await lost_reason_service.delete(
        request.state.session,
        principal,
        parse_path_id("lost_reason", lost_reason_id, "lost reason"),
        if_match=if_match,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
