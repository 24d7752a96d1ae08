from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.core.ids import new_uuid
from app.models import (
    Event,
    UndispatchedEvent,
    WebhookAttempt,
    WebhookDelivery,
    Workspace,
)
from app.settings import Settings
from tests.webhooks.conftest import Receiver
from tests.webhooks.factories import (
    create_endpoint,
    deliveries_of,
    dispatch,
    queue_again,
    record_event,
)
from workers import tasks
from workers.settings import worker_settings


async def backdate(session: AsyncSession, days: int, *events: Event) -> None:
    """Move events back in time and take them off the dispatch queue."""
    event_ids = [event.id for event in events]
    await session.execute(
        update(Event)
        .where(Event.id.in_(event_ids))
        .values(created_at=utcnow() - timedelta(days=days))
    )
    await session.execute(
        delete(UndispatchedEvent).where(UndispatchedEvent.event_id.in_(event_ids))
    )
    await session.commit()


async def surviving(session: AsyncSession, *events: Event) -> set[uuid.UUID]:
    rows = await session.scalars(
        select(Event.id).where(Event.id.in_([event.id for event in events]))
    )
    return set(rows.all())


class TestPruneEvents:
    async def test_keeps_newest_of_each_object(
        self,
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
    ) -> None:
        lead_id = new_uuid()
        old = [
            await record_event(session, workspace.id, object_id=lead_id)
            for _ in range(3)
        ]
        await backdate(session, 40, *old)

        removed = await tasks.prune_events(ctx)
        later = await record_event(session, workspace.id, object_id=lead_id)

        assert removed == 2
        assert await surviving(session, *old) == {old[2].id}
        assert later.sequence == 4

    async def test_keeps_recent_events(
        self,
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
    ) -> None:
        lead_id = new_uuid()
        events = [
            await record_event(session, workspace.id, object_id=lead_id)
            for _ in range(2)
        ]
        await backdate(session, 29, *events)

        removed = await tasks.prune_events(ctx)

        assert removed == 0
        assert await surviving(session, *events) == {event.id for event in events}

    async def test_retention_is_a_setting(
        self,
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        settings: Settings,
    ) -> None:
        lead_id = new_uuid()
        events = [
            await record_event(session, workspace.id, object_id=lead_id)
            for _ in range(2)
        ]
        await backdate(session, 3, *events)
        short = {
            **ctx,
            "settings": settings.model_copy(update={"event_retention_days": 2}),
        }

        assert await tasks.prune_events(ctx) == 0
        assert await tasks.prune_events(short) == 1
        assert await surviving(session, *events) == {events[1].id}

    async def test_keeps_undispatched_and_pending(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        await create_endpoint(client, auth, receiver.url())
        lead_id = new_uuid()
        pending = await record_event(session, workspace.id, object_id=lead_id)
        await dispatch(ctx, pending)
        undispatched = await record_event(session, workspace.id, object_id=lead_id)
        await record_event(session, workspace.id, object_id=lead_id)
        await backdate(session, 40, pending, undispatched)
        await queue_again(session, undispatched.id)

        removed = await tasks.prune_events(ctx)

        assert removed == 0
        assert await surviving(session, pending, undispatched) == {
            pending.id,
            undispatched.id,
        }

    async def test_deliveries_and_attempts_go_too(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        await create_endpoint(client, auth, receiver.url())
        lead_id = new_uuid()
        old = await record_event(session, workspace.id, object_id=lead_id)
        await dispatch(ctx, old)
        [delivery] = await deliveries_of(session, old.id)
        assert await tasks.deliver_webhook(ctx, str(delivery.id)) == "succeeded"
        await record_event(session, workspace.id, object_id=lead_id)
        await backdate(session, 31, old)

        removed = await tasks.prune_events(ctx)

        assert removed == 1
        deliveries = select(func.count()).select_from(WebhookDelivery)
        attempts = select(func.count()).select_from(WebhookAttempt)
        assert (
            await session.scalar(deliveries.where(WebhookDelivery.id == delivery.id))
            == 0
        )
        assert (
            await session.scalar(
                attempts.where(WebhookAttempt.delivery_id == delivery.id)
            )
            == 0
        )

    def test_runs_hourly(self, settings: Settings) -> None:
        cron_jobs = worker_settings(settings)["cron_jobs"]

        [job] = [job for job in cron_jobs if job.coroutine is tasks.prune_events]

        assert job.minute == {17}
        assert job.run_at_startup is False
