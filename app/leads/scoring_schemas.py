from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import Field, model_validator

from app.core.schemas import (
    EngagementId,
    EnrollmentId,
    InputModel,
    LeadId,
    OutputModel,
    ScoringRuleId,
    Timestamp,
)
from app.customfields.values import is_number

EngagementType = Literal[
    "email_opened",
    "email_clicked",
    "replied",
    "form_submitted",
    "webinar_registered",
    "webinar_attended",
    "meeting_booked",
    "page_visited",
    "email_bounced",
    "unsubscribed",
]
RuleKind = Literal["field", "engagement"]
Operator = Literal["equals", "not_equals", "in", "contains", "exists", "gt", "lt"]

# The lead fields a field rule may test, besides attributes.<key>.
RULE_FIELDS = (
    "email_normalized",
    "first_name",
    "last_name",
    "company",
    "title",
    "phone",
    "timezone",
    "source",
    "status",
    "owner_id",
    "tags",
)
RuleField = Annotated[
    str,
    Field(
        pattern=r"^(" + "|".join(RULE_FIELDS) + r"|attributes\.[a-z][a-z0-9_]{0,63})$",
        description="A lead field (" + ", ".join(RULE_FIELDS) + ") or "
        "attributes.<key>.",
    ),
]
Points = Annotated[int, Field(ge=-10_000, le=10_000)]
Days = Annotated[int, Field(ge=1, le=3650)]


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bool) or is_number(value)


class ScoringRuleCreate(InputModel):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    kind: RuleKind
    points: Points = Field(
        description="Points for a match, or per engagement; negative ones subtract."
    )
    field: RuleField | None = Field(default=None, description="Field rules only.")
    operator: Operator | None = Field(default=None, description="Field rules only.")
    value: Any = Field(
        default=None,
        description="What the operator compares with: a string, number or boolean; a "
        "list for in; a number for gt and lt; true or false (default true) for exists.",
    )
    event_type: EngagementType | None = Field(
        default=None, description="Engagement rules only."
    )
    max_count: Annotated[int, Field(ge=1, le=10_000)] | None = Field(
        default=None, description="Count at most this many of the latest engagements."
    )
    half_life_days: Days | None = Field(
        default=None,
        description="Each engagement's points halve every this many days.",
    )
    expires_after_days: Days | None = Field(
        default=None,
        description="Each engagement's points drop to 0 this many days after it.",
    )

    @model_validator(mode="after")
    def _check_kind(self) -> Self:
        if self.kind == "field":
            self._check_field_rule()
        else:
            self._check_engagement_rule()
        return self

    def _check_field_rule(self) -> None:
        if self.field is None or self.operator is None:
            raise ValueError("a field rule needs field and operator")
        engagement_only = (
            self.event_type,
            self.max_count,
            self.half_life_days,
            self.expires_after_days,
        )
        if any(item is not None for item in engagement_only):
            raise ValueError(
                "event_type, max_count, half_life_days and expires_after_days are "
                "for engagement rules only"
            )
        operator, value = self.operator, self.value
        if operator == "exists":
            if value is None:
                self.value = True
            elif not isinstance(value, bool):
                raise ValueError("value of exists must be true or false")
        elif operator in ("gt", "lt"):
            if not is_number(value):
                raise ValueError(f"value of {operator} must be a number")
        elif operator == "in":
            if (
                not isinstance(value, list)
                or not 1 <= len(value) <= 100
                or not all(_is_scalar(item) for item in value)
            ):
                raise ValueError(
                    "value of in must be a list of 1 to 100 strings, numbers or "
                    "booleans"
                )
        elif operator == "contains":
            if not isinstance(value, str) or not value:
                raise ValueError("value of contains must be a non-empty string")
        elif not _is_scalar(value):
            raise ValueError(f"value of {operator} must be a string, number or boolean")

    def _check_engagement_rule(self) -> None:
        if self.event_type is None:
            raise ValueError("an engagement rule needs event_type")
        if (
            self.field is not None
            or self.operator is not None
            or self.value is not None
        ):
            raise ValueError("field, operator and value are for field rules only")
        if self.half_life_days is not None and self.expires_after_days is not None:
            raise ValueError("set half_life_days or expires_after_days, not both")


class ScoringRuleUpdate(InputModel):
    """Fields to change; the merged rule is checked as a whole, as on create."""

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    points: Points | None = None
    field: RuleField | None = None
    operator: Operator | None = None
    value: Any = None
    event_type: EngagementType | None = None
    max_count: Annotated[int, Field(ge=1, le=10_000)] | None = None
    half_life_days: Days | None = None
    expires_after_days: Days | None = None


class ScoringRule(OutputModel):
    object: Literal["scoring_rule"] = "scoring_rule"
    id: ScoringRuleId
    name: str
    kind: RuleKind
    points: int
    field: str | None
    operator: Operator | None
    value: Any
    event_type: EngagementType | None
    max_count: int | None
    half_life_days: int | None
    expires_after_days: int | None
    version: int
    created_at: datetime
    updated_at: datetime


class ScoringSettings(OutputModel):
    object: Literal["scoring_settings"] = "scoring_settings"
    threshold: int | None = Field(
        description="A lead whose score reaches this is sales-ready; null: never."
    )
    scoring_version: int = Field(
        description="Bumped by every change of a rule or of the threshold; leads "
        "scored with an older one are rescored in the background."
    )


class ScoringSettingsUpdate(InputModel):
    threshold: Annotated[int, Field(ge=-1_000_000, le=1_000_000)] | None = None


class ScoreItem(OutputModel):
    """The points one rule gave a lead."""

    rule_id: ScoringRuleId
    name: str
    points: int


class EngagementCreate(InputModel):
    type: EngagementType
    occurred_at: Timestamp | None = Field(
        default=None, description="Now when omitted; never in the future."
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Kept as given, up to 50 keys."
    )
    enrollment_id: EnrollmentId | None = Field(
        default=None,
        description="The lead's enrollment whose email caused the engagement.",
    )
    message_id: Annotated[str, Field(min_length=1, max_length=300)] | None = Field(
        default=None,
        description="The Message-ID header of the nurture email that caused the "
        "engagement, with or without angle brackets.",
    )

    @model_validator(mode="after")
    def _check_metadata(self) -> Self:
        if len(self.metadata) > 50:
            raise ValueError("metadata must have at most 50 keys")
        return self


class Engagement(OutputModel):
    object: Literal["engagement"] = "engagement"
    id: EngagementId
    lead_id: LeadId
    type: EngagementType
    occurred_at: datetime
    metadata: dict[str, Any] = Field(validation_alias="details")
    enrollment_id: EnrollmentId | None = Field(
        description="The enrollment whose email caused the engagement, when known."
    )
    message_id: str | None = Field(
        description="The Message-ID of that email, when the engagement named it."
    )
    created_at: datetime
