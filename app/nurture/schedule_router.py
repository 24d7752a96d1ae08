from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response, status

from app.core import ids
from app.core.auth import Principal, require
from app.core.concurrency import IfMatch, set_etag
from app.core.openapi import problem_responses
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.core.paths import parse_path_id
from app.core.routing import UnitOfWorkRoute
from app.nurture.holidays import holiday_calendar_service
from app.nurture.schedule_preview import preview_schedule
from app.nurture.schedule_schemas import (
    EnrollmentSchedule,
    HolidayCalendar,
    HolidayCalendarCreate,
    HolidayCalendarUpdate,
)

router = APIRouter(route_class=UnitOfWorkRoute)


@router.post(
    "/holiday-calendars",
    tags=["holiday calendars"],
    operation_id="holiday_calendars_create",
    summary="Create a holiday calendar",
    status_code=status.HTTP_201_CREATED,
    response_model=HolidayCalendar,
    responses=problem_responses(403, 413, 415),
)
async def create_holiday_calendar(
    request: Request,
    response: Response,
    payload: HolidayCalendarCreate,
    principal: Principal = Depends(require("nurture:write")),
) -> HolidayCalendar:
    """Create a list of dates on which sequences that use it send nothing."""
    calendar = await holiday_calendar_service.create(
        request.state.session, principal, payload
    )
    set_etag(response, calendar.version)
    response.headers["Location"] = (
        f"/v1/holiday-calendars/{ids.encode('holiday_calendar', calendar.id)}"
    )
    return HolidayCalendar.model_validate(calendar)


@router.get(
    "/holiday-calendars",
    tags=["holiday calendars"],
    operation_id="holiday_calendars_list",
    summary="List holiday calendars",
    response_model=Page[HolidayCalendar],
    responses=problem_responses(403),
)
async def list_holiday_calendars(
    request: Request,
    principal: Principal = Depends(require("nurture:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[HolidayCalendar]:
    """List holiday calendars, newest first."""
    rows, next_cursor, has_more = await holiday_calendar_service.list(
        request.state.session, principal.workspace_id, limit=limit, cursor=cursor
    )
    return Page[HolidayCalendar](
        data=[HolidayCalendar.model_validate(row) for row in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@router.get(
    "/holiday-calendars/{holiday_calendar_id}",
    tags=["holiday calendars"],
    operation_id="holiday_calendars_get",
    summary="Get a holiday calendar",
    response_model=HolidayCalendar,
    responses=problem_responses(403, 404),
)
async def get_holiday_calendar(
    request: Request,
    response: Response,
    holiday_calendar_id: str,
    principal: Principal = Depends(require("nurture:read")),
) -> HolidayCalendar:
    """Fetch one holiday calendar with its dates."""
    calendar = await holiday_calendar_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("holiday_calendar", holiday_calendar_id, "holiday calendar"),
    )
    set_etag(response, calendar.version)
    return HolidayCalendar.model_validate(calendar)


@router.patch(
    "/holiday-calendars/{holiday_calendar_id}",
    tags=["holiday calendars"],
    operation_id="holiday_calendars_update",
    summary="Update a holiday calendar",
    response_model=HolidayCalendar,
    responses=problem_responses(403, 404, 412, 413, 415),
)
async def update_holiday_calendar(
    request: Request,
    response: Response,
    holiday_calendar_id: str,
    payload: HolidayCalendarUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("nurture:write")),
) -> HolidayCalendar:
    """Change a calendar; new dates apply to steps scheduled from now on."""
    calendar = await holiday_calendar_service.update(
        request.state.session,
        principal,
        parse_path_id("holiday_calendar", holiday_calendar_id, "holiday calendar"),
        payload,
        if_match=if_match,
    )
    set_etag(response, calendar.version)
    return HolidayCalendar.model_validate(calendar)


@router.delete(
    "/holiday-calendars/{holiday_calendar_id}",
    tags=["holiday calendars"],
    operation_id="holiday_calendars_delete",
    summary="Delete a holiday calendar",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(403, 404, 409, 412),
)
async def delete_holiday_calendar(
    request: Request,
    holiday_calendar_id: str,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("nurture:write")),
) -> Response:
    """Delete a calendar that no sequence uses (409 otherwise)."""
    await holiday_calendar_service.delete(
        request.state.session,
        principal,
        parse_path_id("holiday_calendar", holiday_calendar_id, "holiday calendar"),
        if_match=if_match,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/enrollments/{enrollment_id}/schedule",
    tags=["enrollments"],
    operation_id="enrollments_schedule",
    summary="Preview an enrollment's schedule",
    response_model=EnrollmentSchedule,
    responses=problem_responses(403, 404),
)
async def get_enrollment_schedule(
    request: Request,
    enrollment_id: str,
    principal: Principal = Depends(require("nurture:read")),
) -> EnrollmentSchedule:
    """List when each remaining step is due, assuming each runs when due."""
    return await preview_schedule(
        request.state.session,
        principal.workspace_id,
        parse_path_id("enrollment", enrollment_id, "enrollment"),
    )
