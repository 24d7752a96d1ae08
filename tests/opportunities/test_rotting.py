"""The sweep that flags idle open opportunities as rotting, once per spell."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.jobs import JobQueue
from app.models import Event
from tests.activities.factories import create_activity
from tests.conftest import TestDatabase
from tests.opportunities.factories import create_opportunity, default_pipeline
from workers import tasks


async def set_rotting_days(
    client: httpx.AsyncClient, auth: dict[str, str], days: int | None
) -> None:
    pipeline = await default_pipeline(client, auth)
    response = await client.patch(
        f"/v1/pipelines/{pipeline['id']}/stages/{pipeline['stages'][0]['id']}",
        json={"rotting_days": days},
        headers=auth,
    )
    assert response.status_code == 200, response.text


async def idle_for(session: AsyncSession, opportunity_id: str, days: int) -> None:
    await session.execute(
        text(
            "UPDATE opportunities SET last_activity_at = now() - make_interval(days => "
            ":days) WHERE id = :id"
        ),
        {"days": days, "id": ids.decode("opportunity", opportunity_id)},
    )


async def rotting_events(session: AsyncSession, opportunity_id: str) -> int:
    rows = await session.scalars(
        select(Event.id).where(
            Event.type == "opportunity.rotting",
            Event.object_id == ids.decode("opportunity", opportunity_id),
        )
    )
    return len(rows.all())


class TestRottingSweep:
    async def test_flags_once_per_spell(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        database: TestDatabase,
        queue: JobQueue,
    ) -> None:
        ctx: dict[str, Any] = {"db": database, "queue": queue}
        await set_rotting_days(client, auth, 7)
        idle = await create_opportunity(client, auth)
        fresh = await create_opportunity(client, auth)
        await idle_for(session, idle["id"], 8)
        await idle_for(session, fresh["id"], 6)

        first = await tasks.sweep_rotting_opportunities(ctx)
        second = await tasks.sweep_rotting_opportunities(ctx)

        assert first == 1
        assert second == 0
        assert await rotting_events(session, idle["id"]) == 1
        fetched = (
            await client.get(f"/v1/opportunities/{idle['id']}", headers=auth)
        ).json()
        assert fetched["rotting"] is True
        assert fetched["rotting_since"] is not None
        assert fetched["version"] == idle["version"]
        listed = await client.get(
            "/v1/opportunities", params={"rotting": "true"}, headers=auth
        )
        assert [item["id"] for item in listed.json()["data"]] == [idle["id"]]

    async def test_activity_clears_and_new_spell(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        database: TestDatabase,
        queue: JobQueue,
    ) -> None:
        ctx: dict[str, Any] = {"db": database, "queue": queue}
        await set_rotting_days(client, auth, 7)
        opportunity = await create_opportunity(client, auth)
        await idle_for(session, opportunity["id"], 10)
        await tasks.sweep_rotting_opportunities(ctx)

        await create_activity(
            client,
            auth,
            kind="call",
            subject="Checked in",
            opportunity_id=opportunity["id"],
        )
        cleared = (
            await client.get(f"/v1/opportunities/{opportunity['id']}", headers=auth)
        ).json()
        await idle_for(session, opportunity["id"], 9)
        await tasks.sweep_rotting_opportunities(ctx)

        assert cleared["rotting"] is False
        assert cleared["rotting_since"] is None
        assert cleared["version"] == opportunity["version"]
        assert await rotting_events(session, opportunity["id"]) == 2
        updated = await session.scalar(
            select(Event).where(
                Event.type == "opportunity.updated",
                Event.object_id == ids.decode("opportunity", opportunity["id"]),
            )
        )
        assert updated is not None
        assert updated.data["rotting"] is False

    async def test_update_and_objection_count_as_activity(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        database: TestDatabase,
        queue: JobQueue,
    ) -> None:
        ctx: dict[str, Any] = {"db": database, "queue": queue}
        await set_rotting_days(client, auth, 7)
        patched = await create_opportunity(client, auth)
        objected = await create_opportunity(client, auth)
        for opportunity in (patched, objected):
            await idle_for(session, opportunity["id"], 8)
            await tasks.sweep_rotting_opportunities(ctx)

        after_patch = await client.patch(
            f"/v1/opportunities/{patched['id']}", json={"amount": 10}, headers=auth
        )
        await client.post(
            f"/v1/opportunities/{objected['id']}/objections",
            json={"category": "need", "text": "Not sure they need it"},
            headers=auth,
        )
        after_objection = await client.get(
            f"/v1/opportunities/{objected['id']}", headers=auth
        )

        assert after_patch.json()["rotting"] is False
        assert after_objection.json()["rotting"] is False

    async def test_stage_without_rotting_days(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        database: TestDatabase,
        queue: JobQueue,
    ) -> None:
        ctx: dict[str, Any] = {"db": database, "queue": queue}
        await set_rotting_days(client, auth, None)
        opportunity = await create_opportunity(client, auth)
        await idle_for(session, opportunity["id"], 400)

        swept = await tasks.sweep_rotting_opportunities(ctx)

        assert swept == 0

    async def test_closed_never_rots(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        database: TestDatabase,
        queue: JobQueue,
    ) -> None:
        ctx: dict[str, Any] = {"db": database, "queue": queue}
        pipeline = await default_pipeline(client, auth)
        won_stage = next(stage for stage in pipeline["stages"] if stage["is_won"])
        await client.patch(
            f"/v1/pipelines/{pipeline['id']}/stages/{won_stage['id']}",
            json={"rotting_days": 1},
            headers=auth,
        )
        opportunity = await create_opportunity(client, auth)
        await client.post(
            f"/v1/opportunities/{opportunity['id']}/won", json={}, headers=auth
        )
        await idle_for(session, opportunity["id"], 30)

        swept = await tasks.sweep_rotting_opportunities(ctx)

        assert swept == 0

    def test_registered_as_sweep(self) -> None:
        assert tasks.sweep_rotting_opportunities in tasks.SWEEPS
        assert tasks.sweep_rotting_opportunities in tasks.FUNCTIONS
