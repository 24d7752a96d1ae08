"""Rows of any table as JSON for a lead's data export, and scrubbing their events."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import cast, inspect, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Event


def row_data(row: Any) -> dict[str, Any]:
    """Return every column of an ORM row, in JSON types."""
    mapper = inspect(row).mapper
    return {
        column.key: to_jsonable_python(getattr(row, column.key))
        for column in mapper.column_attrs
    }


async def blank_event_fields(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    object_ids: Sequence[uuid.UUID],
    blanks: dict[str, object],
) -> None:
    """Overwrite ``blanks`` in the data of every event of the objects ``object_ids``."""
    if not object_ids:
        return
    await session.execute(
        update(Event)
        .where(Event.workspace_id == workspace_id, Event.object_id.in_(object_ids))
        .values(data=Event.data.op("||")(cast(blanks, JSONB)))
    )
