from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Select,
    and_,
    func,
    literal,
    not_,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.core.pagination import paginate
from app.models import Activity, Event

RECORD_COLUMNS: dict[str, InstrumentedAttribute[uuid.UUID | None]] = {
    "lead": Activity.lead_id,
    "contact": Activity.contact_id,
    "customer": Activity.customer_id,
    "opportunity": Activity.opportunity_id,
}


def _overdue_clause() -> Any:
    return and_(
        Activity.kind == "task",
        Activity.completed_at.is_(None),
        Activity.due_at.is_not(None),
        Activity.due_at < func.now(),
    )


class ActivityRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> ActivityRepository:
        return cls(session)

    async def get(
        self,
        workspace_id: uuid.UUID,
        activity_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Activity | None:
        statement = select(Activity).where(
            Activity.workspace_id == workspace_id, Activity.id == activity_id
        )
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def get_many(
        self, workspace_id: uuid.UUID, activity_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, Activity]:
        rows = await self.session.scalars(
            select(Activity).where(
                Activity.workspace_id == workspace_id, Activity.id.in_(activity_ids)
            )
        )
        return {row.id: row for row in rows}

    async def list(
        self,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        kind: str | None = None,
        records: dict[str, uuid.UUID] | None = None,
        owner_id: uuid.UUID | None = None,
        overdue: bool | None = None,
        due_before: datetime | None = None,
        due_after: datetime | None = None,
    ) -> tuple[Sequence[Activity], str | None, bool]:
        statement: Select[Activity] = select(Activity).where(
            Activity.workspace_id == workspace_id
        )
        if kind is not None:
            statement = statement.where(Activity.kind == kind)
        for record_type, record_id in (records or {}).items():
            statement = statement.where(RECORD_COLUMNS[record_type] == record_id)
        if owner_id is not None:
            statement = statement.where(Activity.owner_id == owner_id)
        if overdue is True:
            statement = statement.where(_overdue_clause())
        elif overdue is False:
            statement = statement.where(not_(_overdue_clause()))
        if due_before is not None:
            statement = statement.where(Activity.due_at < due_before)
        if due_after is not None:
            statement = statement.where(Activity.due_at > due_after)
        return await paginate(
            self.session, statement, Activity.id, limit=limit, cursor=cursor
        )

    async def timeline(
        self,
        workspace_id: uuid.UUID,
        record_type: str,
        record_id: uuid.UUID,
        *,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None,
    ) -> builtins.list[tuple[str, uuid.UUID, datetime]]:
        """Return (source, id, at) of the record's activities and events, newest first.

        ``after`` is the (at, id) of the last entry of the previous page. Because the
        keyset is on that pair, every page costs the same and no entry is skipped or
        repeated.
        """
        activities = select(
            literal("activity").label("source"),
            Activity.id.label("id"),
            Activity.occurred_at.label("at"),
        ).where(
            Activity.workspace_id == workspace_id,
            RECORD_COLUMNS[record_type] == record_id,
        )
        events = select(
            literal("event").label("source"),
            Event.id.label("id"),
            Event.created_at.label("at"),
        ).where(Event.workspace_id == workspace_id, Event.object_id == record_id)
        if after is not None:
            activities = activities.where(
                tuple_(Activity.occurred_at, Activity.id) < tuple_(*after)
            )
            events = events.where(tuple_(Event.created_at, Event.id) < tuple_(*after))
        merged = union_all(activities, events).subquery()
        rows = await self.session.execute(
            select(merged.c.source, merged.c.id, merged.c.at)
            .order_by(merged.c.at.desc(), merged.c.id.desc())
            .limit(limit)
        )
        return [(row.source, row.id, row.at) for row in rows]

    async def events(
        self, workspace_id: uuid.UUID, event_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, Event]:
        rows = await self.session.scalars(
            select(Event).where(
                Event.workspace_id == workspace_id, Event.id.in_(event_ids)
            )
        )
        return {row.id: row for row in rows}

    async def claim_overdue(self, batch: int) -> Sequence[Activity]:
        """Mark up to ``batch`` newly overdue tasks as notified and return them.

        SKIP LOCKED lets sweeps in several workers run at once without taking the
        same task. The UPDATE goes around the ORM, so the version does not move and
        a client's If-Match stays valid.
        """
        due = (
            select(Activity.id)
            .where(
                Activity.kind == "task",
                Activity.completed_at.is_(None),
                Activity.overdue_notified_at.is_(None),
                Activity.due_at.is_not(None),
                Activity.due_at < func.now(),
            )
            .order_by(Activity.due_at, Activity.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
            .cte("due")
            .prefix_with("MATERIALIZED")
        )
        claimed = (
            await self.session.scalars(
                update(Activity)
                .where(Activity.id == due.c.id)
                .values(overdue_notified_at=func.now())
                .returning(Activity)
                .execution_options(synchronize_session=False, populate_existing=True)
            )
        ).all()
        return claimed
