from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import Field

from app.core.money import MAX_AMOUNT, CurrencyCode
from app.core.schemas import (
    ContactId,
    CustomerId,
    InputModel,
    LeadId,
    OpportunityId,
    OutputModel,
    PipelineId,
    StageId,
    drop_null_from_schema,
)

OpportunityStatus = Literal["open", "won", "lost"]

OpportunityName = Annotated[str, Field(min_length=1, max_length=300)]
Amount = Annotated[
    int,
    Field(
        strict=True,
        ge=0,
        le=MAX_AMOUNT,
        description="A JSON integer in the currency's minor unit: 1999 with USD is "
        "19.99 USD.",
    ),
]
OwnerId = Annotated[
    str, Field(min_length=1, max_length=200, description="User id of the sales rep.")
]
LostReason = Annotated[str, Field(min_length=1, max_length=200)]


class Stage(OutputModel):
    object: Literal["stage"] = "stage"
    id: StageId
    pipeline_id: PipelineId
    name: str
    position: int = Field(description="Order within the pipeline, from 1.")
    probability: int = Field(description="Chance of winning in percent, 0 to 100.")
    is_won: bool
    is_lost: bool


class Pipeline(OutputModel):
    object: Literal["pipeline"] = "pipeline"
    id: PipelineId
    name: str
    is_default: bool
    stages: list[Stage] = Field(description="Ordered by position.")
    created_at: datetime
    updated_at: datetime


class OpportunityCreate(InputModel):
    customer_id: CustomerId
    name: OpportunityName
    amount: Amount = 0
    currency: CurrencyCode | None = Field(
        default=None, description="The customer's currency when omitted."
    )
    contact_id: ContactId | None = Field(
        default=None, description="A contact of the same customer."
    )
    stage_id: StageId | None = Field(
        default=None,
        description="An open stage of any pipeline, the first stage of the default "
        "pipeline when omitted.",
    )
    expected_close_date: date | None = None
    owner_id: OwnerId | None = Field(
        default=None, description="The On-Behalf-Of user when omitted."
    )


class OpportunityUpdate(InputModel):
    name: OpportunityName | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    amount: Amount | None = Field(default=None, json_schema_extra=drop_null_from_schema)
    currency: CurrencyCode | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    contact_id: ContactId | None = Field(
        default=None,
        description="A contact of the same customer. Send null to clear it.",
    )
    expected_close_date: date | None = Field(
        default=None, description="Send null to clear it."
    )
    owner_id: OwnerId | None = Field(default=None, description="Send null to clear it.")


class OpportunityMove(InputModel):
    stage_id: StageId = Field(description="A stage of the opportunity's pipeline.")
    lost_reason: LostReason | None = Field(
        default=None,
        description="Why the deal was lost. Required when moving to the lost stage, and "
        "rejected otherwise.",
    )


class OpportunityReopen(InputModel):
    stage_id: StageId | None = Field(
        default=None,
        description="An open stage of the opportunity's pipeline. When omitted, the "
        "stage it was in before it closed.",
    )


class Opportunity(OutputModel):
    object: Literal["opportunity"] = "opportunity"
    id: OpportunityId
    name: str
    customer_id: CustomerId
    contact_id: ContactId | None
    lead_id: LeadId | None = Field(description="The lead this was converted from.")
    pipeline_id: PipelineId
    stage_id: StageId
    status: OpportunityStatus
    amount: int = Field(description="In the currency's minor unit.")
    currency: str
    expected_close_date: date | None
    owner_id: str | None
    won_at: datetime | None
    lost_at: datetime | None
    lost_reason: str | None
    version: int
    created_at: datetime
    updated_at: datetime


class StageTransition(OutputModel):
    object: Literal["stage_transition"] = "stage_transition"
    opportunity_id: OpportunityId
    from_stage_id: StageId | None = Field(
        description="Null on the first transition, when the opportunity was created."
    )
    to_stage_id: StageId
    at: datetime
    actor: str | None = Field(
        description="The On-Behalf-Of user, or api_key:<id> of the key that moved it."
    )
