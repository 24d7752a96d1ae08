from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from app.activities import timeline as timelines
from app.activities.schemas import (
    Activity,
    ActivityComplete,
    ActivityCreate,
    ActivityKind,
    ActivityUpdate,
    TimelineItem,
)
from app.activities.service import activity_service
from app.core import ids
from app.core.auth import Principal, require
from app.core.concurrency import IfMatch, set_etag
from app.core.openapi import problem_responses
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.core.paths import parse_path_id
from app.core.routing import UnitOfWorkRoute
from app.core.schemas import (
    ContactId,
    CustomerId,
    LeadId,
    OpportunityId,
    Timestamp,
    UserId,
)

router = APIRouter(tags=["activities"], route_class=UnitOfWorkRoute)


@router.post(
    "/activities",
    operation_id="activities_create",
    summary="Log an activity or create a task",
    status_code=status.HTTP_201_CREATED,
    response_model=Activity,
    responses=problem_responses(403, 413, 415),
)
async def create_activity(
    request: Request,
    response: Response,
    payload: ActivityCreate,
    principal: Principal = Depends(require("activities:write")),
) -> Activity:
    """Log a note, call, email or meeting, or create a task, on one or more records."""
    activity = await activity_service.create(request.state.session, principal, payload)
    set_etag(response, activity.version)
    response.headers["Location"] = (
        f"/v1/activities/{ids.encode('activity', activity.id)}"
    )
    return Activity.model_validate(activity)


@router.get(
    "/activities",
    operation_id="activities_list",
    summary="List activities",
    response_model=Page[Activity],
    responses=problem_responses(403),
)
async def list_activities(
    request: Request,
    principal: Principal = Depends(require("activities:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    kind: Annotated[ActivityKind | None, Query(description="Only this kind.")] = None,
    lead_id: Annotated[LeadId | None, Query()] = None,
    contact_id: Annotated[ContactId | None, Query()] = None,
    customer_id: Annotated[CustomerId | None, Query()] = None,
    opportunity_id: Annotated[OpportunityId | None, Query()] = None,
    owner_id: Annotated[
        UserId | None, Query(description="Only activities of this owner or assignee.")
    ] = None,
    overdue: Annotated[
        bool | None,
        Query(description="true: only overdue tasks; false: everything else."),
    ] = None,
    due_before: Annotated[Timestamp | None, Query()] = None,
    due_after: Annotated[Timestamp | None, Query()] = None,
) -> Page[Activity]:
    """List activities, newest first."""
    records = {
        record_type: record_id
        for record_type, record_id in (
            ("lead", lead_id),
            ("contact", contact_id),
            ("customer", customer_id),
            ("opportunity", opportunity_id),
        )
        if record_id is not None
    }
    rows, next_cursor, has_more = await activity_service.list(
        request.state.session,
        principal.workspace_id,
        limit=limit,
        cursor=cursor,
        kind=kind,
        records=records,
        owner_id=owner_id,
        overdue=overdue,
        due_before=due_before,
        due_after=due_after,
    )
    return Page[Activity](
        data=[Activity.model_validate(row) for row in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@router.get(
    "/activities/{activity_id}",
    operation_id="activities_get",
    summary="Get an activity",
    response_model=Activity,
    responses=problem_responses(403, 404),
)
async def get_activity(
    request: Request,
    response: Response,
    activity_id: str,
    principal: Principal = Depends(require("activities:read")),
) -> Activity:
    """Fetch one activity by id."""
    activity = await activity_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("activity", activity_id, "activity"),
    )
    set_etag(response, activity.version)
    return Activity.model_validate(activity)


@router.patch(
    "/activities/{activity_id}",
    operation_id="activities_update",
    summary="Update an activity",
    response_model=Activity,
    responses=problem_responses(403, 404, 412, 413, 415),
)
async def update_activity(
    request: Request,
    response: Response,
    activity_id: str,
    payload: ActivityUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("activities:write")),
) -> Activity:
    """Change an activity's fields; its kind and linked records stay as created."""
    activity = await activity_service.update(
        request.state.session,
        principal,
        parse_path_id("activity", activity_id, "activity"),
        payload,
        if_match=if_match,
    )
    set_etag(response, activity.version)
    return Activity.model_validate(activity)


@router.post(
    "/activities/{activity_id}/complete",
    operation_id="activities_complete",
    summary="Complete a task",
    response_model=Activity,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def complete_activity(
    request: Request,
    response: Response,
    activity_id: str,
    payload: ActivityComplete | None = None,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("activities:write")),
) -> Activity:
    """Mark an open task as done, with an optional outcome."""
    activity = await activity_service.complete(
        request.state.session,
        principal,
        parse_path_id("activity", activity_id, "activity"),
        payload or ActivityComplete(),
        if_match=if_match,
    )
    set_etag(response, activity.version)
    return Activity.model_validate(activity)


async def _timeline_page(
    request: Request,
    principal: Principal,
    record_type: str,
    record_id: str,
    label: str,
    limit: int,
    cursor: str | None,
) -> Page[TimelineItem]:
    items, next_cursor, has_more = await timelines.timeline(
        request.state.session,
        principal.workspace_id,
        record_type,
        parse_path_id(record_type, record_id, label),
        limit=limit,
        cursor=cursor,
    )
    return Page[TimelineItem](data=items, next_cursor=next_cursor, has_more=has_more)


@router.get(
    "/leads/{lead_id}/timeline",
    operation_id="leads_timeline",
    summary="Get a lead's timeline",
    response_model=Page[TimelineItem],
    responses=problem_responses(403, 404),
)
async def lead_timeline(
    request: Request,
    lead_id: str,
    principal: Principal = Depends(require("activities:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: timelines.TimelineCursor = None,
) -> Page[TimelineItem]:
    """List the lead's activities and events, newest first."""
    return await _timeline_page(
        request, principal, "lead", lead_id, "lead", limit, cursor
    )


@router.get(
    "/contacts/{contact_id}/timeline",
    operation_id="contacts_timeline",
    summary="Get a contact's timeline",
    response_model=Page[TimelineItem],
    responses=problem_responses(403, 404),
)
async def contact_timeline(
    request: Request,
    contact_id: str,
    principal: Principal = Depends(require("activities:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: timelines.TimelineCursor = None,
) -> Page[TimelineItem]:
    """List the contact's activities and events, newest first."""
    return await _timeline_page(
        request, principal, "contact", contact_id, "contact", limit, cursor
    )


@router.get(
    "/customers/{customer_id}/timeline",
    operation_id="customers_timeline",
    summary="Get a customer's timeline",
    response_model=Page[TimelineItem],
    responses=problem_responses(403, 404),
)
async def customer_timeline(
    request: Request,
    customer_id: str,
    principal: Principal = Depends(require("activities:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: timelines.TimelineCursor = None,
) -> Page[TimelineItem]:
    """List the customer's activities and events, newest first."""
    return await _timeline_page(
        request, principal, "customer", customer_id, "customer", limit, cursor
    )


@router.get(
    "/opportunities/{opportunity_id}/timeline",
    operation_id="opportunities_timeline",
    summary="Get an opportunity's timeline",
    response_model=Page[TimelineItem],
    responses=problem_responses(403, 404),
)
async def opportunity_timeline(
    request: Request,
    opportunity_id: str,
    principal: Principal = Depends(require("activities:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: timelines.TimelineCursor = None,
) -> Page[TimelineItem]:
    """List the opportunity's activities and events, newest first."""
    return await _timeline_page(
        request, principal, "opportunity", opportunity_id, "opportunity", limit, cursor
    )
