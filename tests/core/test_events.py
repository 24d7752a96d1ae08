from __future__ import annotations

import json

import pytest
import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import events, ids
from app.core.db import take_pending_jobs
from app.core.events import DISPATCH_JOB, emit
from app.core.ids import new_uuid
from app.core.jobs import JobQueue
from app.core.logging import configure_logging
from app.models import Event, UndispatchedEvent, WebhookEndpoint, Workspace
from tests.conftest import TestDatabase
from workers import tasks


async def add_endpoint(
    session: AsyncSession, workspace: Workspace, event_types: list[str]
) -> WebhookEndpoint:
    endpoint = WebhookEndpoint(
        workspace_id=workspace.id,
        url="http://127.0.0.1:9/hooks",
        event_types=event_types,
        secret="whsec_test",
    )
    session.add(endpoint)
    await session.commit()
    return endpoint


async def emit_lead_created(session: AsyncSession, workspace: Workspace) -> Event:
    return await emit(
        session,
        workspace_id=workspace.id,
        type="lead.created",
        object_type="lead",
        object_id=new_uuid(),
        data={},
    )


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
        await add_endpoint(session, workspace, ["lead.*"])
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
        assert await session.get(UndispatchedEvent, event.id) is not None
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

        event.request_id = "req-changed"
        await session.flush()

        assert event in session
        stored = await session.scalar(
            select(Event.request_id)
            .where(Event.id == event.id)
            .execution_options(populate_existing=True)
        )
        assert stored == "req-changed"

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

    @pytest.mark.usefixtures("restore_logging")
    async def test_log_names_object_by_api_id(
        self,
        session: AsyncSession,
        workspace: Workspace,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        configure_logging("json", "INFO")
        # A fresh logger proxy, so that it takes the configuration just set.
        monkeypatch.setattr(events, "log", structlog.get_logger(events.__name__))

        event = await emit_lead_created(session, workspace)

        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
        [emitted] = [line for line in lines if line["event"] == "event.emitted"]
        assert emitted["object_type"] == "lead"
        assert emitted["object_id"] == ids.encode("lead", event.object_id)


class TestSystemActor:
    async def test_job_event_names_system(
        self, database: TestDatabase, queue: JobQueue, workspace: Workspace
    ) -> None:
        ctx = {"db": database, "queue": queue}

        async with tasks.unit_of_work(ctx) as session:
            unnamed = await emit_lead_created(session, workspace)
            named = await emit(
                session,
                workspace_id=workspace.id,
                type="lead.created",
                object_type="lead",
                object_id=new_uuid(),
                data={},
                actor="key_test",
            )

        assert unnamed.actor == "system"
        assert named.actor == "key_test"

    async def test_outside_a_job_none(
        self, database: TestDatabase, queue: JobQueue, workspace: Workspace
    ) -> None:
        ctx = {"db": database, "queue": queue}
        async with tasks.unit_of_work(ctx):
            pass

        async with database.sessionmaker() as session:
            event = await emit_lead_created(session, workspace)

        assert event.actor is None


class TestDispatchOnlyWhenSubscribed:
    async def test_no_endpoint_no_job(
        self, session: AsyncSession, workspace: Workspace
    ) -> None:
        event = await emit_lead_created(session, workspace)

        assert take_pending_jobs(session) == []
        # Queued all the same: the sweep settles it, unless an endpoint created
        # meanwhile takes it.
        assert await session.get(UndispatchedEvent, event.id) is not None

    async def test_other_types_no_job(
        self, session: AsyncSession, workspace: Workspace
    ) -> None:
        await add_endpoint(session, workspace, ["invoice.*", "lead.updated"])

        await emit_lead_created(session, workspace)

        assert take_pending_jobs(session) == []

    async def test_disabled_endpoint_no_job(
        self, session: AsyncSession, workspace: Workspace
    ) -> None:
        endpoint = await add_endpoint(session, workspace, ["*"])
        endpoint.enabled = False
        await session.commit()

        await emit_lead_created(session, workspace)

        assert take_pending_jobs(session) == []

    async def test_endpoint_of_later_transaction_seen(
        self, session: AsyncSession, workspace: Workspace
    ) -> None:
        await emit_lead_created(session, workspace)
        await session.commit()
        await add_endpoint(session, workspace, ["lead.created"])

        event = await emit_lead_created(session, workspace)

        jobs = take_pending_jobs(session)
        assert [job.job_id for job in jobs] == [f"dispatch:{event.id}"]
