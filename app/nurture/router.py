from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.responses import HTMLResponse, JSONResponse

from app.core import ids
from app.core.auth import Principal, require
from app.core.concurrency import IfMatch, set_etag
from app.core.openapi import problem_responses
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.core.paths import parse_path_id
from app.core.routing import UnitOfWorkRoute
from app.core.schemas import LeadId, SequenceId
from app.nurture import preview, versions
from app.nurture import unsubscribe_page as unsubscribe_page_html
from app.nurture.schemas import (
    Enrollment,
    EnrollmentCreate,
    EnrollmentMoveVersion,
    EnrollmentStatus,
    Sequence,
    SequenceCreate,
    SequenceUpdate,
    SequenceVersion,
    StepPreview,
    StepPreviewRequest,
    Unsubscribed,
)
from app.nurture.service import enrollment_service, sequence_service
from app.nurture.unsubscribe import MAX_TOKEN_LENGTH
from app.settings import Settings
from app.webhooks.url_safety import AddressPolicy, policy_for

router = APIRouter(route_class=UnitOfWorkRoute)

Token = Annotated[
    str,
    Path(max_length=MAX_TOKEN_LENGTH, description="The token of the signed link."),
]


def _url_policy(request: Request) -> AddressPolicy:
    settings: Settings = request.app.state.settings
    return policy_for(
        tuple(settings.webhook_allow_private_hosts), settings.webhook_allow_http
    )


@router.post(
    "/sequences",
    tags=["sequences"],
    operation_id="sequences_create",
    summary="Create a sequence",
    status_code=status.HTTP_201_CREATED,
    response_model=Sequence,
    responses=problem_responses(403, 413, 415),
)
async def create_sequence(
    request: Request,
    response: Response,
    payload: SequenceCreate,
    principal: Principal = Depends(require("nurture:write")),
) -> Sequence:
    """Create a sequence of email steps whose merge fields are all known ones."""
    sequence = await sequence_service.create(
        request.state.session, principal, payload, url_policy=_url_policy(request)
    )
    set_etag(response, sequence.version)
    response.headers["Location"] = (
        f"/v1/sequences/{ids.encode('sequence', sequence.id)}"
    )
    return sequence


@router.get(
    "/sequences",
    tags=["sequences"],
    operation_id="sequences_list",
    summary="List sequences",
    response_model=Page[Sequence],
    responses=problem_responses(403),
)
async def list_sequences(
    request: Request,
    principal: Principal = Depends(require("nurture:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[Sequence]:
    """List sequences with their steps, newest first."""
    rows, next_cursor, has_more = await sequence_service.list(
        request.state.session, principal.workspace_id, limit=limit, cursor=cursor
    )
    return Page[Sequence](data=rows, next_cursor=next_cursor, has_more=has_more)


@router.get(
    "/sequences/{sequence_id}",
    tags=["sequences"],
    operation_id="sequences_get",
    summary="Get a sequence",
    response_model=Sequence,
    responses=problem_responses(403, 404),
)
async def get_sequence(
    request: Request,
    response: Response,
    sequence_id: str,
    principal: Principal = Depends(require("nurture:read")),
) -> Sequence:
    """Fetch one sequence with its steps."""
    sequence = await sequence_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("sequence", sequence_id, "sequence"),
    )
    set_etag(response, sequence.version)
    return sequence


@router.patch(
    "/sequences/{sequence_id}",
    tags=["sequences"],
    operation_id="sequences_update",
    summary="Update a sequence",
    response_model=Sequence,
    responses=problem_responses(403, 404, 412, 413, 415),
)
async def update_sequence(
    request: Request,
    response: Response,
    sequence_id: str,
    payload: SequenceUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("nurture:write")),
) -> Sequence:
    """Change the name or sender in place, or save new steps as the next version."""
    sequence = await versions.update_sequence(
        request.state.session,
        principal,
        parse_path_id("sequence", sequence_id, "sequence"),
        payload,
        if_match=if_match,
        url_policy=_url_policy(request),
    )
    set_etag(response, sequence.version)
    return sequence


@router.post(
    "/sequences/{sequence_id}/archive",
    tags=["sequences"],
    operation_id="sequences_archive",
    summary="Archive a sequence",
    response_model=Sequence,
    responses=problem_responses(403, 404, 412),
)
async def archive_sequence(
    request: Request,
    response: Response,
    sequence_id: str,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("nurture:write")),
) -> Sequence:
    """Stop new enrollments in a sequence, while running enrollments finish."""
    sequence = await versions.archive_sequence(
        request.state.session,
        principal,
        parse_path_id("sequence", sequence_id, "sequence"),
        if_match=if_match,
    )
    set_etag(response, sequence.version)
    return sequence


@router.get(
    "/sequences/{sequence_id}/versions/{number}",
    tags=["sequences"],
    operation_id="sequences_get_version",
    summary="Get a sequence version",
    response_model=SequenceVersion,
    responses=problem_responses(403, 404),
)
async def get_sequence_version(
    request: Request,
    sequence_id: str,
    number: Annotated[int, Path(ge=1, le=2_147_483_647)],
    principal: Principal = Depends(require("nurture:read")),
) -> SequenceVersion:
    """Fetch the steps of one version of a sequence."""
    return await versions.get_version(
        request.state.session,
        principal.workspace_id,
        parse_path_id("sequence", sequence_id, "sequence"),
        number,
    )


@router.post(
    "/sequences/{sequence_id}/steps/{position}/preview",
    tags=["sequences"],
    operation_id="sequences_preview_step",
    summary="Preview a step",
    response_model=StepPreview,
    responses=problem_responses(403, 404, 413, 415),
)
async def preview_step(
    request: Request,
    sequence_id: str,
    position: Annotated[int, Path(ge=0, le=2_147_483_647)],
    payload: StepPreviewRequest,
    principal: Principal = Depends(require("nurture:read")),
) -> StepPreview:
    """Render a step for one lead as the worker would, without sending anything."""
    return await preview.preview_step(
        request.state.session,
        request.app.state.settings,
        principal.workspace_id,
        parse_path_id("sequence", sequence_id, "sequence"),
        position,
        payload,
    )


@router.post(
    "/sequences/{sequence_id}/enrollments",
    tags=["enrollments"],
    operation_id="enrollments_create",
    summary="Enroll a lead",
    status_code=status.HTTP_201_CREATED,
    response_model=Enrollment,
    responses=problem_responses(403, 404, 409, 413, 415),
)
async def create_enrollment(
    request: Request,
    response: Response,
    sequence_id: str,
    payload: EnrollmentCreate,
    principal: Principal = Depends(require("nurture:write")),
) -> Enrollment:
    """Enroll a lead, unless it is already active or paused in the sequence (409)."""
    enrollment = await enrollment_service.enroll(
        request.state.session,
        principal,
        parse_path_id("sequence", sequence_id, "sequence"),
        payload,
    )
    set_etag(response, enrollment.version)
    response.headers["Location"] = (
        f"/v1/enrollments/{ids.encode('enrollment', enrollment.id)}"
    )
    return enrollment


@router.get(
    "/enrollments",
    tags=["enrollments"],
    operation_id="enrollments_list",
    summary="List enrollments",
    response_model=Page[Enrollment],
    responses=problem_responses(403),
)
async def list_enrollments(
    request: Request,
    principal: Principal = Depends(require("nurture:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    lead_id: Annotated[LeadId | None, Query(description="Only this lead.")] = None,
    sequence_id: Annotated[
        SequenceId | None, Query(description="Only this sequence.")
    ] = None,
    status: Annotated[
        EnrollmentStatus | None, Query(description="Only this status.")
    ] = None,
) -> Page[Enrollment]:
    """List enrollments, newest first."""
    rows, next_cursor, has_more = await enrollment_service.list(
        request.state.session,
        principal.workspace_id,
        limit=limit,
        cursor=cursor,
        lead_id=lead_id,
        sequence_id=sequence_id,
        status=status,
    )
    return Page[Enrollment](data=rows, next_cursor=next_cursor, has_more=has_more)


@router.get(
    "/enrollments/{enrollment_id}",
    tags=["enrollments"],
    operation_id="enrollments_get",
    summary="Get an enrollment",
    response_model=Enrollment,
    responses=problem_responses(403, 404),
)
async def get_enrollment(
    request: Request,
    response: Response,
    enrollment_id: str,
    principal: Principal = Depends(require("nurture:read")),
) -> Enrollment:
    """Fetch one enrollment with the steps run so far."""
    enrollment = await enrollment_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("enrollment", enrollment_id, "enrollment"),
    )
    set_etag(response, enrollment.version)
    return enrollment


@router.post(
    "/enrollments/{enrollment_id}/pause",
    tags=["enrollments"],
    operation_id="enrollments_pause",
    summary="Pause an enrollment",
    response_model=Enrollment,
    responses=problem_responses(403, 404, 409, 412),
)
async def pause_enrollment(
    request: Request,
    response: Response,
    enrollment_id: str,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("nurture:write")),
) -> Enrollment:
    """Stop running steps until the enrollment is resumed."""
    enrollment = await enrollment_service.pause(
        request.state.session,
        principal,
        parse_path_id("enrollment", enrollment_id, "enrollment"),
        if_match=if_match,
    )
    set_etag(response, enrollment.version)
    return enrollment


@router.post(
    "/enrollments/{enrollment_id}/resume",
    tags=["enrollments"],
    operation_id="enrollments_resume",
    summary="Resume an enrollment",
    response_model=Enrollment,
    responses=problem_responses(403, 404, 409, 412),
)
async def resume_enrollment(
    request: Request,
    response: Response,
    enrollment_id: str,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("nurture:write")),
) -> Enrollment:
    """Run steps again, an overdue or failed step in the next send window."""
    enrollment = await enrollment_service.resume(
        request.state.session,
        principal,
        parse_path_id("enrollment", enrollment_id, "enrollment"),
        if_match=if_match,
    )
    set_etag(response, enrollment.version)
    return enrollment


@router.post(
    "/enrollments/{enrollment_id}/exit",
    tags=["enrollments"],
    operation_id="enrollments_exit",
    summary="Exit an enrollment",
    response_model=Enrollment,
    responses=problem_responses(403, 404, 409, 412),
)
async def exit_enrollment(
    request: Request,
    response: Response,
    enrollment_id: str,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("nurture:write")),
) -> Enrollment:
    """End the enrollment for good, with the exit reason manual."""
    enrollment = await enrollment_service.exit(
        request.state.session,
        principal,
        parse_path_id("enrollment", enrollment_id, "enrollment"),
        if_match=if_match,
    )
    set_etag(response, enrollment.version)
    return enrollment


@router.post(
    "/enrollments/{enrollment_id}/move-version",
    tags=["enrollments"],
    operation_id="enrollments_move_version",
    summary="Move an enrollment to another version",
    response_model=Enrollment,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def move_enrollment_version(
    request: Request,
    response: Response,
    enrollment_id: str,
    payload: EnrollmentMoveVersion,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("nurture:write")),
) -> Enrollment:
    """Continue a running enrollment on another version of its sequence."""
    enrollment = await versions.move_version(
        request.state.session,
        principal,
        parse_path_id("enrollment", enrollment_id, "enrollment"),
        payload,
        if_match=if_match,
    )
    set_etag(response, enrollment.version)
    return enrollment


@router.get(
    "/unsubscribe/{token}",
    tags=["unsubscribe"],
    operation_id="unsubscribe_link",
    summary="Show the unsubscribe page",
    response_class=HTMLResponse,
    responses={
        200: {"content": {"text/html": {}}, "description": "The unsubscribe page."},
        **problem_responses(404),
    },
    openapi_extra={"security": []},
)
async def unsubscribe_page(request: Request, token: Token) -> HTMLResponse:
    """Show the page of a signed link, whose button unsubscribes; opening it does not."""
    settings = request.app.state.settings
    lead, suppressed = await enrollment_service.unsubscribe_state(
        request.state.session, settings.signing_secret.get_secret_value(), token
    )
    html = unsubscribe_page_html.confirm_page(
        lead.email, request.url.path, already=suppressed
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


@router.post(
    "/unsubscribe/{token}",
    tags=["unsubscribe"],
    operation_id="unsubscribe_one_click",
    summary="Unsubscribe with one click",
    response_model=Unsubscribed,
    responses={
        200: {
            "content": {"text/html": {}},
            "description": "The result as JSON, or as a page for a browser.",
        },
        **problem_responses(404),
    },
    openapi_extra={"security": []},
)
async def unsubscribe_one_click(request: Request, token: Token) -> Response:
    """Unsubscribe as RFC 8058 one-click mail clients and the page's button do."""
    settings = request.app.state.settings
    result, lead = await enrollment_service.unsubscribe(
        request.state.session, settings.signing_secret.get_secret_value(), token
    )
    # A browser submitting the page's form accepts HTML, and mail clients do not.
    if "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(
            unsubscribe_page_html.done_page(lead.email),
            headers={"Cache-Control": "no-store"},
        )
    return JSONResponse(result.model_dump(mode="json"))
