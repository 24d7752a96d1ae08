"""Pydantic building blocks shared by every feature's schemas."""

from __future__ import annotations

import math
import re
import uuid
from datetime import date, datetime
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

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


# Deeper documents are rejected: no field of the API nests this far, and walking them
# would approach Python's recursion limit.
MAX_JSON_DEPTH = 64


def check_storable_json(value: Any, depth: int = 0) -> None:
    """Raise ``ValueError`` for a decoded JSON value that PostgreSQL's jsonb rejects.

    Besides the text rules of ``check_storable_text``, jsonb has no NaN or infinity,
    which Python's JSON parser accepts as ``NaN``, ``Infinity`` or ``1e400``.
    """
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"JSON must not nest deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        check_storable_text(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(
                "numbers must be finite: NaN and infinity cannot be stored"
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            check_storable_json(key, depth + 1)
            check_storable_json(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            check_storable_json(item, depth + 1)


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


def _json_types(annotation: Any) -> set[Any]:
    """Return the plain types a field accepts, with Annotated, Optional and unions opened."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _json_types(get_args(annotation)[0])
    if origin in (Union, UnionType):
        return set().union(*(_json_types(arg) for arg in get_args(annotation)))
    return {annotation}


class InputModel(BaseModel):
    """A request body: unknown fields are rejected, strings are trimmed.

    Every string, also inside lists and dicts, is checked with ``check_storable_text``.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _reject_coercion(cls, value: Any, info: ValidationInfo) -> Any:
        # Pydantic's lax mode turns true into 1, "5" into 5 and 2.0 into 2. A JSON API
        # should reject those, so integer and boolean fields take only their own type.
        if info.field_name is None:
            return value
        types = _json_types(cls.model_fields[info.field_name].annotation) - {
            None,
            type(None),
        }
        if types == {int} and (isinstance(value, bool) or not isinstance(value, int)):
            if value is not None:
                raise PydanticCustomError("int_type", "Input should be a JSON integer")
        if types == {bool} and value is not None and not isinstance(value, bool):
            raise PydanticCustomError("bool_type", "Input should be true or false")
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _reject_unstorable_text(cls, value: Any) -> Any:
        check_storable_json(value)
        return value


class OutputModel(BaseModel):
    """A response body, built from ORM rows."""

    model_config = ConfigDict(from_attributes=True)


# A system zoneinfo folder also contains localtime (the machine's own zone) and
# posixrules, which are files there but not IANA zone names.
_TIMEZONES = frozenset(available_timezones()) - {"localtime", "posixrules"}


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
LeadImportId = _id_type("lead_import")
SequenceId = _id_type("sequence")
SequenceStepId = _id_type("sequence_step")
EnrollmentId = _id_type("enrollment")
HolidayCalendarId = _id_type("holiday_calendar")
EnrollmentJobId = _id_type("enrollment_job")
CustomerId = _id_type("customer")
ContactId = _id_type("contact")
PipelineId = _id_type("pipeline")
StageId = _id_type("stage")
OpportunityId = _id_type("opportunity")
StageTransitionId = _id_type("stage_transition")
ObjectionId = _id_type("objection")
LostReasonId = _id_type("lost_reason")
InvoiceId = _id_type("invoice")
InvoiceLineId = _id_type("invoice_line")
PaymentId = _id_type("payment")
TaxRateId = _id_type("tax_rate")
DunningPolicyId = _id_type("dunning_policy")
DunningReminderId = _id_type("dunning_reminder")
PromiseToPayId = _id_type("promise_to_pay")
CreditNoteId = _id_type("credit_note")
CreditNoteLineId = _id_type("credit_note_line")
CustomerCreditTransactionId = _id_type("customer_credit_transaction")
RefundId = _id_type("refund")
DisputeId = _id_type("dispute")
ReconciliationRunId = _id_type("reconciliation_run")
InvoiceSendId = _id_type("invoice_send")
BillingProfileId = _id_type("billing_profile")
EventId = _id_type("event")
WebhookEndpointId = _id_type("webhook_endpoint")
WebhookDeliveryId = _id_type("webhook_delivery")
WebhookRecoveryId = _id_type("webhook_recovery")
CampaignId = _id_type("campaign")
PartnerId = _id_type("partner")
FormId = _id_type("form")
TouchId = _id_type("touch")
CustomFieldId = _id_type("custom_field")
ScoringRuleId = _id_type("scoring_rule")
EngagementId = _id_type("engagement")
EmailEventId = _id_type("email_event")
UserId = _id_type("user")
TeamId = _id_type("team")
AssignmentRuleId = _id_type("assignment_rule")
LeadAssignmentId = _id_type("lead_assignment")
ActivityId = _id_type("activity")
OfferId = _id_type("offer")
OfferCodeId = _id_type("offer_code")
ProductId = _id_type("product")
LineItemId = _id_type("line_item")
ProposalId = _id_type("proposal")
ProposalLineId = _id_type("proposal_line")


_RFC3339 = re.compile(
    # The offset is optional here so that AwareDatetime reports its absence.
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})?$"
)


# The years a timestamp or date in a request may have.
MIN_YEAR = 1900
MAX_YEAR = 9998


def _require_rfc3339(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError(
            "expected an RFC 3339 timestamp with an offset, such as 2026-12-04T10:00:00Z"
        )
    return value


def _check_range(value: datetime) -> datetime:
    # Years 1 and 9999 can leave datetime's range when moved to UTC, so an offset there
    # would fail later. No sales record predates 1900, so the range loses nothing.
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"expected a year from {MIN_YEAR} to {MAX_YEAR}")
    return value


def _check_date_range(value: date) -> date:
    # A day next to date's limits leaves its range once a day is added or a time zone
    # applied. No sales record predates 1900, so the range loses nothing.
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"expected a date from {MIN_YEAR}-01-01 to {MAX_YEAR}-12-31")
    return value


CalendarDate = Annotated[date, AfterValidator(_check_date_range)]
"""A calendar date YYYY-MM-DD in the years 1900 to 9998."""

Timestamp = Annotated[
    AwareDatetime, BeforeValidator(_require_rfc3339), AfterValidator(_check_range)
]
"""An RFC 3339 timestamp with an offset; a bare number or a naive time is rejected."""
