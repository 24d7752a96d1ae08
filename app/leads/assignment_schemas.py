from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from app.core.schemas import (
    AssignmentRuleId,
    InputModel,
    LeadAssignmentId,
    LeadId,
    OutputModel,
    TeamId,
    UserId,
)

Strategy = Literal["round_robin", "weighted", "fixed"]
Operator = Literal["equals", "in", "exists"]
Scalar = str | int | float | bool
MAX_CRITERIA = 20
MAX_IN_VALUES = 100
# The lead fields a criterion can test; attributes.<key> tests a custom field.
FIELD_PATTERN = r"^(source|campaign_id|country|phone_region|company_domain|attributes\.[^.\s]{1,100})$"


class Criterion(InputModel):
    field: Annotated[
        str,
        Field(
            pattern=FIELD_PATTERN,
            description="source, campaign_id, country, phone_region, company_domain "
            "or attributes.<key>.",
            examples=["source", "attributes.industry"],
        ),
    ]
    operator: Operator
    value: Scalar | list[Scalar] | None = Field(
        default=None,
        description="A value for equals, a list for in, true (present) or false "
        "(absent) for exists. Text compares ignoring case.",
    )

    @model_validator(mode="after")
    def _check_value(self) -> Criterion:
        if self.operator == "in":
            if not isinstance(self.value, list) or not self.value:
                raise ValueError("operator in needs a non-empty list as value")
            if len(self.value) > MAX_IN_VALUES:
                raise ValueError(f"operator in takes at most {MAX_IN_VALUES} values")
        elif self.operator == "equals":
            if self.value is None or isinstance(self.value, list):
                raise ValueError("operator equals needs one value, not a list")
        elif self.value is not None and not isinstance(self.value, bool):
            raise ValueError("operator exists takes true, false or no value")
        return self


class AssignmentRuleCreate(InputModel):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    position: Annotated[int, Field(ge=0, le=1_000_000)] | None = Field(
        default=None,
        description="Rules run in ascending position; the end of the list when "
        "omitted.",
    )
    enabled: bool = True
    criteria: list[Criterion] = Field(
        default_factory=list,
        max_length=MAX_CRITERIA,
        description="All must match. A rule without criteria matches every lead, "
        "so placed last it is the workspace's default rule.",
    )
    strategy: Strategy
    team_id: TeamId | None = Field(
        default=None, description="Required for round_robin and weighted."
    )
    user_id: UserId | None = Field(default=None, description="Required for fixed.")


class AssignmentRuleUpdate(InputModel):
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    position: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    enabled: bool | None = None
    criteria: list[Criterion] | None = Field(default=None, max_length=MAX_CRITERIA)
    strategy: Strategy | None = None
    team_id: TeamId | None = None
    user_id: UserId | None = None


class CriterionOut(OutputModel):
    field: str
    operator: Operator
    value: Any


class AssignmentRule(OutputModel):
    object: Literal["assignment_rule"] = "assignment_rule"
    id: AssignmentRuleId
    name: str
    position: int
    enabled: bool
    criteria: list[CriterionOut]
    strategy: Strategy
    team_id: TeamId | None
    user_id: UserId | None
    version: int
    created_at: datetime
    updated_at: datetime


class LeadAssign(InputModel):
    owner_id: UserId | None = Field(
        default=None, description="The new owner; null unassigns the lead."
    )
    rule: Literal["auto"] | None = Field(
        default=None, description="auto runs the assignment rules instead."
    )

    @model_validator(mode="after")
    def _one_target(self) -> LeadAssign:
        if ("owner_id" in self.model_fields_set) == (self.rule is not None):
            raise ValueError('send either owner_id or "rule": "auto"')
        return self


class LeadAssignmentRecord(OutputModel):
    object: Literal["lead_assignment"] = "lead_assignment"
    id: LeadAssignmentId
    lead_id: LeadId
    from_user_id: UserId | None
    to_user_id: UserId | None
    rule_id: AssignmentRuleId | None
    method: Literal["rule", "manual"]
    actor: str | None
    created_at: datetime
