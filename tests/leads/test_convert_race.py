"""Concurrent conversions of one lead, each committing on its own connection."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import Contact, Customer, Opportunity, Workspace


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


class TestConcurrentConversionsOfOneCompany:
    async def test_share_one_customer(
        self,
        committed_client: httpx.AsyncClient,
        committed_auth: dict[str, str],
        committed_workspace: Workspace,
        committing_sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        client, auth = committed_client, committed_auth
        lead_ids = []
        for index in range(4):
            created = await client.post(
                "/v1/leads",
                json={"email": f"person{index}@globex.example"},
                headers=auth,
            )
            assert created.status_code == 201, created.text
            lead_ids.append(created.json()["id"])

        responses = await asyncio.gather(
            *(
                client.post(f"/v1/leads/{lead_id}/convert", json={}, headers=auth)
                for lead_id in lead_ids
            )
        )

        assert [response.status_code for response in responses] == [200] * 4, [
            response.text for response in responses
        ]
        results = [response.json() for response in responses]
        assert len({result["customer_id"] for result in results}) == 1
        assert sorted(result["customer_created"] for result in results) == [
            False,
            False,
            False,
            True,
        ]
        for result in results:
            if not result["customer_created"]:
                assert result["customer_match"] == {
                    "key": "domain",
                    "value": "globex.example",
                }
        assert len({result["contact_id"] for result in results}) == 4
        async with committing_sessionmaker() as session:
            customers = await session.scalar(
                select(func.count())
                .select_from(Customer)
                .where(Customer.workspace_id == committed_workspace.id)
            )
            contacts = await session.scalar(
                select(func.count())
                .select_from(Contact)
                .where(Contact.workspace_id == committed_workspace.id)
            )
        assert customers == 1
        assert contacts == 4
