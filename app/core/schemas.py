"""Pydantic building blocks shared by every feature's schemas."""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    WithJsonSchema,
)

from app.core import ids


class InputModel(BaseModel):
    """A request body: unknown fields are rejected, strings are trimmed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OutputModel(BaseModel):
    """A response body, built from ORM rows."""

    model_config = ConfigDict(from_attributes=True)


_TIMEZONES = frozenset(available_timezones())


def _check_timezone(value: str) -> str:
    if value not in _TIMEZONES:
        raise ValueError(f"{value!r} is not an IANA time zone such as 'Europe/Berlin'")
    return value


TimeZone = Annotated[str, AfterValidator(_check_timezone)]


def _parser(kind: str) -> Any:
    def parse(value: Any) -> Any:
        if isinstance(value, uuid.UUID):
            return value
        if isinstance(value, str):
            return ids.decode(kind, value)
        raise ValueError(f"expected a {ids.PREFIXES[kind]}_ id string")

    return parse


def _id_type(kind: str) -> Any:
    prefix = ids.PREFIXES[kind]
    return Annotated[
        uuid.UUID,
        BeforeValidator(_parser(kind)),
        PlainSerializer(lambda value: ids.encode(kind, value), return_type=str),
        WithJsonSchema(
            {
                "type": "string",
                "pattern": f"^{prefix}_[0-7][0-9a-hjkmnp-tv-z]{{25}}$",
                "examples": [
                    ids.encode(kind, uuid.UUID(int=0x0193_8E5A_8C2B_7A1E << 64))
                ],
            }
        ),
    ]


WorkspaceId = _id_type("workspace")
ApiKeyId = _id_type("api_key")
LeadId = _id_type("lead")
SequenceId = _id_type("sequence")
SequenceStepId = _id_type("sequence_step")
EnrollmentId = _id_type("enrollment")
CustomerId = _id_type("customer")
ContactId = _id_type("contact")
PipelineId = _id_type("pipeline")
StageId = _id_type("stage")
OpportunityId = _id_type("opportunity")
InvoiceId = _id_type("invoice")
InvoiceLineId = _id_type("invoice_line")
PaymentId = _id_type("payment")
EventId = _id_type("event")
WebhookEndpointId = _id_type("webhook_endpoint")
WebhookDeliveryId = _id_type("webhook_delivery")
