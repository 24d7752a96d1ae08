"""Concurrent conversions of one lead, each committing on its own connection."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import Customer, Opportunity, Workspace


class TestConcurrentConversion:
    async def test_one_wins(
        self,
        committed_client: httpx.AsyncClient,
        committed_auth: dict[str, str],
        committed_workspace: Workspace,
        committing_sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        client, auth = committed_client, committed_auth
        created = await client.post(
            "/v1/leads", json={"email": "race@example.com"}, headers=auth
        )
        assert created.status_code == 201, created.text
        lead_id = created.json()["id"]

        responses = await asyncio.gather(
            *(
                client.post(f"/v1/leads/{lead_id}/convert", json={}, headers=auth)
                for _ in range(3)
            )
        )

        statuses = sorted(response.status_code for response in responses)
        assert statuses == [200, 409, 409]
        winner = next(r for r in responses if r.status_code == 200).json()
        for response in responses:
            if response.status_code == 409:
                assert response.json()["customer_id"] == winner["customer_id"]
        async with committing_sessionmaker() as session:
            customers = await session.scalar(
                select(func.count())
                .select_from(Customer)
                .where(Customer.workspace_id == committed_workspace.id)
            )
            opportunities = await session.scalar(
                select(func.count())
                .select_from(Opportunity)
                .where(Opportunity.workspace_id == committed_workspace.id)
            )
        assert customers == 1
        assert opportunities == 1
