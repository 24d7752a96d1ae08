"""Concurrent creates of one customer domain or one contact email, each request
committing on its own connection."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import Contact, Customer, Event, Workspace

RACERS = 6


class TestConcurrentCustomerCreate:
    async def test_one_domain_one_customer(
        self,
        committed_client: httpx.AsyncClient,
        committed_auth: dict[str, str],
        committed_workspace: Workspace,
        committing_sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        responses = await asyncio.gather(
            *(
                committed_client.post(
                    "/v1/customers",
                    json={"name": f"Globex {index}", "domain": "globex.example"},
                    headers=committed_auth,
                )
                for index in range(RACERS)
            )
        )

        statuses = sorted(response.status_code for response in responses)
        assert statuses == [201] + [409] * (RACERS - 1)
        winner = next(r for r in responses if r.status_code == 201).json()
        for response in responses:
            if response.status_code == 409:
                assert response.json()["code"] == "duplicate_customer"
                assert response.json()["existing_id"] == winner["id"]
        async with committing_sessionmaker() as session:
            customers = await session.scalar(
                select(func.count())
                .select_from(Customer)
                .where(Customer.workspace_id == committed_workspace.id)
            )
            events = await session.scalar(
                select(func.count())
                .select_from(Event)
                .where(
                    Event.workspace_id == committed_workspace.id,
                    Event.type == "customer.created",
                )
            )
        assert customers == 1
        assert events == 1

    async def test_link_all_get_one(
        self,
        committed_client: httpx.AsyncClient,
        committed_auth: dict[str, str],
    ) -> None:
        responses = await asyncio.gather(
            *(
                committed_client.post(
                    "/v1/customers",
                    json={
                        "name": "Globex",
                        "domain": "globex.example",
                        "on_duplicate": "link",
                    },
                    headers=committed_auth,
                )
                for _ in range(RACERS)
            )
        )

        statuses = sorted(response.status_code for response in responses)
        assert statuses == [200] * (RACERS - 1) + [201]
        assert len({response.json()["id"] for response in responses}) == 1


class TestConcurrentContactCreate:
    async def test_one_email_one_contact(
        self,
        committed_client: httpx.AsyncClient,
        committed_auth: dict[str, str],
        committed_workspace: Workspace,
        committing_sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        created = await committed_client.post(
            "/v1/customers", json={"name": "Globex"}, headers=committed_auth
        )
        assert created.status_code == 201, created.text
        customer_id = created.json()["id"]

        responses = await asyncio.gather(
            *(
                committed_client.post(
                    f"/v1/customers/{customer_id}/contacts",
                    json={"email": f"{'ADA' if index % 2 else 'ada'}@globex.example"},
                    headers=committed_auth,
                )
                for index in range(RACERS)
            )
        )

        statuses = sorted(response.status_code for response in responses)
        assert statuses == [201] + [409] * (RACERS - 1)
        winner = next(r for r in responses if r.status_code == 201).json()
        for response in responses:
            if response.status_code == 409:
                assert response.json()["existing_id"] == winner["id"]
        async with committing_sessionmaker() as session:
            contacts = await session.scalar(
                select(func.count())
                .select_from(Contact)
                .where(Contact.workspace_id == committed_workspace.id)
            )
        assert contacts == 1
