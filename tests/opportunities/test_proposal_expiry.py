"""The sweep that emits proposal.expired once, after valid_until in the proposal's zone."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.jobs import JobQueue
from app.models import Event, Proposal
from app.opportunities.proposals import proposal_service
from tests.conftest import TestDatabase
from tests.opportunities.test_proposals import create_proposal, sent_proposal
from workers import tasks


async def set_validity(
    session: AsyncSession, proposal_id: str, valid_until: date, timezone: str = "UTC"
) -> None:
    await session.execute(
        update(Proposal)
        .where(Proposal.id == ids.decode("proposal", proposal_id))
        .values(valid_until=valid_until, timezone=timezone)
    )
    await session.commit()


async def expired_events(session: AsyncSession, proposal_id: str) -> list[Event]:
    rows = await session.scalars(
        select(Event).where(
            Event.type == "proposal.expired",
            Event.object_id == ids.decode("proposal", proposal_id),
        )
    )
    return list(rows.all())


async def sweep_at(database: TestDatabase, now: datetime) -> int:
    async with database.session() as session:
        count = await proposal_service.sweep_expired(session, batch=10, now=now)
        await session.commit()
    return count


class TestExpirySweep:
    async def test_emits_once_per_proposal(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        database: TestDatabase,
        queue: JobQueue,
    ) -> None:
        ctx: dict[str, Any] = {"db": database, "queue": queue}
        _, proposal = await sent_proposal(client, auth)
        _, fresh = await sent_proposal(client, auth)
        await set_validity(session, proposal["id"], date(2020, 1, 1))

        first = await tasks.sweep_expired_proposals(ctx)
        second = await tasks.sweep_expired_proposals(ctx)

        assert first == 1
        assert second == 0
        [event] = await expired_events(session, proposal["id"])
        assert event.data["id"] == proposal["id"]
        assert event.data["status"] == "expired"
        assert event.data["total"] == proposal["total"]
        assert len(event.data["lines"]) == 2
        assert event.actor == "system"
        assert await expired_events(session, fresh["id"]) == []
        fetched = await client.get(f"/v1/proposals/{proposal['id']}", headers=auth)
        assert fetched.json()["status"] == "expired"
        assert fetched.json()["version"] == proposal["version"]

    async def test_waits_for_midnight_in_zone(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        database: TestDatabase,
    ) -> None:
        _, ahead = await sent_proposal(client, auth)
        _, behind = await sent_proposal(client, auth)
        # 2026-03-11 begins at 2026-03-10T10:00Z in Kiritimati (UTC+14) and at
        # 2026-03-11T11:00Z in Pago Pago (UTC-11).
        await set_validity(
            session, ahead["id"], date(2026, 3, 10), "Pacific/Kiritimati"
        )
        await set_validity(
            session, behind["id"], date(2026, 3, 10), "Pacific/Pago_Pago"
        )

        before = await sweep_at(database, datetime(2026, 3, 10, 9, 59, tzinfo=UTC))
        at_ahead = await sweep_at(database, datetime(2026, 3, 10, 10, 0, tzinfo=UTC))
        late_behind = await sweep_at(
            database, datetime(2026, 3, 11, 10, 59, tzinfo=UTC)
        )
        at_behind = await sweep_at(database, datetime(2026, 3, 11, 11, 0, tzinfo=UTC))

        assert before == 0
        assert at_ahead == 1
        assert len(await expired_events(session, ahead["id"])) == 1
        assert late_behind == 0
        assert at_behind == 1
        assert len(await expired_events(session, behind["id"])) == 1

    async def test_skips_answered_and_drafts(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        database: TestDatabase,
    ) -> None:
        _, accepted = await sent_proposal(client, auth)
        response = await client.post(
            f"/v1/proposals/{accepted['id']}/accept", json={}, headers=auth
        )
        assert response.status_code == 200, response.text
        _, rejected = await sent_proposal(client, auth)
        response = await client.post(
            f"/v1/proposals/{rejected['id']}/reject", json={}, headers=auth
        )
        assert response.status_code == 200, response.text
        opportunity, _ = await sent_proposal(client, auth)
        draft = await create_proposal(client, auth, opportunity["id"])
        for proposal in (accepted, rejected, draft):
            await set_validity(session, proposal["id"], date(2020, 1, 1))

        swept = await sweep_at(database, datetime.now(UTC))

        assert swept == 0
        for proposal in (accepted, rejected, draft):
            assert await expired_events(session, proposal["id"]) == []

    async def test_backlog_spans_sweeps(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        database: TestDatabase,
    ) -> None:
        proposals = [(await sent_proposal(client, auth))[1] for _ in range(3)]
        for proposal in proposals:
            await set_validity(session, proposal["id"], date(2020, 1, 1))

        async with database.session() as work:
            first = await proposal_service.sweep_expired(work, batch=2)
            second = await proposal_service.sweep_expired(work, batch=2)
            third = await proposal_service.sweep_expired(work, batch=2)
            await work.commit()

        assert (first, second, third) == (2, 1, 0)
        for proposal in proposals:
            assert len(await expired_events(session, proposal["id"])) == 1
