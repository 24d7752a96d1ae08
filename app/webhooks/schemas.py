from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from app.core import ids
from app.core.errors import quoted
from app.core.schemas import (
    EventId,
    InputModel,
    OutputModel,
    Timestamp,
    WebhookDeliveryId,
    WebhookEndpointId,
    WebhookRecoveryId,
)
from app.settings import MAX_WEBHOOK_ATTEMPTS
from app.webhooks import catalog

DeliveryStatus = Literal["pending", "succeeded", "failed"]
MAX_EVENT_TYPES = 100
MAX_GRACE_SECONDS = 7 * 86_400
# A delivery shows its last attempts: all of them unless retried by hand past the
# most a delivery may be given. Its attempts list pages through every one.
SHOWN_ATTEMPTS = MAX_WEBHOOK_ATTEMPTS


def encode_object_id(object_type: str, object_id: uuid.UUID) -> str:
    """Render an event's object id with the prefix of its object type."""
    if object_type in ids.PREFIXES:
        return ids.encode(object_type, object_id)
    return str(object_id)


def _check_pattern(value: str) -> str:
    if not catalog.is_valid_pattern(value):
        # The same code as an unknown type in the event log's filter.
        raise PydanticCustomError(
            "unknown_event_type",
            "{value} is not an event type. Use a type from GET /v1/meta/event-types, "
            "'<object_type>.*' such as 'invoice.*', or '*'",
            {"value": quoted(value)},
        )
    return value


def _dedupe(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


EventTypePattern = Annotated[str, AfterValidator(_check_pattern)]
EventTypePatterns = Annotated[
    list[EventTypePattern],
    Field(
        min_length=1,
        max_length=MAX_EVENT_TYPES,
        description="Event types to receive: exact types, '<object_type>.*' or '*'.",
        examples=[["invoice.*", "payment.succeeded"]],
    ),
    AfterValidator(_dedupe),
]
WebhookUrl = Annotated[
    str,
    Field(
        min_length=1,
        max_length=2048,
        description="An http:// or https:// URL that resolves to public addresses.",
        examples=["https://example.com/webhooks/salescycle"],
    ),
]
Description = Annotated[str, Field(max_length=500)]

MAX_HEADERS = 20
MAX_HEADER_VALUE_LENGTH = 1000
# Headers the sender sets itself, or that HTTP/1.1 framing owns.
RESERVED_HEADERS = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-type",
        "content-length",
        "content-encoding",
        "host",
        "user-agent",
        "expect",
    }
)
# Headers of one connection or one proxy hop, which a proxy
# between the worker and the receiver would consume or drop.
HOP_BY_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# A header name is an RFC 9110 token.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}$")
# A header value is visible ASCII, spaces and tabs, as RFC 9110 defines it.
_HEADER_VALUE = re.compile(r"^[\t\x20-\x7e]*$")


def _header_value_fault(name: str, value: str) -> str | None:
    """Return why ``value`` cannot be sent as the value of header ``name``, or None."""
    if len(value) > MAX_HEADER_VALUE_LENGTH:
        return (
            f"the value of {name!r} is longer than {MAX_HEADER_VALUE_LENGTH} "
            "characters; shorten it"
        )
    if _HEADER_VALUE.match(value):
        return None
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        return (
            f"the value of {name!r} contains control characters such as line "
            "breaks; remove them"
        )
    return (
        f"the value of {name!r} contains characters outside ASCII; percent-encode "
        "or base64-encode it"
    )


def _check_headers(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_HEADERS:
        raise ValueError(
            f"at most {MAX_HEADERS} headers are accepted, not {len(value)}; remove "
            "the ones the receiver does not need"
        )
    seen: set[str] = set()
    for name, header_value in value.items():
        if not _HEADER_NAME.match(name):
            raise ValueError(
                f"{quoted(name)} is not a valid header name; use 1 to 100 ASCII letters, "
                "digits and hyphens, such as X-Api-Key"
            )
        lowered = name.lower()
        if lowered in RESERVED_HEADERS:
            raise ValueError(
                f"{name!r} is set by salescycle and cannot be replaced; remove it"
            )
        if lowered in HOP_BY_HOP_HEADERS:
            raise ValueError(
                f"{name!r} applies to one connection or proxy hop, so it would not "
                "reach the receiver; send the receiver's credentials in another header"
            )
        if lowered in seen:
            raise ValueError(
                f"{name!r} is given twice, in different case; header names ignore "
                "case, so keep one"
            )
        seen.add(lowered)
        fault = _header_value_fault(name, header_value)
        if fault is not None:
            raise ValueError(fault)
    return value


def _reject_padded_names(value: Any) -> Any:
    """Reject header names with spaces around them, before strings are trimmed: two
    names that differ only there would become one, and one value would be lost."""
    if isinstance(value, dict):
        for name in value:
            if isinstance(name, str) and name != name.strip():
                raise ValueError(
                    f"the header name {quoted(name)} has spaces around it; remove them"
                )
    return value


CustomHeaders = Annotated[
    dict[str, str],
    BeforeValidator(_reject_padded_names),
    Field(
        description="Extra headers sent with every request to the endpoint, such as "
        "an authorization token the receiver expects. At most 20, with values of "
        "printable ASCII; the webhook-* headers, Content-Type, Host and User-Agent "
        "cannot be replaced, and hop-by-hop headers such as Connection and "
        "Proxy-Authorization are not accepted.",
        examples=[{"Authorization": "Bearer 4f3c…"}],
    ),
    AfterValidator(_check_headers),
]


# Shared by the event log's schema and the webhook payload's.
REQUEST_ID_DESCRIPTION = (
    "X-Request-Id of the API request that caused the event, also when a job it queued "
    "made the change; null for work the worker started on its own."
)
ACTOR_DESCRIPTION = (
    "API key (key_…) or user that caused the event, or 'system' for work "
    "the worker started without one. Some work names its source instead, "
    "such as provider:stripe or enrollment:enr_…. Null when none is known."
)


class Event(OutputModel):
    object: Literal["event"] = "event"
    id: EventId
    type: str = Field(examples=["invoice.paid"])
    object_type: str = Field(examples=["invoice"])
    object_id: str = Field(
        description="Id of the object, with the prefix of its object_type.",
        examples=["inv_01jf3v8a5ktq2m7x9c4b6d8e0g"],
    )
    sequence: int = Field(
        description="Counts the events of one object from 1; drop an event whose "
        "sequence is not above the last one it applied."
    )
    data: dict[str, Any] = Field(description="The object's full state after the event.")
    request_id: str | None = Field(description=REQUEST_ID_DESCRIPTION)
    actor: str | None = Field(description=ACTOR_DESCRIPTION)
    test: bool = Field(
        default=False,
        description="True for a test event sent to one endpoint; GET /v1/events "
        "leaves those out.",
    )
    created_at: datetime


class EventPage(BaseModel):
    """One page of the event log, and the cursor of the next."""

    data: list[Event]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= to fetch the next page. Newest first, null on "
        "the last page. Oldest first (order=asc), set on every page, the last one "
        "too, so that a consumer polls with it for newer events."
    )
    has_more: bool


class WebhookEndpointCreate(InputModel):
    url: WebhookUrl
    description: Description | None = None
    event_types: EventTypePatterns
    enabled: bool = True
    headers: CustomHeaders = Field(default_factory=dict)


class WebhookEndpointUpdate(InputModel):
    url: WebhookUrl | None = None
    description: Description | None = None
    event_types: EventTypePatterns | None = None
    headers: CustomHeaders | None = Field(
        default=None, description="Replaces every custom header; {} removes them."
    )
    enabled: bool | None = Field(
        default=None, description="Enabling an endpoint clears its disabled_reason."
    )


class WebhookSecretRotate(InputModel):
    previous_secret_expires_in: int = Field(
        default=86_400,
        ge=0,
        le=MAX_GRACE_SECONDS,
        description="Seconds the previous secret keeps signing alongside the new "
        "one; 0 retires it at once.",
    )


class WebhookEndpoint(OutputModel):
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    id: WebhookEndpointId
    url: str
    description: str | None
    event_types: list[str]
    headers: dict[str, str] = Field(
        description="Extra headers sent with every request. In the data of "
        "webhook_endpoint events every value reads '[redacted]'."
    )
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why the endpoint was disabled: 'manual', 'gone' (it responded "
        "410) or 'failing' (every attempt failed for days)."
    )
    failing_since: datetime | None = Field(
        description="When the first failed attempt since the last success was made; "
        "null while the endpoint is healthy. An endpoint failing for "
        "SALESCYCLE_WEBHOOK_DISABLE_AFTER_FAILING_SECONDS (5 days by default) is "
        "disabled with the reason 'failing'."
    )
    previous_secret_expires_at: datetime | None = Field(
        description="Until then, requests are also signed with the previous secret."
    )
    version: int
    created_at: datetime
    updated_at: datetime


class WebhookEndpointWithSecret(WebhookEndpoint):
    secret: str = Field(
        description="The signing secret, shown only in this response. Store it now.",
        examples=["whsec_Ko6I68OGHmMwHNDRvqyNVv4E4v/UBb0cEUwVLRo9km8="],
    )


class WebhookAttempt(OutputModel):
    attempted_at: datetime
    status_code: int | None = Field(description="HTTP status; null if none arrived.")
    error: str | None
    duration_ms: int
    response_excerpt: str | None = Field(
        description="The first bytes of the response body."
    )


class WebhookDelivery(OutputModel):
    object: Literal["webhook_delivery"] = "webhook_delivery"
    id: WebhookDeliveryId = Field(
        description="Sent as the webhook-id header, the same on every attempt."
    )
    endpoint_id: WebhookEndpointId
    event_id: EventId
    event_type: str
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class WebhookDeliveryWithAttempts(WebhookDelivery):
    attempts: list[WebhookAttempt] = Field(
        description=(
            f"The last {SHOWN_ATTEMPTS} attempts, oldest first. attempt_count counts "
            "every attempt; "
            "GET /v1/webhook-deliveries/{delivery_id}/attempts lists them all."
        )
    )


class TestEventCreate(InputModel):
    type: str = Field(
        max_length=100,
        description="The event type to send, from GET /v1/meta/event-types.",
        examples=["invoice.paid"],
    )


class WebhookRecoveryCreate(InputModel):
    since: Timestamp = Field(
        description="Send again the failed deliveries created at or after this time."
    )
    include_missing: bool = Field(
        default=False,
        description="Also send each event emitted since then that the endpoint "
        "subscribes to and never had a delivery of, such as the events emitted while "
        "it was disabled, or before it was created.",
    )


class WebhookRecovery(OutputModel):
    object: Literal["webhook_recovery"] = "webhook_recovery"
    id: WebhookRecoveryId
    endpoint_id: WebhookEndpointId
    since: datetime
    status: Literal["pending", "succeeded"] = Field(
        description="pending while the job works through the deliveries."
    )
    recovered_count: int = Field(
        description="Failed deliveries queued again so far, each for one more attempt."
    )
    include_missing: bool
    missing_count: int = Field(
        description="Deliveries created so far for events the endpoint never had."
    )
    created_at: datetime
    completed_at: datetime | None


class EventTypeInfo(BaseModel):
    type: str
    object_type: str
    description: str


class EventTypeList(BaseModel):
    data: list[EventTypeInfo]
