from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from app.core.money import MAX_AMOUNT, CurrencyCode, round_minor
from app.core.schemas import (
    CalendarDate,
    ContactId,
    CustomerId,
    InputModel,
    LeadId,
    LostReasonId,
    ObjectionId,
    OpportunityId,
    OutputModel,
    PipelineId,
    StageId,
    StageTransitionId,
    UserId,
    drop_null_from_schema,
)

OpportunityStatus = Literal["open", "won", "lost"]
OpportunitySort = Literal[
    "created_at",
    "-created_at",
    "amount",
    "-amount",
    "expected_close_date",
    "-expected_close_date",
]
# Opportunity fields a stage may require before an opportunity enters it. ``amount``
# counts as missing while it is 0; ``competitors`` while the list is empty.
RequiredField = Literal[
    "amount",
    "expected_close_date",
    "contact_id",
    "owner_id",
    "competitors",
    "lead_id",
    "probability_override",
]
ObjectionCategory = Literal[
    "price", "timing", "competitor", "authority", "need", "other"
]
ObjectionStatus = Literal["open", "resolved", "lost_on"]

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
Probability = Annotated[
    int, Field(strict=True, ge=0, le=100, description="Chance of winning in percent.")
]
OwnerId = Annotated[UserId, Field(description="The usr_ id of the sales rep.")]
Competitor = Annotated[str, Field(min_length=1, max_length=200)]
Competitors = Annotated[
    list[Competitor],
    Field(max_length=50, description="Names of competitors in the deal, unique."),
]
StageName = Annotated[str, Field(min_length=1, max_length=200)]
RottingDays = Annotated[
    int,
    Field(
        strict=True,
        ge=1,
        le=3650,
        description="Days without activity after which an open opportunity in the "
        "stage is rotting.",
    ),
]
RequiredFields = Annotated[
    list[RequiredField],
    Field(max_length=7, description="Fields an opportunity needs to enter the stage."),
]
Reason = Annotated[str, Field(min_length=1, max_length=1000)]
LostNote = Annotated[str, Field(min_length=1, max_length=2000)]
ObjectionText = Annotated[str, Field(min_length=1, max_length=4000)]

MAX_STAGES = 30


def _unique(values: list[str], what: str) -> list[str]:
    folded = [value.casefold() for value in values]
    repeated = sorted({value for value in values if folded.count(value.casefold()) > 1})
    if repeated:
        raise ValueError(f"{what} must be unique; repeated: {', '.join(repeated)}")
    return values


class Stage(OutputModel):
    object: Literal["stage"] = "stage"
    id: StageId
    pipeline_id: PipelineId
    name: str
    position: int = Field(description="Order within the pipeline, from 1.")
    probability: int = Field(description="Chance of winning in percent, 0 to 100.")
    is_won: bool
    is_lost: bool
    rotting_days: int | None = Field(
        description="Days without activity before an open opportunity in this stage "
        "is rotting; null when the stage never rots."
    )
    required_fields: list[RequiredField] = Field(
        description="Fields an opportunity needs to enter this stage."
    )


class Pipeline(OutputModel):
    object: Literal["pipeline"] = "pipeline"
    id: PipelineId
    name: str
    is_default: bool
    stages: list[Stage] = Field(description="Ordered by position.")
    archived_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime


class StageCreate(InputModel):
    name: StageName
    probability: Probability
    is_won: bool = False
    is_lost: bool = False
    rotting_days: RottingDays | None = None
    required_fields: RequiredFields = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> StageCreate:
        if self.is_won and self.is_lost:
            raise ValueError("a stage cannot be both won and lost")
        _unique(list(self.required_fields), "required_fields")
        return self


class PipelineStageCreate(StageCreate):
    position: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=MAX_STAGES,
        description="Where to insert the stage, from 1; later stages move down. "
        "A position past the end adds the stage last. When omitted, after the "
        "last open stage.",
    )


class PipelineCreate(InputModel):
    name: StageName
    is_default: bool = Field(
        default=False,
        description="Make this the workspace's default pipeline, in place of the "
        "current one.",
    )
    stages: list[StageCreate] = Field(
        min_length=3,
        max_length=MAX_STAGES,
        description="In order. Exactly one won stage, at least one lost stage and at "
        "least one open stage.",
    )


class PipelineUpdate(InputModel):
    name: StageName | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    is_default: Literal[True] | None = Field(
        default=None,
        json_schema_extra=drop_null_from_schema,
        description="Send true to make this the default pipeline.",
    )


class StageUpdate(InputModel):
    name: StageName | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    probability: Probability | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    is_won: bool | None = Field(default=None, json_schema_extra=drop_null_from_schema)
    is_lost: bool | None = Field(default=None, json_schema_extra=drop_null_from_schema)
    rotting_days: RottingDays | None = Field(
        default=None, description="Send null to stop the stage from rotting."
    )
    required_fields: RequiredFields | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )


class StageReorder(InputModel):
    stage_ids: list[StageId] = Field(
        min_length=1,
        max_length=MAX_STAGES,
        description="Every stage of the pipeline, once each, in the new order.",
    )


class LostReason(OutputModel):
    object: Literal["lost_reason"] = "lost_reason"
    id: LostReasonId
    name: str
    description: str | None
    active: bool = Field(description="Inactive reasons cannot be given to new losses.")
    version: int
    created_at: datetime
    updated_at: datetime


class LostReasonCreate(InputModel):
    name: StageName
    description: LostNote | None = None
    active: bool = True


class LostReasonUpdate(InputModel):
    name: StageName | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    description: LostNote | None = Field(default=None, description="Null clears it.")
    active: bool | None = Field(default=None, json_schema_extra=drop_null_from_schema)


class OpportunityCreate(InputModel):
    customer_id: CustomerId
    name: OpportunityName
    amount: Amount = 0
    currency: CurrencyCode | None = Field(
        default=None, description="The customer's currency when omitted."
    )
    contact_id: ContactId | None = Field(
        default=None, description="The primary contact, a contact of the same customer."
    )
    pipeline_id: PipelineId | None = Field(
        default=None,
        description="Start in the first open stage of this pipeline. Ignored when "
        "stage_id is sent.",
    )
    stage_id: StageId | None = Field(
        default=None,
        description="An open stage of any active pipeline. When omitted, the first "
        "open stage of pipeline_id, else of the default pipeline.",
    )
    expected_close_date: CalendarDate | None = None
    owner_id: OwnerId | None = Field(
        default=None,
        description="An active user. When omitted, the On-Behalf-Of user when it is a "
        "usr_ id.",
    )
    probability: Probability | None = Field(
        default=None, description="Overrides the stage's probability."
    )
    competitors: Competitors = Field(default_factory=list)

    @field_validator("competitors")
    @classmethod
    def _unique_competitors(cls, value: list[str]) -> list[str]:
        return _unique(value, "competitors")


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
    expected_close_date: CalendarDate | None = Field(
        default=None, description="Send null to clear it."
    )
    owner_id: OwnerId | None = Field(
        default=None, description="An active user. Send null to clear it."
    )
    probability: Probability | None = Field(
        default=None,
        description="Overrides the stage's probability. Send null to follow the "
        "stage's probability again.",
    )
    competitors: Competitors | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )

    @field_validator("competitors")
    @classmethod
    def _unique_competitors(cls, value: list[str] | None) -> list[str] | None:
        return value if value is None else _unique(value, "competitors")


class OpportunityMove(InputModel):
    stage_id: StageId = Field(description="A stage of the opportunity's pipeline.")
    lost_reason_id: LostReasonId | None = Field(
        default=None,
        description="An active lost reason. Required when moving to a lost stage, "
        "and rejected otherwise.",
    )
    lost_note: LostNote | None = Field(
        default=None, description="Free text on the loss; only with a lost stage."
    )


class OpportunityWin(InputModel):
    pass


class OpportunityLose(InputModel):
    lost_reason_id: LostReasonId = Field(description="An active lost reason.")
    lost_note: LostNote | None = None
    stage_id: StageId | None = Field(
        default=None,
        description="A lost stage of the opportunity's pipeline; the first one when "
        "omitted.",
    )


class OpportunityReopen(InputModel):
    reason: Reason = Field(description="Why the closed deal is open again; audited.")
    stage_id: StageId | None = Field(
        default=None,
        description="An open stage of the opportunity's pipeline. When omitted, the "
        "stage it was in before it closed.",
    )


def weighted_amount(amount: int, probability: int) -> int:
    """Return amount × probability / 100 in minor units, rounded half up.

    The product is exact in Decimal, so only the final division rounds: 1 cent at
    50 % is 1 (0.5 rounds up), 1 cent at 49 % is 0.
    """
    return round_minor(Decimal(amount) * Decimal(probability) / Decimal(100))


class Opportunity(OutputModel):
    object: Literal["opportunity"] = "opportunity"
    id: OpportunityId
    name: str
    customer_id: CustomerId
    contact_id: ContactId | None = Field(description="The primary contact.")
    lead_id: LeadId | None = Field(description="The source lead it was converted from.")
    pipeline_id: PipelineId
    stage_id: StageId
    status: OpportunityStatus
    amount: int = Field(description="In the currency's minor unit.")
    currency: str
    probability: int = Field(
        description="Win chance in percent: probability_override, else the stage's."
    )
    probability_override: int | None
    weighted_amount: int = Field(
        description="amount × probability / 100 in minor units, rounded half up."
    )
    expected_close_date: date | None
    owner_id: UserId | None
    competitors: list[str]
    stage_entered_at: datetime
    last_activity_at: datetime
    rotting: bool = Field(
        description="No activity for the stage's rotting_days while open."
    )
    rotting_since: datetime | None
    won_at: datetime | None
    lost_at: datetime | None
    lost_reason_id: LostReasonId | None
    lost_note: str | None
    version: int
    created_at: datetime
    updated_at: datetime

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, value: Any) -> Any:
        # An ORM row carries the stage's probability; the effective probability and
        # the weighted amount are derived from it here, in every response and event.
        if isinstance(value, dict) or not hasattr(value, "stage_probability"):
            return value
        names = [name for name in cls.model_fields if hasattr(value, name)]
        data = {name: getattr(value, name) for name in names}
        probability = value.probability_override
        if probability is None:
            probability = value.stage_probability
        data["probability"] = probability
        data["weighted_amount"] = weighted_amount(value.amount, probability)
        return data


class StageTransition(OutputModel):
    object: Literal["stage_transition"] = "stage_transition"
    id: StageTransitionId
    opportunity_id: OpportunityId
    from_stage_id: StageId | None = Field(
        description="Null on the first transition, when the opportunity was created."
    )
    to_stage_id: StageId
    from_status: OpportunityStatus | None
    to_status: OpportunityStatus
    at: datetime
    actor: str | None = Field(
        description="The On-Behalf-Of user, or the id (key_...) of the API key that moved it."
    )
    seconds_in_previous_stage: int | None = Field(
        description="Whole seconds spent in from_stage_id; null on the first."
    )
    reason: str | None = Field(description="The reason given when reopening.")
    opportunity_version: int = Field(
        description="The opportunity's version when it left from_stage_id; 0 at "
        "creation."
    )


class Objection(OutputModel):
    object: Literal["objection"] = "objection"
    id: ObjectionId
    opportunity_id: OpportunityId
    category: ObjectionCategory
    text: str
    status: ObjectionStatus
    resolution_notes: str | None
    blocking: bool = Field(description="While open, the opportunity cannot be won.")
    resolved_at: datetime | None
    created_by: str | None
    version: int
    created_at: datetime
    updated_at: datetime


class ObjectionCreate(InputModel):
    category: ObjectionCategory
    text: ObjectionText
    blocking: bool = False
    status: ObjectionStatus = "open"
    resolution_notes: ObjectionText | None = None


class ObjectionUpdate(InputModel):
    category: ObjectionCategory | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    text: ObjectionText | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    status: ObjectionStatus | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    resolution_notes: ObjectionText | None = Field(
        default=None, description="Send null to clear it."
    )
    blocking: bool | None = Field(default=None, json_schema_extra=drop_null_from_schema)
