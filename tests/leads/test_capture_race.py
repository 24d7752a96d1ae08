"""Concurrent captures of one new email, each committing on its own connection."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import Lead, LeadTouch, Workspace
from tests.leads.factories import create_form, create_publishable_key


class TestConcurrentCapture:
    async def test_one_lead(
        self,
        committed_client: httpx.AsyncClient,
        committed_auth: dict[str, str],
        committed_workspace: Workspace,
        committing_sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        client, auth = committed_client, committed_auth
        form = await create_form(client, auth)
        key = await create_publishable_key(client, auth, form["id"])
        headers = {"Authorization": f"Bearer {key}"}

        responses = await asyncio.gather(
            *(
                client.post(
                    f"/v1/capture/{form['id']}",
                    json={"email": "race@example.com"},
                    headers=headers,
                )
                for _ in range(4)
            )
        )

        assert [response.status_code for response in responses] == [200] * 4
        async with committing_sessionmaker() as session:
            leads = (
                await session.scalars(
                    select(Lead).where(Lead.workspace_id == committed_workspace.id)
                )
            ).all()
            touches = await session.scalar(
                select(func.count())
                .select_from(LeadTouch)
                .where(LeadTouch.workspace_id == committed_workspace.id)
            )
        assert len(leads) == 1
        assert touches == 4
        assert leads[0].version == 4
