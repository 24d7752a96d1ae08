"""The sweep that emits activity.overdue once per task past its due date."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.activities.service import activity_service
from app.core.jobs import JobQueue
from app.models import Event
from tests.activities.factories import create_activity
from tests.conftest import TestDatabase
from tests.leads.test_router import create_lead
from workers import tasks


def at(days: int) -> str:
    moment = datetime.now(UTC) + timedelta(days=days)
    return moment.isoformat().replace("+00:00", "Z")


async def overdue_events(session: AsyncSession) -> list[str]:
    rows = await session.scalars(
        select(Event).where(Event.type == "activity.overdue").order_by(Event.id)
    )
    return [row.data["id"] for row in rows]


class TestOverdueSweep:
    async def test_emits_once(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        database: TestDatabase,
        queue: JobQueue,
    ) -> None:
        ctx: dict[str, Any] = {"db": database, "queue": queue}
        lead = await create_lead(client, auth)
        late = await create_activity(
            client, auth, kind="task", subject="Late", due_at=at(-1), lead_id=lead["id"]
        )
        await create_activity(
            client, auth, kind="task", subject="Later", due_at=at(1), lead_id=lead["id"]
        )
        done = await create_activity(
            client, auth, kind="task", subject="Done", due_at=at(-1), lead_id=lead["id"]
        )
        await client.post(
            f"/v1/activities/{done['id']}/complete", json={}, headers=auth
        )

        first = await tasks.sweep_overdue_activities(ctx)
        second = await tasks.sweep_overdue_activities(ctx)

        assert first == 1
        assert second == 0
        assert await overdue_events(session) == [late["id"]]
        fetched = await client.get(f"/v1/activities/{late['id']}", headers=auth)
        assert fetched.headers["ETag"] == '"1"'

    async def test_new_due_date_rearms(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        database: TestDatabase,
        queue: JobQueue,
    ) -> None:
        ctx: dict[str, Any] = {"db": database, "queue": queue}
        lead = await create_lead(client, auth)
        task = await create_activity(
            client, auth, kind="task", subject="Late", due_at=at(-2), lead_id=lead["id"]
        )
        await tasks.sweep_overdue_activities(ctx)

        await client.patch(
            f"/v1/activities/{task['id']}", json={"due_at": at(-1)}, headers=auth
        )
        rerun = await tasks.sweep_overdue_activities(ctx)

        assert rerun == 1
        assert await overdue_events(session) == [task["id"], task["id"]]

    async def test_batch_bounds_tied_due_times(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        database: TestDatabase,
    ) -> None:
        lead = await create_lead(client, auth)
        due_at = at(-1)
        for number in range(5):
            await create_activity(
                client,
                auth,
                kind="task",
                subject=f"Late {number}",
                due_at=due_at,
                lead_id=lead["id"],
            )

        counts = []
        for _ in range(4):
            async with database.session() as session:
                counts.append(await activity_service.sweep_overdue(session, batch=2))
                await session.commit()

        # Every task shares the due time, and each sweep still takes two at most.
        assert counts == [2, 2, 1, 0]

    def test_registered(self) -> None:
        assert tasks.sweep_overdue_activities in tasks.SWEEPS
        assert tasks.sweep_overdue_activities in tasks.FUNCTIONS
