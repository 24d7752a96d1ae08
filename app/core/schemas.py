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
    field_validator,
)

from app.core import ids


def check_storable_text(value: str) -> str:
    """Raise ``ValueError`` for text that PostgreSQL cannot store in a text column.

    JSON can carry U+0000 and unpaired UTF-16 surrogates (``"\\ud800"``), but
    PostgreSQL text can hold neither: the statement would fail with a server error.
    """
    if "\x00" in value:
        raise ValueError("text must not contain the NUL character U+0000")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError("text must not contain unpaired UTF-16 surrogates") from error
    return value


def _check_nested_text(value: Any) -> None:
    if isinstance(value, str):
        check_storable_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_nested_text(key)
            _check_nested_text(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_nested_text(item)


StorableText = Annotated[str, AfterValidator(check_storable_text)]


def drop_null_from_schema(schema: dict[str, Any]) -> None:
    """Remove ``null`` from an optional field's JSON schema, for ``json_schema_extra``.

    A PATCH field such as ``name`` may be omitted but not sent as null. Its Python type
    stays ``X | None``, so validation errors name the field plainly, and the service
    rejects an explicit null, while the published schema shows only ``X``.
    """
    if "default" in schema and schema["default"] is None:
        del schema["default"]
    variants = schema.pop("anyOf", None)
    if variants is None:
        return
    kept = [variant for variant in variants if variant.get("type") != "null"]
    if len(kept) == 1:
        schema.update(kept[0])
    else:
        schema["anyOf"] = kept


class InputModel(BaseModel):
    """A request body: unknown fields are rejected, strings are trimmed.

    Every string, also inside lists and dicts, is checked with ``check_storable_text``.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _reject_unstorable_text(cls, value: Any) -> Any:
        _check_nested_text(value)
        return value


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
