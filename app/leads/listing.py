"""Filters, sorts and keyset cursors of ``GET /v1/leads``.

Each sort orders by ``(sort key, id)`` in one direction, and its cursor carries the
sort's name, the key of the page's last row and that row's id. The next page starts
strictly after that pair, so it costs the same at any depth, and a row added meanwhile
is never skipped or repeated. A row whose sort key changes while a client pages (an
``updated_at`` or ``score`` sort) can move past the cursor, as with any keyset.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from fastapi import Query
from sqlalchemy import (
    ColumnElement,
    Numeric,
    Select,
    and_,
    case,
    func,
    literal_column,
    not_,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import FieldError, InvalidInput
from app.core.pagination import (
    decode_sort_cursor,
    encode_sort_cursor,
    invalid_sort_cursor,
)
from app.core.schemas import MAX_YEAR, MIN_YEAR
from app.customfields.service import custom_field_service
from app.customfields.values import Definition, is_date
from app.models import Lead

LeadSort = Literal[
    "created_at",
    "-created_at",
    "updated_at",
    "-updated_at",
    "score",
    "-score",
    "last_name",
    "-last_name",
]
DEFAULT_SORT: LeadSort = "-created_at"
MAX_ATTRIBUTE_FILTERS = 10

ListCursor = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Za-z0-9_-]{1,512}$",
        description="The next_cursor of the previous page, passed unchanged with the "
        "same sort.",
    ),
]
AttributeFilters = Annotated[
    list[Annotated[str, Query(max_length=300)]] | None,
    Query(
        max_length=MAX_ATTRIBUTE_FILTERS,
        description="A custom field condition <key>:<operator>:<value>, repeatable "
        "(all must hold). Operators: eq and ne for every type; contains for text; "
        "gt, gte, lt and lte for number and date; exists with true or false. Only "
        "keys defined in /v1/custom-fields; the value must fit the field's type.",
    ),
]

# The key expressions match the expressions of the listing indexes on leads.
_LAST_NAME = func.coalesce(Lead.last_name, literal_column("''"))
# The range of the score column, a PostgreSQL integer.
MIN_SCORE = -(2**31)
MAX_SCORE = 2**31 - 1
_SORT_KEYS: dict[str, Any] = {
    "created_at": Lead.created_at,
    "updated_at": Lead.updated_at,
    "score": Lead.score,
    "last_name": _LAST_NAME,
}


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def encode_cursor(sort: str, row: Lead) -> str:
    name = sort.lstrip("-")
    value: Any = getattr(row, name) if name != "last_name" else (row.last_name or "")
    if isinstance(value, datetime):
        value = value.isoformat()
    return encode_sort_cursor(sort, value, row.id)


def decode_cursor(sort: str, cursor: str) -> tuple[Any, uuid.UUID]:
    """Return the sort key and id a cursor points after, checking it fits ``sort``."""
    value, lead_id = decode_sort_cursor(sort, cursor)
    name = sort.lstrip("-")
    # A key that no column can hold fails when bound as a query parameter: a time whose
    # offset leaves datetime's years, a score beyond integer, a NUL in a name.
    try:
        if name in ("created_at", "updated_at"):
            value = datetime.fromisoformat(value)
            if value.tzinfo is None:
                raise ValueError("naive time")
            if not MIN_YEAR <= value.year <= MAX_YEAR:
                raise ValueError("time out of range")
        elif name == "score":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError("score not an integer")
            if not MIN_SCORE <= value <= MAX_SCORE:
                raise ValueError("score out of range")
        elif not isinstance(value, str):
            raise ValueError("last name not a string")
        elif "\x00" in value:
            raise ValueError("NUL in last name")
    except (ValueError, TypeError) as error:
        raise invalid_sort_cursor("not a cursor of this list") from error
    return value, lead_id


async def paginate_leads(
    session: AsyncSession,
    statement: Select[Any],
    *,
    sort: str,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[Lead], str | None, bool]:
    """Run ``statement`` for one page in ``sort`` order after ``cursor``."""
    descending = sort.startswith("-")
    key = _SORT_KEYS[sort.lstrip("-")]
    if cursor:
        value, lead_id = decode_cursor(sort, cursor)
        pair, after = tuple_(key, Lead.id), tuple_(value, lead_id)
        statement = statement.where(pair < after if descending else pair > after)
    order = (key.desc(), Lead.id.desc()) if descending else (key.asc(), Lead.id.asc())
    rows = (
        (await session.execute(statement.order_by(*order).limit(limit + 1)))
        .scalars()
        .all()
    )
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(sort, rows[-1]) if has_more and rows else None
    return rows, next_cursor, has_more


@dataclass(frozen=True)
class AttributeFilter:
    key: str
    operator: str
    value: Any
    type: str


_OPERATORS = {
    "text": ("eq", "ne", "contains", "exists"),
    "choice": ("eq", "ne", "exists"),
    "boolean": ("eq", "ne", "exists"),
    "number": ("eq", "ne", "gt", "gte", "lt", "lte", "exists"),
    "date": ("eq", "ne", "gt", "gte", "lt", "lte", "exists"),
}
_FILTER = re.compile(r"^([a-z][a-z0-9_]{0,63}):([a-z]+):(.*)$", re.DOTALL)
_NUMBER = re.compile(r"^-?\d{1,30}(\.\d{1,30})?$")


def _filter_error(text: str, message: str) -> InvalidInput:
    return InvalidInput(
        f"attribute={text!r} is invalid: {message}.",
        errors=[FieldError("query.attribute", message, "invalid_filter")],
    )


def _parse_value(definition: Definition, operator: str, raw: str, text: str) -> Any:
    if operator == "exists":
        if raw not in ("true", "false"):
            raise _filter_error(text, "exists takes true or false")
        return raw == "true"
    kind = definition.type
    if kind == "number":
        if not _NUMBER.match(raw):
            raise _filter_error(text, f"{definition.key} is a number, such as 12.5")
        try:
            return Decimal(raw)
        except InvalidOperation as error:
            raise _filter_error(text, "the number is invalid") from error
    if kind == "date":
        if not is_date(raw):
            raise _filter_error(text, f"{definition.key} is a date YYYY-MM-DD")
        return raw
    if kind == "boolean":
        if raw not in ("true", "false"):
            raise _filter_error(text, f"{definition.key} is true or false")
        return raw == "true"
    if kind == "choice" and raw not in definition.choices:
        raise _filter_error(
            text, f"{definition.key} is one of: {', '.join(definition.choices)}"
        )
    if not raw:
        raise _filter_error(text, "the value is empty")
    return raw


def parse_attribute_filters(
    texts: Sequence[str], definitions: dict[str, Definition]
) -> list[AttributeFilter]:
    """Parse ``attribute=`` conditions, each checked against its field's definition."""
    filters = []
    for text in texts:
        match = _FILTER.match(text)
        if match is None:
            raise _filter_error(text, "expected <key>:<operator>:<value>")
        key, operator, raw = match.groups()
        definition = definitions.get(key)
        if definition is None:
            raise _filter_error(
                text, f"no lead custom field {key!r} is defined in /v1/custom-fields"
            )
        allowed = _OPERATORS[definition.type]
        if operator not in allowed:
            raise _filter_error(
                text,
                f"{definition.type} fields take the operators {', '.join(allowed)}",
            )
        value = _parse_value(definition, operator, raw, text)
        filters.append(AttributeFilter(key, operator, value, definition.type))
    return filters


def _json_number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def attribute_condition(item: AttributeFilter) -> ColumnElement[bool]:
    """Build the SQL condition of one attribute filter.

    ``eq`` uses jsonb containment, which the GIN index on attributes serves. Range
    operators compare only values of the right JSON type, so a value stored before its
    definition existed never fails the query.
    """
    element = Lead.attributes[item.key]
    text = Lead.attributes[item.key].astext
    if item.operator == "exists":
        present = and_(element.isnot(None), func.jsonb_typeof(element) != "null")
        return present if item.value else not_(present)
    if item.operator in ("eq", "ne"):
        value = item.value
        if item.type == "number":
            value = _json_number(value)
        contained = Lead.attributes.contains({item.key: value})
        return contained if item.operator == "eq" else not_(contained)
    if item.operator == "contains":
        matched: ColumnElement[bool] = text.ilike("%" + escape_like(item.value) + "%")
        return matched
    key: ColumnElement[Any]
    if item.type == "number":
        key = case(
            (func.jsonb_typeof(element) == "number", text.cast(Numeric)), else_=None
        )
    else:
        key = case(
            (text.regexp_match(r"^\d{4}-\d{2}-\d{2}$"), text.collate("C")),
            else_=None,
        )
    comparisons: dict[str, ColumnElement[bool]] = {
        "gt": key > item.value,
        "gte": key >= item.value,
        "lt": key < item.value,
        "lte": key <= item.value,
    }
    return comparisons[item.operator]


def search_condition(query: str) -> ColumnElement[bool]:
    """Match ``query`` anywhere in the lowered name, email and company of a lead."""
    return Lead.search_text.like(func.lower("%" + escape_like(query) + "%"))


async def listing_filters(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    score_min: int | None,
    score_max: int | None,
    attribute_filters: Sequence[str] | None,
) -> list[AttributeFilter]:
    """Check the filters that need more than their own type; parse attribute ones."""
    if score_min is not None and score_max is not None and score_min > score_max:
        raise InvalidInput(
            f"score_min ({score_min}) is greater than score_max ({score_max}). Swap "
            "them, or drop one.",
            errors=[
                FieldError("query.score_min", "greater than score_max", "invalid_range")
            ],
        )
    if not attribute_filters:
        return []
    definitions = await custom_field_service.definitions_by_key(
        session, workspace_id, "lead"
    )
    return parse_attribute_filters(attribute_filters, definitions)
