"""``/v1/opportunities``: opportunities, their stage moves and stage history."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from app.core import ids
from app.core.auth import Principal, require
from app.core.concurrency import IfMatch, set_etag
from app.core.money import MAX_AMOUNT
from app.core.openapi import problem_responses
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.core.paths import parse_path_id
from app.core.routing import UnitOfWorkRoute
from app.core.schemas import CustomerId, PipelineId, StageId, UserId
from app.opportunities.listing import DEFAULT_SORT, ListCursor, OpportunityFilters
from app.opportunities.schemas import (
    Opportunity,
    OpportunityCreate,
    OpportunityLose,
    OpportunityMove,
    OpportunityReopen,
    OpportunitySort,
    OpportunityStatus,
    OpportunityUpdate,
    OpportunityWin,
    StageTransition,
)
from app.opportunities.service import opportunity_service

router = APIRouter(route_class=UnitOfWorkRoute, tags=["opportunities"])

AmountBound = Annotated[int, Query(ge=0, le=MAX_AMOUNT)]


@router.post(
    "/opportunities",
    operation_id="opportunities_create",
    summary="Create an opportunity",
    status_code=status.HTTP_201_CREATED,
    response_model=Opportunity,
    responses=problem_responses(403, 409, 413, 415),
)
async def create_opportunity(
    request: Request,
    response: Response,
    payload: OpportunityCreate,
    principal: Principal = Depends(require("sales:write")),
) -> Opportunity:
    """Open an opportunity for a customer, by default in the default pipeline."""
    opportunity = await opportunity_service.create(
        request.state.session, principal, payload
    )
    set_etag(response, opportunity.version)
    response.headers["Location"] = (
        f"/v1/opportunities/{ids.encode('opportunity', opportunity.id)}"
    )
    return Opportunity.model_validate(opportunity)


@router.get(
    "/opportunities",
    operation_id="opportunities_list",
    summary="List opportunities",
    response_model=Page[Opportunity],
    responses=problem_responses(403),
)
async def list_opportunities(
    request: Request,
    principal: Principal = Depends(require("sales:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: ListCursor = None,
    sort: Annotated[
        OpportunitySort,
        Query(description="Sort key, descending with a leading minus; ties by id."),
    ] = DEFAULT_SORT,
    status: Annotated[
        OpportunityStatus | None, Query(description="Only this status.")
    ] = None,
    pipeline_id: Annotated[
        PipelineId | None, Query(description="Only this pipeline.")
    ] = None,
    stage_id: Annotated[StageId | None, Query(description="Only this stage.")] = None,
    customer_id: Annotated[
        CustomerId | None, Query(description="Only this customer.")
    ] = None,
    owner_id: Annotated[UserId | None, Query(description="Only this owner.")] = None,
    amount_min: Annotated[
        AmountBound | None, Query(description="Amount at least this, minor units.")
    ] = None,
    amount_max: Annotated[
        AmountBound | None, Query(description="Amount at most this, minor units.")
    ] = None,
    expected_close_after: Annotated[
        date | None, Query(description="Expected close date on or after this date.")
    ] = None,
    expected_close_before: Annotated[
        date | None, Query(description="Expected close date on or before this date.")
    ] = None,
    rotting: Annotated[
        bool | None, Query(description="Only rotting (true) or fresh (false) ones.")
    ] = None,
) -> Page[Opportunity]:
    """List opportunities by the filters given, newest first unless sorted otherwise."""
    rows, next_cursor, has_more = await opportunity_service.list(
        request.state.session,
        principal.workspace_id,
        OpportunityFilters(
            status=status,
            pipeline_id=pipeline_id,
            stage_id=stage_id,
            customer_id=customer_id,
            owner_id=owner_id,
            amount_min=amount_min,
            amount_max=amount_max,
            expected_close_after=expected_close_after,
            expected_close_before=expected_close_before,
            rotting=rotting,
        ),
        sort=sort,
        limit=limit,
        cursor=cursor,
    )
    return Page[Opportunity](
        data=[Opportunity.model_validate(row) for row in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@router.get(
    "/opportunities/{opportunity_id}",
    operation_id="opportunities_get",
    summary="Get an opportunity",
    response_model=Opportunity,
    responses=problem_responses(403, 404),
)
async def get_opportunity(
    request: Request,
    response: Response,
    opportunity_id: str,
    principal: Principal = Depends(require("sales:read")),
) -> Opportunity:
    """Fetch one opportunity by id."""
    opportunity = await opportunity_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("opportunity", opportunity_id, "opportunity"),
    )
    set_etag(response, opportunity.version)
    return Opportunity.model_validate(opportunity)


@router.patch(
    "/opportunities/{opportunity_id}",
    operation_id="opportunities_update",
    summary="Update an opportunity",
    response_model=Opportunity,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def update_opportunity(
    request: Request,
    response: Response,
    opportunity_id: str,
    payload: OpportunityUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> Opportunity:
    """Change fields of an opportunity other than its stage, which move changes."""
    opportunity = await opportunity_service.update(
        request.state.session,
        principal,
        parse_path_id("opportunity", opportunity_id, "opportunity"),
        payload,
        if_match=if_match,
    )
    set_etag(response, opportunity.version)
    return Opportunity.model_validate(opportunity)


@router.post(
    "/opportunities/{opportunity_id}/move",
    operation_id="opportunities_move",
    summary="Move an opportunity to another stage",
    response_model=Opportunity,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def move_opportunity(
    request: Request,
    response: Response,
    opportunity_id: str,
    payload: OpportunityMove,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> Opportunity:
    """Move an open opportunity to any stage of its pipeline, closing it at won or lost."""
    opportunity = await opportunity_service.move(
        request.state.session,
        principal,
        parse_path_id("opportunity", opportunity_id, "opportunity"),
        payload,
        if_match=if_match,
    )
    set_etag(response, opportunity.version)
    return Opportunity.model_validate(opportunity)


@router.post(
    "/opportunities/{opportunity_id}/won",
    operation_id="opportunities_win",
    summary="Win an opportunity",
    response_model=Opportunity,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def win_opportunity(
    request: Request,
    response: Response,
    opportunity_id: str,
    payload: OpportunityWin,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> Opportunity:
    """Move an open opportunity to the won stage; 409 names open blocking objections."""
    opportunity = await opportunity_service.win(
        request.state.session,
        principal,
        parse_path_id("opportunity", opportunity_id, "opportunity"),
        if_match=if_match,
    )
    set_etag(response, opportunity.version)
    return Opportunity.model_validate(opportunity)


@router.post(
    "/opportunities/{opportunity_id}/lost",
    operation_id="opportunities_lose",
    summary="Lose an opportunity",
    response_model=Opportunity,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def lose_opportunity(
    request: Request,
    response: Response,
    opportunity_id: str,
    payload: OpportunityLose,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> Opportunity:
    """Move an open opportunity to a lost stage with a reason from the catalogue."""
    opportunity = await opportunity_service.lose(
        request.state.session,
        principal,
        parse_path_id("opportunity", opportunity_id, "opportunity"),
        payload,
        if_match=if_match,
    )
    set_etag(response, opportunity.version)
    return Opportunity.model_validate(opportunity)


@router.post(
    "/opportunities/{opportunity_id}/reopen",
    operation_id="opportunities_reopen",
    summary="Reopen a won or lost opportunity",
    response_model=Opportunity,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def reopen_opportunity(
    request: Request,
    response: Response,
    opportunity_id: str,
    payload: OpportunityReopen,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> Opportunity:
    """Move a closed opportunity back to an open stage, recording actor and reason."""
    opportunity = await opportunity_service.reopen(
        request.state.session,
        principal,
        parse_path_id("opportunity", opportunity_id, "opportunity"),
        payload,
        if_match=if_match,
    )
    set_etag(response, opportunity.version)
    return Opportunity.model_validate(opportunity)


@router.get(
    "/opportunities/{opportunity_id}/stage-history",
    operation_id="opportunities_stage_history",
    summary="List an opportunity's stage transitions",
    response_model=Page[StageTransition],
    responses=problem_responses(403, 404),
)
async def stage_history(
    request: Request,
    opportunity_id: str,
    principal: Principal = Depends(require("sales:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[StageTransition]:
    """List every stage change of an opportunity, newest first, with time in stage."""
    rows, next_cursor, has_more = await opportunity_service.transitions(
        request.state.session,
        principal.workspace_id,
        parse_path_id("opportunity", opportunity_id, "opportunity"),
        limit=limit,
        cursor=cursor,
    )
    return Page[StageTransition](
        data=[StageTransition.model_validate(row) for row in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )
