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
from app.core.schemas import CustomerId, PipelineId, StageId, StorableText
from app.opportunities.pipelines import pipeline_service, pipeline_view
from app.opportunities.schemas import (
    Opportunity,
    OpportunityCreate,
    OpportunityMove,
    OpportunityReopen,
    OpportunityStatus,
    OpportunityUpdate,
    Pipeline,
    StageTransition,
)
from app.opportunities.service import opportunity_service

router = APIRouter(route_class=UnitOfWorkRoute)


@router.get(
    "/pipelines",
    tags=["pipelines"],
    operation_id="pipelines_list",
    summary="List pipelines",
    response_model=Page[Pipeline],
    responses=problem_responses(403),
)
async def list_pipelines(
    request: Request,
    principal: Principal = Depends(require("sales:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[Pipeline]:
    """List pipelines with their stages, creating the default pipeline if missing."""
    rows, next_cursor, has_more = await pipeline_service.list(
        request.state.session, principal.workspace_id, limit=limit, cursor=cursor
    )
    return Page[Pipeline](
        data=[pipeline_view(pipeline, stages) for pipeline, stages in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@router.get(
    "/pipelines/{pipeline_id}",
    tags=["pipelines"],
    operation_id="pipelines_get",
    summary="Get a pipeline",
    response_model=Pipeline,
    responses=problem_responses(403, 404),
)
async def get_pipeline(
    request: Request,
    pipeline_id: str,
    principal: Principal = Depends(require("sales:read")),
) -> Pipeline:
    """Fetch one pipeline with its stages ordered by position."""
    pipeline, stages = await pipeline_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("pipeline", pipeline_id, "pipeline"),
    )
    return pipeline_view(pipeline, stages)


@router.post(
    "/opportunities",
    tags=["opportunities"],
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
    tags=["opportunities"],
    operation_id="opportunities_list",
    summary="List opportunities",
    response_model=Page[Opportunity],
    responses=problem_responses(403),
)
async def list_opportunities(
    request: Request,
    principal: Principal = Depends(require("sales:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
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
    owner_id: Annotated[
        StorableText | None, Query(max_length=200, description="Only this owner.")
    ] = None,
) -> Page[Opportunity]:
    """List opportunities, newest first."""
    rows, next_cursor, has_more = await opportunity_service.list(
        request.state.session,
        principal.workspace_id,
        limit=limit,
        cursor=cursor,
        status=status,
        pipeline_id=pipeline_id,
        stage_id=stage_id,
        customer_id=customer_id,
        owner_id=owner_id,
    )
    return Page[Opportunity](
        data=[Opportunity.model_validate(row) for row in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@router.get(
    "/opportunities/{opportunity_id}",
    tags=["opportunities"],
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
    tags=["opportunities"],
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
    tags=["opportunities"],
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
    """Move an open opportunity to a stage of its pipeline, closing it at won or lost."""
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
    "/opportunities/{opportunity_id}/reopen",
    tags=["opportunities"],
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
    """Move a closed opportunity back to an open stage and record the transition."""
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
    "/opportunities/{opportunity_id}/transitions",
    tags=["opportunities"],
    operation_id="opportunities_list_transitions",
    summary="List an opportunity's stage transitions",
    response_model=Page[StageTransition],
    responses=problem_responses(403, 404),
)
async def list_transitions(
    request: Request,
    opportunity_id: str,
    principal: Principal = Depends(require("sales:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[StageTransition]:
    """List every stage change of an opportunity, newest first, with actor and time."""
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
