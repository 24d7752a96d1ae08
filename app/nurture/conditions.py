"""Step conditions: a test on the lead that decides whether a step runs or is skipped.

A condition is either a field test, ``{"field": "status", "operator": "equals",
"value": "working"}``, or a group, ``{"all": [...]}`` or ``{"any": [...]}``, whose
members are conditions again. Groups nest at most ``MAX_DEPTH`` levels and hold at
most ``MAX_TESTS`` field tests in all, so evaluating one stays cheap.

The operators that scoring rules share (equals, not_equals, in, contains, exists, gt,
lt) are evaluated by ``app.leads.scoring.matches``, so a step condition and a scoring
rule agree on what a lead matches.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    model_validator,
)

from app.core import ids
from app.core.schemas import InputModel
from app.customfields.values import is_number
from app.leads import scoring
from app.models import Lead

MAX_DEPTH = 4
MAX_TESTS = 50
MAX_GROUP_SIZE = 20
MAX_IN_VALUES = 100

ConditionOperator = Literal[
    "equals",
    "not_equals",
    "in",
    "not_in",
    "contains",
    "exists",
    "not_exists",
    "gt",
    "gte",
    "lt",
    "lte",
]
# The lead columns a condition may test, besides attributes.<key>. Leads have no
# country column, so ``country`` reads attributes.country.
CONDITION_FIELDS = (
    "status",
    "source",
    "tags",
    "score",
    "country",
    "company_domain",
    "company",
    "title",
    "timezone",
    "owner_id",
    "email_normalized",
)
ConditionField = Annotated[
    str,
    Field(
        pattern=r"^("
        + "|".join(CONDITION_FIELDS)
        + r"|attributes\.[a-z][a-z0-9_]{0,63})$",
        description="A lead field (" + ", ".join(CONDITION_FIELDS) + ") or "
        "attributes.<key>.",
    ),
]
_SCORING_OPERATORS = frozenset(
    {"equals", "not_equals", "in", "contains", "exists", "gt", "lt"}
)
# A placeholder id: ``scoring.matches`` reads only a rule's operator and value.
_CONDITION_RULE_ID = uuid.UUID(int=0)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bool) or is_number(value)


class FieldTest(InputModel):
    field: ConditionField
    operator: ConditionOperator
    value: Any = Field(
        default=None,
        description="A string, number or boolean; a list of 1 to 100 for in and "
        "not_in; a number for gt, gte, lt and lte; none for exists and not_exists.",
    )

    @model_validator(mode="after")
    def _check_value(self) -> Self:
        operator, value = self.operator, self.value
        if operator in ("exists", "not_exists"):
            if value is not None:
                raise ValueError(f"{operator} takes no value")
        elif operator in ("gt", "gte", "lt", "lte"):
            if not is_number(value):
                raise ValueError(f"value of {operator} must be a number")
        elif operator in ("in", "not_in"):
            if (
                not isinstance(value, list)
                or not 1 <= len(value) <= MAX_IN_VALUES
                or not all(_is_scalar(item) for item in value)
            ):
                raise ValueError(
                    f"value of {operator} must be a list of 1 to {MAX_IN_VALUES} "
                    "strings, numbers or booleans"
                )
        elif operator == "contains":
            if not isinstance(value, str) or not value:
                raise ValueError("value of contains must be a non-empty string")
        elif not _is_scalar(value):
            raise ValueError(f"value of {operator} must be a string, number or boolean")
        return self


class AllGroup(InputModel):
    all: list[Condition] = Field(
        min_length=1,
        max_length=MAX_GROUP_SIZE,
        description="True when every member is true.",
    )


class AnyGroup(InputModel):
    any: list[Condition] = Field(
        min_length=1,
        max_length=MAX_GROUP_SIZE,
        description="True when at least one member is true.",
    )


def _condition_kind(value: Any) -> str:
    if isinstance(value, Mapping):
        if "all" in value:
            return "all"
        if "any" in value:
            return "any"
    elif isinstance(value, AllGroup | AnyGroup):
        return "all" if isinstance(value, AllGroup) else "any"
    return "field"


Condition = Annotated[
    Annotated[FieldTest, Tag("field")]
    | Annotated[AllGroup, Tag("all")]
    | Annotated[AnyGroup, Tag("any")],
    Discriminator(_condition_kind),
]


def _check_size(condition: Condition, depth: int = 1) -> int:
    """Return the field tests in ``condition``, raising ``ValueError`` past a limit."""
    if isinstance(condition, FieldTest):
        return 1
    if depth >= MAX_DEPTH:
        raise ValueError(
            f"groups nest at most {MAX_DEPTH} levels deep; flatten the condition"
        )
    members = condition.all if isinstance(condition, AllGroup) else condition.any
    return sum(_check_size(member, depth + 1) for member in members)


def _check_limits(condition: Condition) -> Condition:
    tests = _check_size(condition)
    if tests > MAX_TESTS:
        raise ValueError(
            f"a condition contains at most {MAX_TESTS} field tests, this one has {tests}"
        )
    return condition


AllGroup.model_rebuild()
AnyGroup.model_rebuild()

StepCondition = Annotated[
    Condition,
    AfterValidator(_check_limits),
    Field(
        description="Run the step only when this test on the lead is true; otherwise "
        "skip it and go on. A field test {field, operator, value} or a group "
        f"{{all: [...]}} or {{any: [...]}}, nested at most {MAX_DEPTH} levels, with "
        f"at most {MAX_TESTS} field tests."
    ),
]
_adapter: TypeAdapter[Condition] = TypeAdapter(StepCondition)


def parse_condition(data: Mapping[str, Any]) -> Condition:
    """Parse a stored condition, raising ``pydantic.ValidationError``."""
    return _adapter.validate_python(data)


def lead_values(lead: Lead) -> dict[str, Any]:
    """Collect the lead fields a condition may test."""
    values = {
        name: getattr(lead, name) for name in CONDITION_FIELDS if name != "country"
    }
    attributes = dict(lead.attributes or {})
    values["attributes"] = attributes
    values["country"] = attributes.get("country")
    # Compared with the usr_ id a client sends, not the UUID.
    if lead.owner_id is not None:
        values["owner_id"] = ids.encode("user", lead.owner_id)
    return values


def _compare(operator: str, actual: Any, expected: Any) -> bool:
    if not is_number(actual):
        return False
    if operator == "gte":
        return bool(actual >= expected)
    return bool(actual <= expected)


def _test(test: FieldTest, values: Mapping[str, Any]) -> bool:
    actual = scoring.field_value(values, test.field)
    operator, expected = test.operator, test.value
    if operator == "not_in":
        operator, negate = "in", True
    elif operator == "not_exists":
        operator, expected, negate = "exists", False, False
    else:
        negate = False
    if operator == "exists" and expected is None:
        expected = True
    if operator in _SCORING_OPERATORS:
        rule = scoring.Rule(
            id=_CONDITION_RULE_ID,
            name="step condition",
            kind="field",
            points=0,
            field=test.field,
            operator=operator,
            value=expected,
        )
        return scoring.matches(rule, actual) is not negate
    return _compare(operator, actual, expected)


def evaluate(condition: Condition, values: Mapping[str, Any]) -> bool:
    """Tell whether ``condition`` holds for the lead ``values`` of ``lead_values``."""
    if isinstance(condition, FieldTest):
        return _test(condition, values)
    if isinstance(condition, AllGroup):
        return all(evaluate(member, values) for member in condition.all)
    return any(evaluate(member, values) for member in condition.any)


def holds(stored: Mapping[str, Any] | None, lead: Lead) -> bool:
    """Evaluate a step's stored condition for ``lead``; no condition always holds."""
    if stored is None:
        return True
    return evaluate(parse_condition(stored), lead_values(lead))
