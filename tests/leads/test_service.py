from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.db import Database
from app.core.ids import new_uuid
from app.leads.errors import DuplicateLead
from app.leads.schemas import LeadCreate, LeadUpdate
from app.leads.service import lead_service
from app.models import Event, Lead, Workspace
from app.settings import Settings


def _principal(workspace: Workspace) -> Principal:
    return Principal(
        api_key_id=new_uuid(),
        workspace_id=workspace.id,
        scopes=frozenset({"leads:write"}),
        kind="secret",
    )


class TestCreateThenUpdate:
    async def test_same_session(
        self, session: AsyncSession, workspace: Workspace
    ) -> None:
        principal = _principal(workspace)
        created = await lead_service.create(
            session, principal, LeadCreate(email="grace@example.com")
        )

        updated = await lead_service.update(
            session,
            principal,
            created.id,
            LeadUpdate(company="Navy"),
            if_match='"1"',
        )

        assert updated is created
        assert updated.version == 2
        assert updated.company == "Navy"
        assert await session.get(Lead, created.id) is created
        stored = (
            await session.execute(
                select(Event.type, Event.sequence)
                .where(Event.object_id == created.id)
                .order_by(Event.sequence)
            )
        ).all()
        assert [tuple(row) for row in stored] == [
            ("lead.created", 1),
            ("lead.updated", 2),
        ]


class TestConcurrentCreate:
    async def test_duplicate_waits_and_is_named(self, settings: Settings) -> None:
        # Two real connections, because the race needs two transactions; the rows are
        # committed, so the workspace and everything under it is deleted afterwards.
        database = Database(settings)
        workspace_id = new_uuid()
        async with database.session() as setup:
            setup.add(Workspace(id=workspace_id, name="Race"))
            await setup.commit()
        principal = Principal(
            api_key_id=new_uuid(),
            workspace_id=workspace_id,
            scopes=frozenset({"leads:write"}),
            kind="secret",
        )
        payload = LeadCreate(email="ada@race.example")
        try:
            async with database.session() as first, database.session() as second:
                winner = await lead_service.create(first, principal, payload)
                loser = asyncio.create_task(
                    lead_service.create(second, principal, payload)
                )
                # The second create cannot see the uncommitted lead, so it passes the
                # duplicate check and waits on the unique index.
                await asyncio.sleep(0.5)
                waited = not loser.done()
                await first.commit()
                with pytest.raises(DuplicateLead) as raised:
                    await loser
                await second.rollback()
        finally:
            async with database.session() as cleanup:
                await cleanup.execute(
                    delete(Workspace).where(Workspace.id == workspace_id)
                )
                await cleanup.commit()
            await database.dispose()

        assert waited
        assert raised.value.extra["existing_id"] == ids.encode("lead", winner.id)
        assert raised.value.extra["matched_key"] == "email"
