from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Query, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal, require
from app.core.concurrency import IfMatch, set_etag
from app.core.errors import FieldError, InvalidInput
from app.core.openapi import PUBLIC, problem_responses
from app.core.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from app.core.paths import parse_path_id
from app.core.routing import UnitOfWorkRoute
from app.core.schemas import Timestamp
from app.models import Event as EventRow
from app.models import WebhookAttempt as WebhookAttemptRow
from app.models import WebhookDelivery as WebhookDeliveryRow
from app.models import WebhookEndpoint as WebhookEndpointRow
from app.settings import Settings
from app.webhooks import catalog
from app.webhooks.recovery import webhook_recovery_service
from app.webhooks.sample_events import sample_event_service
from app.webhooks.schemas import (
    DeliveryStatus,
    Event,
    EventPage,
    EventTypeInfo,
    EventTypeList,
    TestEventCreate,
    WebhookAttempt,
    WebhookDeliveryWithAttempts,
    WebhookEndpoint,
    WebhookEndpointCreate,
    WebhookEndpointUpdate,
    WebhookEndpointWithSecret,
    WebhookRecovery,
    WebhookRecoveryCreate,
    WebhookSecretRotate,
    encode_object_id,
)
from app.webhooks.service import (
    event_service,
    webhook_delivery_service,
    webhook_endpoint_service,
)
from app.webhooks.url_safety import AddressPolicy, policy_for

router = APIRouter(route_class=UnitOfWorkRoute)


def _policy(request: Request) -> AddressPolicy:
    settings: Settings = request.app.state.settings
    return policy_for(
        tuple(settings.webhook_allow_private_hosts), settings.webhook_allow_http
    )


def _event(row: EventRow) -> Event:
    return Event(
        id=row.id,
        type=row.type,
        object_type=row.object_type,
        object_id=encode_object_id(row.object_type, row.object_id),
        sequence=row.sequence,
        data=row.data,
        request_id=row.request_id,
        actor=row.actor,
        test=row.test,
        created_at=row.created_at,
    )


def _delivery_fields(row: WebhookDeliveryRow, event_type: str) -> dict[str, object]:
    return {
        "id": row.id,
        "endpoint_id": row.endpoint_id,
        "event_id": row.event_id,
        "event_type": event_type,
        "status": row.status,
        "attempt_count": row.attempts,
        "next_attempt_at": row.next_attempt_at,
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
        "completed_at": row.completed_at,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def _delivery_with_attempts(
    row: WebhookDeliveryRow, event_type: str, attempts: Sequence[WebhookAttemptRow]
) -> WebhookDeliveryWithAttempts:
    return WebhookDeliveryWithAttempts.model_validate(
        {
            **_delivery_fields(row, event_type),
            "attempts": [WebhookAttempt.model_validate(item) for item in attempts],
        }
    )


def _endpoint_location(endpoint: WebhookEndpointRow) -> str:
    return f"/v1/webhook-endpoints/{ids.encode('webhook_endpoint', endpoint.id)}"


# The event log's cursor carries a transaction id beside the event id.
LogCursor = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Za-z0-9_-]{1,200}$",
        description="The next_cursor of the previous page, passed unchanged.",
    ),
]


def _query_event_id(value: str) -> uuid.UUID:
    try:
        return ids.decode("event", value)
    except ids.InvalidId as error:
        raise InvalidInput(
            f"event_id {value!r} is not an event id. Pass an id such as evt_… as the "
            "API returns it.",
            errors=[FieldError("query.event_id", str(error), "invalid_id")],
        ) from error


# Events


@router.get(
    "/events",
    tags=["events"],
    operation_id="events_list",
    summary="List events",
    response_model=EventPage,
    responses=problem_responses(403),
)
async def list_events(
    request: Request,
    principal: Principal = Depends(require("events:read")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: LogCursor = None,
    order: Annotated[
        Literal["desc", "asc"],
        Query(
            description="desc: newest first; asc: oldest first, to replay the log, "
            "showing an event once every transaction that began writing before it "
            "has ended."
        ),
    ] = "desc",
    types: Annotated[
        list[str] | None,
        Query(
            alias="type",
            description="Only these types; repeat to match several. 'invoice.*' "
            "matches every invoice event.",
        ),
    ] = None,
    object_id: Annotated[
        str | None,
        Query(max_length=100, description="Only events of this object, e.g. inv_…."),
    ] = None,
    created_after: Annotated[Timestamp | None, Query()] = None,
    created_before: Annotated[Timestamp | None, Query()] = None,
) -> EventPage:
    """List the event log; filter by type, object and time, and page by cursor."""
    rows, next_cursor, has_more = await event_service.list(
        request.state.session,
        principal.workspace_id,
        limit=limit,
        cursor=cursor,
        order=order,
        types=types or [],
        object_id=object_id,
        created_after=created_after,
        created_before=created_before,
    )
    return EventPage(
        data=[_event(row) for row in rows], next_cursor=next_cursor, has_more=has_more
    )


@router.get(
    "/events/{event_id}",
    tags=["events"],
    operation_id="events_get",
    summary="Get an event",
    response_model=Event,
    responses=problem_responses(403, 404),
)
async def get_event(
    request: Request,
    event_id: str,
    principal: Principal = Depends(require("events:read")),
) -> Event:
    """Fetch one event by id."""
    row = await event_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("event", event_id, "event"),
    )
    return _event(row)


# Webhook endpoints


@router.post(
    "/webhook-endpoints",
    tags=["webhooks"],
    operation_id="webhook_endpoints_create",
    summary="Create a webhook endpoint",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookEndpointWithSecret,
    responses=problem_responses(403, 409, 413, 415),
)
async def create_webhook_endpoint(
    request: Request,
    response: Response,
    payload: WebhookEndpointCreate,
    principal: Principal = Depends(require("webhooks:manage")),
) -> WebhookEndpointWithSecret:
    """Create an endpoint; the response carries its signing secret, shown only once."""
    endpoint, secret = await webhook_endpoint_service.create(
        request.state.session,
        principal,
        payload,
        policy=_policy(request),
        max_endpoints=request.app.state.settings.webhook_max_endpoints_per_workspace,
    )
    set_etag(response, endpoint.version)
    response.headers["Location"] = _endpoint_location(endpoint)
    return WebhookEndpointWithSecret.model_validate(
        {**WebhookEndpoint.model_validate(endpoint).model_dump(), "secret": secret}
    )


@router.get(
    "/webhook-endpoints",
    tags=["webhooks"],
    operation_id="webhook_endpoints_list",
    summary="List webhook endpoints",
    response_model=Page[WebhookEndpoint],
    responses=problem_responses(403),
)
async def list_webhook_endpoints(
    request: Request,
    principal: Principal = Depends(require("webhooks:manage")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    enabled: Annotated[
        bool | None, Query(description="Only enabled or only disabled endpoints.")
    ] = None,
) -> Page[WebhookEndpoint]:
    """List webhook endpoints, newest first; secrets are never shown."""
    rows, next_cursor, has_more = await webhook_endpoint_service.list(
        request.state.session,
        principal.workspace_id,
        limit=limit,
        cursor=cursor,
        enabled=enabled,
    )
    return Page[WebhookEndpoint](
        data=[WebhookEndpoint.model_validate(row) for row in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@router.get(
    "/webhook-endpoints/{endpoint_id}",
    tags=["webhooks"],
    operation_id="webhook_endpoints_get",
    summary="Get a webhook endpoint",
    response_model=WebhookEndpoint,
    responses=problem_responses(403, 404),
)
async def get_webhook_endpoint(
    request: Request,
    response: Response,
    endpoint_id: str,
    principal: Principal = Depends(require("webhooks:manage")),
) -> WebhookEndpoint:
    """Fetch one webhook endpoint by id, without its secret."""
    endpoint = await webhook_endpoint_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("webhook_endpoint", endpoint_id, "webhook endpoint"),
    )
    set_etag(response, endpoint.version)
    return WebhookEndpoint.model_validate(endpoint)


@router.patch(
    "/webhook-endpoints/{endpoint_id}",
    tags=["webhooks"],
    operation_id="webhook_endpoints_update",
    summary="Update a webhook endpoint",
    response_model=WebhookEndpoint,
    responses=problem_responses(403, 404, 412, 413, 415),
)
async def update_webhook_endpoint(
    request: Request,
    response: Response,
    endpoint_id: str,
    payload: WebhookEndpointUpdate,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("webhooks:manage")),
) -> WebhookEndpoint:
    """Change an endpoint's URL, description, event types, headers or enabled state."""
    endpoint = await webhook_endpoint_service.update(
        request.state.session,
        principal,
        parse_path_id("webhook_endpoint", endpoint_id, "webhook endpoint"),
        payload,
        if_match=if_match,
        policy=_policy(request),
    )
    set_etag(response, endpoint.version)
    return WebhookEndpoint.model_validate(endpoint)


@router.delete(
    "/webhook-endpoints/{endpoint_id}",
    tags=["webhooks"],
    operation_id="webhook_endpoints_delete",
    summary="Delete a webhook endpoint",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(403, 404, 412),
)
async def delete_webhook_endpoint(
    request: Request,
    endpoint_id: str,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("webhooks:manage")),
) -> Response:
    """Delete an endpoint together with its deliveries and their attempts."""
    await webhook_endpoint_service.delete(
        request.state.session,
        principal,
        parse_path_id("webhook_endpoint", endpoint_id, "webhook endpoint"),
        if_match=if_match,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/webhook-endpoints/{endpoint_id}/rotate-secret",
    tags=["webhooks"],
    operation_id="webhook_endpoints_rotate_secret",
    summary="Rotate a webhook endpoint's signing secret",
    response_model=WebhookEndpointWithSecret,
    responses=problem_responses(403, 404, 409, 412, 413, 415),
)
async def rotate_webhook_secret(
    request: Request,
    response: Response,
    endpoint_id: str,
    payload: Annotated[WebhookSecretRotate | None, Body()] = None,
    if_match: IfMatch = None,
    principal: Principal = Depends(require("webhooks:manage")),
) -> WebhookEndpointWithSecret:
    """Issue a new secret, shown once; the previous one keeps signing for a while."""
    endpoint, secret = await webhook_endpoint_service.rotate_secret(
        request.state.session,
        principal,
        parse_path_id("webhook_endpoint", endpoint_id, "webhook endpoint"),
        payload or WebhookSecretRotate(),
        if_match=if_match,
    )
    set_etag(response, endpoint.version)
    return WebhookEndpointWithSecret.model_validate(
        {**WebhookEndpoint.model_validate(endpoint).model_dump(), "secret": secret}
    )


# Webhook deliveries


async def _delivery_shown(
    session: AsyncSession, delivery: WebhookDeliveryRow
) -> WebhookDeliveryWithAttempts:
    types = await webhook_delivery_service.event_types(session, [delivery])
    attempts = await webhook_delivery_service.latest_attempts(session, [delivery])
    return _delivery_with_attempts(
        delivery, types[delivery.event_id], attempts[delivery.id]
    )


async def _delivery_page(
    session: AsyncSession,
    rows: Sequence[WebhookDeliveryRow],
    next_cursor: str | None,
    has_more: bool,
) -> Page[WebhookDeliveryWithAttempts]:
    types = await webhook_delivery_service.event_types(session, rows)
    attempts = await webhook_delivery_service.latest_attempts(session, rows)
    return Page[WebhookDeliveryWithAttempts](
        data=[
            _delivery_with_attempts(row, types[row.event_id], attempts[row.id])
            for row in rows
        ],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@router.get(
    "/events/{event_id}/deliveries",
    tags=["events"],
    operation_id="events_list_deliveries",
    summary="List an event's webhook deliveries",
    response_model=Page[WebhookDeliveryWithAttempts],
    responses=problem_responses(403, 404),
)
async def list_event_deliveries(
    request: Request,
    event_id: str,
    principal: Principal = Depends(require("webhooks:manage")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[WebhookDeliveryWithAttempts]:
    """List the deliveries of one event to every endpoint, with their attempts."""
    session = request.state.session
    rows, next_cursor, has_more = await webhook_delivery_service.list_for_event(
        session,
        principal.workspace_id,
        parse_path_id("event", event_id, "event"),
        limit=limit,
        cursor=cursor,
    )
    return await _delivery_page(session, rows, next_cursor, has_more)


@router.get(
    "/webhook-endpoints/{endpoint_id}/deliveries",
    tags=["webhooks"],
    operation_id="webhook_endpoints_list_deliveries",
    summary="List an endpoint's deliveries",
    response_model=Page[WebhookDeliveryWithAttempts],
    responses=problem_responses(403, 404),
)
async def list_webhook_deliveries(
    request: Request,
    endpoint_id: str,
    principal: Principal = Depends(require("webhooks:manage")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    status: Annotated[
        DeliveryStatus | None, Query(description="Only this status.")
    ] = None,
    event_id: Annotated[
        str | None, Query(max_length=100, description="Only deliveries of this event.")
    ] = None,
) -> Page[WebhookDeliveryWithAttempts]:
    """List the deliveries of one endpoint, newest first, with their attempts."""
    session = request.state.session
    rows, next_cursor, has_more = await webhook_delivery_service.list_for_endpoint(
        session,
        principal.workspace_id,
        parse_path_id("webhook_endpoint", endpoint_id, "webhook endpoint"),
        limit=limit,
        cursor=cursor,
        status=status,
        event_id=_query_event_id(event_id) if event_id is not None else None,
    )
    return await _delivery_page(session, rows, next_cursor, has_more)


@router.get(
    "/webhook-deliveries/{delivery_id}",
    tags=["webhooks"],
    operation_id="webhook_deliveries_get",
    summary="Get a webhook delivery with its attempts",
    response_model=WebhookDeliveryWithAttempts,
    responses=problem_responses(403, 404),
)
async def get_webhook_delivery(
    request: Request,
    delivery_id: str,
    principal: Principal = Depends(require("webhooks:manage")),
) -> WebhookDeliveryWithAttempts:
    """Fetch one delivery and its last attempts, oldest first."""
    session = request.state.session
    delivery = await webhook_delivery_service.get(
        session,
        principal.workspace_id,
        parse_path_id("webhook_delivery", delivery_id, "webhook delivery"),
    )
    return await _delivery_shown(session, delivery)


@router.get(
    "/webhook-deliveries/{delivery_id}/attempts",
    tags=["webhooks"],
    operation_id="webhook_deliveries_list_attempts",
    summary="List a webhook delivery's attempts",
    response_model=Page[WebhookAttempt],
    responses=problem_responses(403, 404),
)
async def list_webhook_attempts(
    request: Request,
    delivery_id: str,
    principal: Principal = Depends(require("webhooks:manage")),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[WebhookAttempt]:
    """List every attempt made for a delivery, the last recorded first."""
    rows, next_cursor, has_more = await webhook_delivery_service.list_attempts(
        request.state.session,
        principal.workspace_id,
        parse_path_id("webhook_delivery", delivery_id, "webhook delivery"),
        limit=limit,
        cursor=cursor,
    )
    return Page[WebhookAttempt](
        data=[WebhookAttempt.model_validate(row) for row in rows],
        next_cursor=next_cursor,
        has_more=has_more,
    )


@router.post(
    "/webhook-deliveries/{delivery_id}/retry",
    tags=["webhooks"],
    operation_id="webhook_deliveries_retry",
    summary="Retry a webhook delivery",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WebhookDeliveryWithAttempts,
    responses=problem_responses(403, 404, 409),
)
async def retry_webhook_delivery(
    request: Request,
    delivery_id: str,
    principal: Principal = Depends(require("webhooks:manage")),
) -> WebhookDeliveryWithAttempts:
    """Send a delivery again now, with the same webhook-id and body."""
    session = request.state.session
    delivery = await webhook_delivery_service.retry(
        session,
        principal,
        parse_path_id("webhook_delivery", delivery_id, "webhook delivery"),
        max_attempts=request.app.state.settings.webhook_max_attempts,
    )
    return await _delivery_shown(session, delivery)


@router.post(
    "/webhook-endpoints/{endpoint_id}/send-test-event",
    tags=["webhooks"],
    operation_id="webhook_endpoints_send_test_event",
    summary="Send a test event to an endpoint",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WebhookDeliveryWithAttempts,
    responses=problem_responses(403, 404, 409, 413, 415),
)
async def send_test_event(
    request: Request,
    response: Response,
    endpoint_id: str,
    payload: TestEventCreate,
    principal: Principal = Depends(require("webhooks:manage")),
) -> WebhookDeliveryWithAttempts:
    """Queue a signed test event of any type to this endpoint only."""
    session = request.state.session
    delivery = await sample_event_service.send(
        session,
        principal,
        parse_path_id("webhook_endpoint", endpoint_id, "webhook endpoint"),
        payload.type,
    )
    response.headers["Location"] = (
        f"/v1/webhook-deliveries/{ids.encode('webhook_delivery', delivery.id)}"
    )
    return _delivery_with_attempts(delivery, payload.type, [])


@router.post(
    "/webhook-endpoints/{endpoint_id}/recover",
    tags=["webhooks"],
    operation_id="webhook_endpoints_recover",
    summary="Recover an endpoint's failed deliveries",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WebhookRecovery,
    responses=problem_responses(403, 404, 409, 413, 415),
)
async def recover_webhook_deliveries(
    request: Request,
    response: Response,
    endpoint_id: str,
    payload: WebhookRecoveryCreate,
    principal: Principal = Depends(require("webhooks:manage")),
) -> WebhookRecovery:
    """Send again, in a background job, every delivery that failed since a time,
    and with include_missing every event since then that the endpoint never had."""
    recovery = await webhook_recovery_service.create(
        request.state.session,
        principal,
        parse_path_id("webhook_endpoint", endpoint_id, "webhook endpoint"),
        payload.since,
        include_missing=payload.include_missing,
    )
    response.headers["Location"] = (
        f"/v1/webhook-recoveries/{ids.encode('webhook_recovery', recovery.id)}"
    )
    return WebhookRecovery.model_validate(recovery)


@router.get(
    "/webhook-recoveries/{recovery_id}",
    tags=["webhooks"],
    operation_id="webhook_recoveries_get",
    summary="Get a webhook recovery",
    response_model=WebhookRecovery,
    responses=problem_responses(403, 404),
)
async def get_webhook_recovery(
    request: Request,
    recovery_id: str,
    principal: Principal = Depends(require("webhooks:manage")),
) -> WebhookRecovery:
    """Fetch a recovery, to see whether its job has finished and how many it sent."""
    recovery = await webhook_recovery_service.get(
        request.state.session,
        principal.workspace_id,
        parse_path_id("webhook_recovery", recovery_id, "webhook recovery"),
    )
    return WebhookRecovery.model_validate(recovery)


# The catalogue


@router.get(
    "/meta/event-types",
    tags=["meta"],
    operation_id="meta_event_types",
    summary="List the event types",
    response_model=EventTypeList,
    responses=problem_responses(),
    openapi_extra=PUBLIC,
)
async def event_types() -> EventTypeList:
    """Return every event type that the event log records and webhooks deliver."""
    return EventTypeList(
        data=[
            EventTypeInfo(
                type=item.name,
                object_type=item.object_type,
                description=item.description,
            )
            for item in catalog.EVENT_TYPES
        ]
    )
