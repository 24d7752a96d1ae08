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
from app.customfields.schemas import (
    CustomField,
    CustomFieldCreate,
    CustomFieldUpdate,
    ObjectType,
)
from app.customfields.service import custom_field_service

router = APIRouter(
    prefix="/custom-fields", tags=["custom fields"], route_class=UnitOfWorkRoute
)


@router.post(
    "",
    operation_id="custom_fields_create",
    summary="Define a custom field",
    status_code=status.HTTP_201_CREATED,
    response_model=CustomField,
    responses=problem_responses(403, 409, 413, 415),
)
async def create_custom_field(
    request: Request,
    response: Response,
    payload: CustomFieldCreate,
    principal: Principal = Depends(require("leads:write")),
) -> CustomField:
    """Define the type of one attributes key; existing values are checked on their next write."""
    definition = await custom_field_service.create(
        request.state.session,
        principal,
        payload,
        max_definitions=request.app.state.settings.custom_field_max_definitions_per_object_type,
    )
    set_etag(response, definition.version)
    response.headers["Location"] = (
        f"/v1/custom-fields/{ids.encode('custom_field', definition.id)}"
    )
    return CustomField.model_validate(definition)


@router.get(
    "",
    operation_id="custom_fields_list",
    summary="List custom fields",
    response_model=Page[CustomField],
    responses=problem_responses(403),
)
async def list_custom_fields(
    request: Request,
    principal: Principal = Depends(require("leads:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    object_type: Annotated[
        ObjectType | None, Query(description="Only this object type.")
    ] = None,
) -> Page[CustomField]:
    """List custom field definitions, newest first."""
    rows, next_cursor, has_more = await custom_field_service.list(
        request.state.session,
        principal.workspace_id,
        object_type=object_type,
        limit=limit,
        cursor=cursor,
    )
    return Page[CustomField](
        data=[CustomField.model_validate(row) for row in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@router.get(
    "/{custom_field_id}",
    operation_id="custom_fields_get",
    summary="Get a custom field",
    response_model=CustomField,
    responses=problem_responses(403, 404),
)
async def get_custom_field(
    request: Request,
    response: Response,
    custom_field_id: str,
    principal: Principal = Depends(require("leads:read")),
) -> CustomField:
    """Fetch one custom field definition by id."""
    definition = await custom_field_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("custom_field", custom_field_id, "custom field"),
    )
    set_etag(response, definition.version)
    return CustomField.model_validate(definition)


@router.patch(
    "/{custom_field_id}",
    operation_id="custom_fields_update",
    summary="Update a custom field",
    response_model=CustomField,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def update_custom_field(
    request: Request,
    response: Response,
    custom_field_id: str,
    payload: CustomFieldUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("leads:write")),
) -> CustomField:
    """Change a definition; 409 when the change would reject a stored value."""
    definition = await custom_field_service.update(
        request.state.session,
        principal,
        parse_path_id("custom_field", custom_field_id, "custom field"),
        payload,
        if_match=if_match,
    )
    set_etag(response, definition.version)
    return CustomField.model_validate(definition)


@router.delete(
    "/{custom_field_id}",
    operation_id="custom_fields_delete",
    summary="Delete a custom field",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(403, 404, 412),
)
async def delete_custom_field(
    request: Request,
    custom_field_id: str,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("leads:write")),
) -> Response:
    """Delete a definition; stored values stay as untyped attributes."""
    await custom_field_service.delete(
        request.state.session,
        principal,
        parse_path_id("custom_field", custom_field_id, "custom field"),
        if_match=if_match,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
