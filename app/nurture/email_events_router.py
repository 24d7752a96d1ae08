"""``/v1/email-events``: engagement events posted by an email service, and their secret."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import ValidationError

from app.core import ids
from app.core.auth import Principal, require
from app.core.errors import InvalidInput, validation_field_errors
from app.core.openapi import problem_responses
from app.core.routing import SignedWebhookRoute, UnitOfWorkRoute
from app.nurture.email_event_schemas import (
    EmailEventReceipt,
    EmailEventSecret,
    GenericEmailEvent,
)
from app.nurture.email_events import (
    check_provider,
    email_event_secret_service,
    email_event_service,
    signature_headers,
)

secrets_router = APIRouter(route_class=UnitOfWorkRoute, tags=["email events"])
events_router = APIRouter(route_class=SignedWebhookRoute, tags=["email events"])

_HEADER_DESCRIPTIONS = {
    "webhook-id": "The Standard Webhooks message id.",
    "webhook-timestamp": "Unix seconds when the request was signed; at most 5 "
    "minutes from the server's clock.",
    "webhook-signature": "Space-separated `v1,<base64 HMAC-SHA256>` signatures of "
    "`{webhook-id}.{webhook-timestamp}.{raw body}`.",
}
_EVENT_BODY = {
    "requestBody": {
        "required": True,
        "description": "One event; the signature covers these bytes exactly.",
        "content": {
            "application/json": {"schema": GenericEmailEvent.model_json_schema()}
        },
    },
    "parameters": [
        {
            "name": name,
            "in": "header",
            "required": True,
            "description": description,
            "schema": {"type": "string"},
        }
        for name, description in _HEADER_DESCRIPTIONS.items()
    ],
    "security": [],
}


@secrets_router.post(
    "/email-event-secrets",
    operation_id="email_event_secrets_rotate",
    summary="Create or rotate the email event secret",
    response_model=EmailEventSecret,
    responses={
        201: {"model": EmailEventSecret, "description": "The first secret."},
        **problem_responses(403),
    },
)
async def rotate_email_event_secret(
    request: Request,
    response: Response,
    principal: Principal = Depends(require("nurture:write")),
) -> EmailEventSecret:
    """Issue a new signing secret; the one it replaces stays valid for 24 hours."""
    secret, created = await email_event_secret_service.rotate(
        request.state.session, principal
    )
    if created:
        response.status_code = status.HTTP_201_CREATED
    return secret


def _workspace(value: str | None) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return ids.decode("workspace", value)
    except ids.InvalidId:
        return None


@events_router.post(
    "/email-events/{provider}",
    operation_id="email_events_receive",
    summary="Receive an email-service event",
    response_model=EmailEventReceipt,
    responses=problem_responses(401, 404, 413, 422),
    openapi_extra=_EVENT_BODY,
)
async def receive_email_event(
    request: Request,
    provider: str,
    workspace_id: Annotated[
        str | None,
        Query(
            max_length=40,
            description="The workspace whose secret signs the events, as in the "
            "endpoint_path of the secret.",
        ),
    ] = None,
) -> EmailEventReceipt:
    """Verify the Standard Webhooks signature, store the event once, record it."""
    check_provider(provider)
    session = request.state.session
    workspace = _workspace(workspace_id)
    body = await request.body()
    await email_event_service.verify(
        session, workspace, signature_headers(request.headers), body
    )
    assert workspace is not None
    try:
        event = GenericEmailEvent.model_validate_json(body)
    except ValidationError as error:
        errors = validation_field_errors(error.errors())
        raise InvalidInput(
            "The email event is invalid: "
            + "; ".join(f"{item['field']}: {item['message']}" for item in errors),
            errors=errors,
        ) from error
    return await email_event_service.receive(session, workspace, provider, event)
