"""One timeline per record: its activities and its events, merged newest first.

The cursor carries the (time, id) of the last entry shown: 8 bytes of microseconds
since the Unix epoch and the 16 bytes of the id, in URL-safe base64.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Query
from sqlalchemy.ext.asyncio import AsyncSession

from app.activities.repository import ActivityRepository
from app.activities.schemas import Activity, TimelineItem
from app.core.errors import FieldError, InvalidInput
from app.customers.service import contact_service, customer_service
from app.leads.service import lead_service
from app.opportunities.service import opportunity_service
from app.webhooks.schemas import Event, encode_object_id

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

TimelineCursor = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Za-z0-9_-]{32}$",
        description="The next_cursor of the previous page, passed unchanged.",
    ),
]


def encode_cursor(at: datetime, item_id: uuid.UUID) -> str:
    micros = (at - _EPOCH) // timedelta(microseconds=1)
    raw = micros.to_bytes(8, "big", signed=True) + item_id.bytes
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor)
        if len(raw) != 24:
            raise ValueError("wrong length")
        micros = int.from_bytes(raw[:8], "big", signed=True)
        return _EPOCH + timedelta(microseconds=micros), uuid.UUID(bytes=raw[8:])
    except (ValueError, OverflowError) as error:
        raise InvalidInput(
            "The cursor is invalid. Pass the next_cursor of a previous page unchanged.",
            errors=[FieldError("query.cursor", "invalid cursor", "invalid_cursor")],
        ) from error


async def _check_record(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    record_type: str,
    record_id: uuid.UUID,
) -> None:
    if record_type == "lead":
        await lead_service.get(session, workspace_id, record_id)
    elif record_type == "contact":
        await contact_service.get(session, workspace_id, record_id)
    elif record_type == "customer":
        await customer_service.get(session, workspace_id, record_id)
    else:
        await opportunity_service.get(session, workspace_id, record_id)


async def timeline(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    record_type: str,
    record_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[TimelineItem], str | None, bool]:
    """Return one page of a record's timeline, or raise its ``NotFound``."""
    await _check_record(session, workspace_id, record_type, record_id)
    after = decode_cursor(cursor) if cursor else None

    repository = ActivityRepository.from_session(session)
    entries = await repository.timeline(
        workspace_id, record_type, record_id, limit=limit + 1, after=after
    )
    has_more = len(entries) > limit
    entries = entries[:limit]
    activities = await repository.get_many(
        workspace_id,
        [entry_id for source, entry_id, _ in entries if source == "activity"],
    )
    events = await repository.events(
        workspace_id, [entry_id for source, entry_id, _ in entries if source == "event"]
    )

    items = []
    for source, entry_id, at in entries:
        if source == "activity":
            items.append(
                TimelineItem(
                    type="activity",
                    at=at,
                    activity=Activity.model_validate(activities[entry_id]),
                    event=None,
                )
            )
            continue
        row = events[entry_id]
        event = Event(
            id=row.id,
            type=row.type,
            object_type=row.object_type,
            object_id=encode_object_id(row.object_type, row.object_id),
            sequence=row.sequence,
            data=row.data,
            request_id=row.request_id,
            actor=row.actor,
            created_at=row.created_at,
        )
        items.append(TimelineItem(type="event", at=at, activity=None, event=event))
    next_cursor = None
    if has_more and entries:
        _, last_id, last_at = entries[-1]
        next_cursor = encode_cursor(last_at, last_id)
    return items, next_cursor, has_more
