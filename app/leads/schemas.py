from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from pydantic import AfterValidator, EmailStr, Field

from app.core.schemas import (
    ContactId,
    CustomerId,
    InputModel,
    LeadId,
    OpportunityId,
    OutputModel,
)

LeadStatus = Literal[
    "new",
    "working",
    "nurturing",
    "qualified",
    "disqualified",
    "junk",
    "converted",
    "merged",
]
LeadSource = Literal["web_form", "campaign", "partner", "import", "api", "referral"]

_TIMEZONES = frozenset(available_timezones())


def _check_timezone(value: str | None) -> str | None:
    if value is not None and value not in _TIMEZONES:
        raise ValueError(f"{value!r} is not an IANA time zone such as 'Europe/Berlin'")
    return value


TimeZone = Annotated[str, AfterValidator(_check_timezone)]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]


class LeadCreate(InputModel):
    email: EmailStr = Field(max_length=320)
    first_name: ShortText | None = None
    last_name: ShortText | None = None
    company: Annotated[str, Field(min_length=1, max_length=300)] | None = None
    title: ShortText | None = None
    phone: Annotated[str, Field(min_length=3, max_length=32)] | None = None
    timezone: TimeZone | None = None
    source: LeadSource = "api"
    owner_id: ShortText | None = None
    notes: Annotated[str, Field(max_length=10_000)] | None = None
    attributes: dict[str, Any] = Field(
        default_factory=dict, description="Custom fields, kept as given."
    )


class LeadUpdate(InputModel):
    email: EmailStr | None = Field(default=None, max_length=320)
    first_name: ShortText | None = None
    last_name: ShortText | None = None
    company: Annotated[str, Field(min_length=1, max_length=300)] | None = None
    title: ShortText | None = None
    phone: Annotated[str, Field(min_length=3, max_length=32)] | None = None
    timezone: TimeZone | None = None
    owner_id: ShortText | None = None
    notes: Annotated[str, Field(max_length=10_000)] | None = None
    attributes: dict[str, Any] | None = None
    status: LeadStatus | None = Field(
        default=None,
        description="Move the lead to another status; see GET /v1/meta/state-machines.",
    )


class Lead(OutputModel):
    object: Literal["lead"] = "lead"
    id: LeadId
    email: str
    email_normalized: str
    first_name: str | None
    last_name: str | None
    company: str | None
    title: str | None
    phone: str | None
    timezone: str | None
    source: str
    status: LeadStatus
    owner_id: str | None
    notes: str | None
    attributes: dict[str, Any]
    customer_id: CustomerId | None
    contact_id: ContactId | None
    opportunity_id: OpportunityId | None
    converted_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime
