from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import Field

from app.core.schemas import (
    CalendarDate,
    InputModel,
    InvoiceId,
    OpportunityId,
    OutputModel,
    ProposalId,
    ProposalLineId,
    drop_null_from_schema,
)
from app.opportunities.line_item_schemas import Lines, PricedLine

ProposalStatus = Literal["draft", "sent", "accepted", "rejected", "expired"]
Terms = Annotated[str, Field(max_length=20_000)]
Reason = Annotated[str, Field(min_length=1, max_length=500)]


class ProposalCreate(InputModel):
    valid_until: CalendarDate = Field(
        description="The last day the customer can accept, in the customer's time "
        "zone; today or later."
    )
    terms: Terms | None = None
    lines: Lines | None = Field(
        default=None,
        description="The proposal's lines. When omitted, the opportunity's line "
        "items are copied.",
    )


class ProposalUpdate(InputModel):
    """Changes to a draft proposal; ``lines``, when sent, replace every line."""

    valid_until: CalendarDate | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    terms: Terms | None = Field(default=None, description="Send null to clear it.")
    lines: Lines | None = Field(default=None, json_schema_extra=drop_null_from_schema)


class ProposalAccept(InputModel):
    win_opportunity: bool = Field(
        default=True,
        description="Also move the opportunity to its pipeline's won stage and "
        "create a draft invoice with the proposal's lines, in the same "
        "transaction. Needs the billing:write scope.",
    )


class ProposalReject(InputModel):
    reason: Reason | None = Field(default=None, description="Why the customer said no.")


class ProposalLine(PricedLine):
    object: Literal["proposal_line"] = "proposal_line"
    id: ProposalLineId


class Proposal(OutputModel):
    object: Literal["proposal"] = "proposal"
    id: ProposalId
    opportunity_id: OpportunityId
    status: ProposalStatus = Field(
        description="expired is a sent proposal whose valid_until has passed in "
        "its time zone."
    )
    currency: str
    terms: str | None
    valid_until: date
    timezone: str = Field(description="The customer's time zone at creation.")
    lines: list[ProposalLine]
    subtotal: int = Field(description="The sum of amount - discount over the lines.")
    discount_total: int
    tax_total: int
    total: int = Field(description="subtotal + tax_total.")
    sent_at: datetime | None
    accepted_at: datetime | None
    rejected_at: datetime | None
    rejection_reason: str | None
    invoice_id: InvoiceId | None = Field(
        description="The draft invoice created when it was accepted."
    )
    version: int
    created_at: datetime
    updated_at: datetime
