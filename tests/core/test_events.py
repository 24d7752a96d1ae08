from __future__ import annotations

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import take_pending_jobs
from app.core.events import DISPATCH_JOB, emit
from app.core.ids import new_uuid
from app.models import Event, Workspace


class TestEmit:
    async def test_sequence_per_object(
        self, session: AsyncSession, workspace: Workspace
    ) -> None:
        first, second = new_uuid(), new_uuid()

        events = [
            await emit(
                session,
                workspace_id=workspace.id,
                type="lead.updated",
                object_type="lead",
                object_id=object_id,
                data={"n": number},
            )
            for number, object_id in enumerate((first, first, second, first))
        ]

        assert [event.sequence for event in events] == [1, 2, 1, 3]
        stored = (
            await session.execute(
                select(Event.object_id, Event.sequence).order_by(Event.id)
            )
        ).all()
        assert [tuple(row) for row in stored] == [
            (first, 1),
            (first, 2),
            (second, 1),
            (first, 3),
        ]

    async def test_records_context_and_defers_dispatch(
        self, session: AsyncSession, workspace: Workspace
    ) -> None:
        object_id = new_uuid()
        structlog.contextvars.bind_contextvars(request_id="req-123")
        try:
            event = await emit(
                session,
                workspace_id=workspace.id,
                type="lead.created",
                object_type="lead",
                object_id=object_id,
                data={"b": 1, "a": {"c": None}},
                actor="rep_7",
            )
        finally:
            structlog.contextvars.clear_contextvars()

        assert event.request_id == "req-123"
        assert event.actor == "rep_7"
        assert event.data == {"a": {"c": None}, "b": 1}
        assert event.created_at is not None
        assert event.dispatched_at is None
        jobs = take_pending_jobs(session)
        assert [job.function for job in jobs] == [DISPATCH_JOB]
        assert jobs[0].args == (str(event.id),)
        assert jobs[0].job_id == f"dispatch:{event.id}"

    async def test_returned_event_is_persistent(
        self, session: AsyncSession, workspace: Workspace
    ) -> None:
        event = await emit(
            session,
            workspace_id=workspace.id,
            type="lead.created",
            object_type="lead",
            object_id=new_uuid(),
            data={},
        )

        event.dispatched_at = event.created_at
        await session.flush()

        assert event in session
        stored = await session.scalar(
            select(Event.dispatched_at)
            .where(Event.id == event.id)
            .execution_options(populate_existing=True)
        )
        assert stored == event.created_at

    async def test_flushes_pending_changes_first(
        self, session: AsyncSession, workspace: Workspace
    ) -> None:
        pending = Workspace(id=new_uuid(), name="Pending")
        session.add(pending)

        await emit(
            session,
            workspace_id=pending.id,
            type="workspace.created",
            object_type="workspace",
            object_id=pending.id,
            data={},
        )

        count = await session.scalar(
            select(func.count())
            .select_from(Workspace)
            .where(Workspace.id == pending.id)
        )
        assert count == 1
