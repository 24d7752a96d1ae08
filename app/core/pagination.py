"""Cursor pagination, newest first, keyed on the UUIDv7 id.

UUIDv7 ids grow with creation time, so ``ORDER BY id DESC`` is creation order and the
keyset ``id < :cursor`` costs the same on every page. Rows created while a client pages
appear before its first page and never shift a later one.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Generic, TypeVar

import orjson
from fastapi import Query
from pydantic import BaseModel, Field
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.core.errors import FieldError, InvalidInput

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{22}$"

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size, 1 to 200.")]
Cursor = Annotated[
    str | None,
    Query(
        pattern=CURSOR_PATTERN,
        description="The next_cursor of the previous page, passed unchanged.",
    ),
]


class Page(BaseModel, Generic[T]):
    """One page of a list, and the cursor of the next page when ``has_more``."""

    data: list[T]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= to fetch the next page; null on the last page."
    )
    has_more: bool


def encode_cursor(value: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(value.bytes).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> uuid.UUID:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return uuid.UUID(bytes=raw)
    except ValueError as error:
        raise InvalidInput(
            "The cursor is invalid. Pass the next_cursor of a previous page unchanged.",
            errors=[FieldError("query.cursor", "invalid cursor", "invalid_cursor")],
        ) from error


async def paginate(
    session: AsyncSession,
    statement: Select[Any],
    id_column: InstrumentedAttribute[uuid.UUID],
    *,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[Any], str | None, bool]:
    """Run ``statement`` for one page; return the rows, the next cursor and has_more."""
    if cursor:
        statement = statement.where(id_column < decode_cursor(cursor))
    rows = (
        (await session.execute(statement.order_by(id_column.desc()).limit(limit + 1)))
        .scalars()
        .all()
    )
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].id) if has_more and rows else None
    return rows, next_cursor, has_more


def invalid_sort_cursor(message: str) -> InvalidInput:
    return InvalidInput(
        f"The cursor is invalid: {message}. Pass the next_cursor of a previous page "
        "unchanged, with the same sort.",
        errors=[FieldError("query.cursor", message, "invalid_cursor")],
    )


def encode_sort_cursor(sort: str, value: Any, row_id: uuid.UUID) -> str:
    """Encode the cursor of a list sorted by ``sort``, after the key ``value`` and id.

    ``value`` must be JSON: a datetime or date goes in as its ISO 8601 text.
    """
    payload = orjson.dumps([sort, value, row_id.hex])
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode()


def decode_sort_cursor(sort: str, cursor: str) -> tuple[Any, uuid.UUID]:
    """Return the raw key and the id a cursor points after, checking it fits ``sort``.

    The caller checks the key's type for its sort and raises ``invalid_sort_cursor``.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        made_for, value, id_hex = orjson.loads(raw)
        if not isinstance(id_hex, str):
            raise TypeError("the id is not a string")
        row_id = uuid.UUID(hex=id_hex)
    except (ValueError, TypeError) as error:
        raise invalid_sort_cursor("not a cursor of this list") from error
    if made_for != sort:
        raise invalid_sort_cursor(f"it was made for sort={made_for}, not sort={sort}")
    return value, row_id
