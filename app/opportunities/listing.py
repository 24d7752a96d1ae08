"""Filters, sorts and keyset cursors of ``GET /v1/opportunities``.

Each sort orders by ``(sort key, id)`` in one direction. Its cursor carries the sort's
name, the key of the page's last row and that row's id. So every page costs the same,
and a row added meanwhile is never skipped or repeated. An opportunity without
an expected close date sorts as 9999-12-31, after every dated one in ascending order.
A row whose sort key changes while a client pages can move past the cursor, as with
any keyset.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import Query
from sqlalchemy import Select, func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import FieldError, InvalidInput
from app.core.money import MAX_AMOUNT
from app.core.pagination import (
    decode_sort_cursor,
    encode_sort_cursor,
    invalid_sort_cursor,
)
from app.core.schemas import MAX_YEAR, MIN_YEAR
from app.models import Opportunity
from app.opportunities.schemas import OpportunitySort

DEFAULT_SORT: OpportunitySort = "-created_at"
NO_CLOSE_DATE = date(9999, 12, 31)

ListCursor = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Za-z0-9_-]{1,512}$",
        description="The next_cursor of the previous page, passed unchanged with the "
        "same sort.",
    ),
]

# The key expressions match the expressions of the listing indexes on opportunities.
_SORT_KEYS: dict[str, Any] = {
    "created_at": Opportunity.created_at,
    "amount": Opportunity.amount,
    "expected_close_date": func.coalesce(
        Opportunity.expected_close_date, literal(NO_CLOSE_DATE)
    ),
}


@dataclass(frozen=True)
class OpportunityFilters:
    status: str | None = None
    pipeline_id: uuid.UUID | None = None
    stage_id: uuid.UUID | None = None
    customer_id: uuid.UUID | None = None
    owner_id: uuid.UUID | None = None
    amount_min: int | None = None
    amount_max: int | None = None
    expected_close_after: date | None = None
    expected_close_before: date | None = None
    rotting: bool | None = None


def _sort_value(sort: str, row: Opportunity) -> Any:
    name = sort.lstrip("-")
    if name == "created_at":
        return row.created_at.isoformat()
    if name == "amount":
        return row.amount
    return (row.expected_close_date or NO_CLOSE_DATE).isoformat()


def decode_cursor(sort: str, cursor: str) -> tuple[Any, uuid.UUID]:
    """Return the sort key and id a cursor points after, checking it fits ``sort``."""
    value, opportunity_id = decode_sort_cursor(sort, cursor)
    name = sort.lstrip("-")
    # A key outside the range of stored values fails when bound as a query parameter,
    # such as an amount beyond bigint or a time whose offset leaves datetime's years.
    try:
        if name == "created_at":
            value = datetime.fromisoformat(value)
            if value.tzinfo is None:
                raise ValueError("naive time")
            if not MIN_YEAR <= value.year <= MAX_YEAR:
                raise ValueError("time out of range")
        elif name == "amount":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError("amount not an integer")
            if not 0 <= value <= MAX_AMOUNT:
                raise ValueError("amount out of range")
        else:
            value = date.fromisoformat(value)
    except (ValueError, TypeError) as error:
        raise invalid_sort_cursor("not a cursor of this list") from error
    return value, opportunity_id


def filtered(workspace_id: uuid.UUID, filters: OpportunityFilters) -> Select[Any]:
    statement = select(Opportunity).where(Opportunity.workspace_id == workspace_id)
    equal = {
        Opportunity.status: filters.status,
        Opportunity.pipeline_id: filters.pipeline_id,
        Opportunity.stage_id: filters.stage_id,
        Opportunity.customer_id: filters.customer_id,
        Opportunity.owner_id: filters.owner_id,
        Opportunity.rotting: filters.rotting,
    }
    for column, value in equal.items():
        if value is not None:
            statement = statement.where(column == value)
    if filters.amount_min is not None:
        statement = statement.where(Opportunity.amount >= filters.amount_min)
    if filters.amount_max is not None:
        statement = statement.where(Opportunity.amount <= filters.amount_max)
    if filters.expected_close_after is not None:
        statement = statement.where(
            Opportunity.expected_close_date >= filters.expected_close_after
        )
    if filters.expected_close_before is not None:
        statement = statement.where(
            Opportunity.expected_close_date <= filters.expected_close_before
        )
    return statement


def check_ranges(filters: OpportunityFilters) -> None:
    """Reject a minimum above its maximum, which would match nothing by mistake."""
    errors = []
    if (
        filters.amount_min is not None
        and filters.amount_max is not None
        and filters.amount_min > filters.amount_max
    ):
        errors.append(
            FieldError("query.amount_min", "greater than amount_max", "invalid_range")
        )
    if (
        filters.expected_close_after is not None
        and filters.expected_close_before is not None
        and filters.expected_close_after > filters.expected_close_before
    ):
        errors.append(
            FieldError(
                "query.expected_close_after",
                "later than expected_close_before",
                "invalid_range",
            )
        )
    if errors:
        raise InvalidInput(
            "A range filter has its lower bound above its upper bound. Swap them.",
            errors=errors,
        )


async def paginate_opportunities(
    session: AsyncSession,
    statement: Select[Any],
    *,
    sort: str,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[Opportunity], str | None, bool]:
    """Run ``statement`` for one page in ``sort`` order after ``cursor``."""
    descending = sort.startswith("-")
    key = _SORT_KEYS[sort.lstrip("-")]
    if cursor:
        value, opportunity_id = decode_cursor(sort, cursor)
        pair, after = tuple_(key, Opportunity.id), tuple_(value, opportunity_id)
        statement = statement.where(pair < after if descending else pair > after)
    order = (
        (key.desc(), Opportunity.id.desc())
        if descending
        else (key.asc(), Opportunity.id.asc())
    )
    rows = (
        (await session.execute(statement.order_by(*order).limit(limit + 1)))
        .scalars()
        .all()
    )
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = (
        encode_sort_cursor(sort, _sort_value(sort, rows[-1]), rows[-1].id)
        if has_more and rows
        else None
    )
    return rows, next_cursor, has_more
