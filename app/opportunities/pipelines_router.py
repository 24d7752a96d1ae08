"""``/v1/pipelines``: pipelines and their stages.

Every change returns the whole pipeline with its ETag, which covers the stages, and
checks ``If-Match`` against that ETag.
"""

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
from app.opportunities.pipelines import pipeline_service, pipeline_view
from app.opportunities.schemas import (
    Pipeline,
    PipelineCreate,
    PipelineStageCreate,
    PipelineUpdate,
    StageReorder,
    StageUpdate,
)

router = APIRouter(route_class=UnitOfWorkRoute, tags=["pipelines"])


@router.get(
    "/pipelines",
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
    archived: Annotated[
        bool | None,
        Query(description="true for archived pipelines only, false for active only."),
    ] = None,
) -> Page[Pipeline]:
    """List pipelines with their stages, creating the default pipeline if missing."""
    rows, next_cursor, has_more = await pipeline_service.list(
        request.state.session,
        principal.workspace_id,
        limit=limit,
        cursor=cursor,
        archived=archived,
    )
    return Page[Pipeline](
        data=[pipeline_view(pipeline, stages) for pipeline, stages in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@router.post(
    "/pipelines",
    operation_id="pipelines_create",
    summary="Create a pipeline",
    status_code=status.HTTP_201_CREATED,
    response_model=Pipeline,
    responses=problem_responses(403, 409, 413, 415),
)
async def create_pipeline(
    request: Request,
    response: Response,
    payload: PipelineCreate,
    principal: Principal = Depends(require("sales:write")),
) -> Pipeline:
    """Create a pipeline with its ordered stages."""
    pipeline, stages = await pipeline_service.create(
        request.state.session, principal, payload
    )
    set_etag(response, pipeline.version)
    response.headers["Location"] = (
        f"/v1/pipelines/{ids.encode('pipeline', pipeline.id)}"
    )
    return pipeline_view(pipeline, stages)


@router.get(
    "/pipelines/{pipeline_id}",
    operation_id="pipelines_get",
    summary="Get a pipeline",
    response_model=Pipeline,
    responses=problem_responses(403, 404),
)
async def get_pipeline(
    request: Request,
    response: Response,
    pipeline_id: str,
    principal: Principal = Depends(require("sales:read")),
) -> Pipeline:
    """Fetch one pipeline with its stages ordered by position."""
    pipeline, stages = await pipeline_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("pipeline", pipeline_id, "pipeline"),
    )
    set_etag(response, pipeline.version)
    return pipeline_view(pipeline, stages)


@router.patch(
    "/pipelines/{pipeline_id}",
    operation_id="pipelines_update",
    summary="Update a pipeline",
    response_model=Pipeline,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def update_pipeline(
    request: Request,
    response: Response,
    pipeline_id: str,
    payload: PipelineUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> Pipeline:
    """Rename a pipeline, or make it the workspace's default."""
    pipeline, stages = await pipeline_service.update(
        request.state.session,
        principal,
        parse_path_id("pipeline", pipeline_id, "pipeline"),
        payload,
        if_match=if_match,
    )
    set_etag(response, pipeline.version)
    return pipeline_view(pipeline, stages)


@router.post(
    "/pipelines/{pipeline_id}/archive",
    operation_id="pipelines_archive",
    summary="Archive a pipeline",
    response_model=Pipeline,
    responses=problem_responses(403, 404, 409, 412),
)
async def archive_pipeline(
    request: Request,
    response: Response,
    pipeline_id: str,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> Pipeline:
    """Archive a pipeline that has no open opportunity; 409 names the count."""
    pipeline, stages = await pipeline_service.archive(
        request.state.session,
        principal,
        parse_path_id("pipeline", pipeline_id, "pipeline"),
        if_match=if_match,
    )
    set_etag(response, pipeline.version)
    return pipeline_view(pipeline, stages)


@router.delete(
    "/pipelines/{pipeline_id}",
    operation_id="pipelines_delete",
    summary="Delete a pipeline",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(403, 404, 409, 412),
)
async def delete_pipeline(
    request: Request,
    pipeline_id: str,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> Response:
    """Delete a pipeline that no opportunity uses; 409 names the count."""
    await pipeline_service.delete(
        request.state.session,
        principal,
        parse_path_id("pipeline", pipeline_id, "pipeline"),
        if_match=if_match,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/pipelines/{pipeline_id}/stages",
    operation_id="pipelines_add_stage",
    summary="Add a stage to a pipeline",
    status_code=status.HTTP_201_CREATED,
    response_model=Pipeline,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def add_stage(
    request: Request,
    response: Response,
    pipeline_id: str,
    payload: PipelineStageCreate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> Pipeline:
    """Insert a stage and return the pipeline; Location names the new stage."""
    pipeline, stages, stage = await pipeline_service.add_stage(
        request.state.session,
        principal,
        parse_path_id("pipeline", pipeline_id, "pipeline"),
        payload,
        if_match=if_match,
    )
    set_etag(response, pipeline.version)
    response.headers["Location"] = (
        f"/v1/pipelines/{ids.encode('pipeline', pipeline.id)}/stages/"
        f"{ids.encode('stage', stage.id)}"
    )
    return pipeline_view(pipeline, stages)


@router.patch(
    "/pipelines/{pipeline_id}/stages/{stage_id}",
    operation_id="pipelines_update_stage",
    summary="Update a stage",
    response_model=Pipeline,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def update_stage(
    request: Request,
    response: Response,
    pipeline_id: str,
    stage_id: str,
    payload: StageUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> Pipeline:
    """Change a stage and return the pipeline; If-Match takes the pipeline's ETag."""
    pipeline, stages = await pipeline_service.update_stage(
        request.state.session,
        principal,
        parse_path_id("pipeline", pipeline_id, "pipeline"),
        parse_path_id("stage", stage_id, "stage"),
        payload,
        if_match=if_match,
    )
    set_etag(response, pipeline.version)
    return pipeline_view(pipeline, stages)


@router.delete(
    "/pipelines/{pipeline_id}/stages/{stage_id}",
    operation_id="pipelines_delete_stage",
    summary="Delete a stage",
    response_model=Pipeline,
    responses=problem_responses(403, 404, 409, 412),
)
async def delete_stage(
    request: Request,
    response: Response,
    pipeline_id: str,
    stage_id: str,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> Pipeline:
    """Delete a stage no opportunity is in or has passed through; return the pipeline."""
    pipeline, stages = await pipeline_service.delete_stage(
        request.state.session,
        principal,
        parse_path_id("pipeline", pipeline_id, "pipeline"),
        parse_path_id("stage", stage_id, "stage"),
        if_match=if_match,
    )
    set_etag(response, pipeline.version)
    return pipeline_view(pipeline, stages)


@router.post(
    "/pipelines/{pipeline_id}/reorder",
    operation_id="pipelines_reorder_stages",
    summary="Reorder a pipeline's stages",
    response_model=Pipeline,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def reorder_stages(
    request: Request,
    response: Response,
    pipeline_id: str,
    payload: StageReorder,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("sales:write")),
) -> Pipeline:
    """Set the order of every stage of the pipeline at once."""
    pipeline, stages = await pipeline_service.reorder_stages(
        request.state.session,
        principal,
        parse_path_id("pipeline", pipeline_id, "pipeline"),
        payload,
        if_match=if_match,
    )
    set_etag(response, pipeline.version)
    return pipeline_view(pipeline, stages)
