"""A type change racing lead writes, on connections that commit for real."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.customfields.values import Definition, value_problem
from app.models import Lead, Workspace


class TestTypeChangeRace:
    async def test_stored_values_fit_final_type(
        self,
        committed_client: httpx.AsyncClient,
        committed_auth: dict[str, str],
        committed_workspace: Workspace,
        committing_sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        client, auth = committed_client, committed_auth
        for round_number in range(3):
            key = f"budget_{round_number}"
            created = await client.post(
                "/v1/custom-fields",
                json={"key": key, "label": "Budget", "type": "number"},
                headers=auth,
            )
            field_id = created.json()["id"]

            writes = [
                client.post(
                    "/v1/leads",
                    json={
                        "email": f"r{round_number}-{i}@example.com",
                        "attributes": {key: i},
                    },
                    headers=auth,
                )
                for i in range(10)
            ]
            change = client.patch(
                f"/v1/custom-fields/{field_id}", json={"type": "text"}, headers=auth
            )
            responses = await asyncio.gather(change, *writes)

            assert responses[0].status_code in (200, 409)
            assert {item.status_code for item in responses[1:]} <= {201, 422}
            final = (
                await client.get(f"/v1/custom-fields/{field_id}", headers=auth)
            ).json()
            async with committing_sessionmaker() as session:
                values = (
                    await session.scalars(
                        select(Lead.attributes[key]).where(
                            Lead.workspace_id == committed_workspace.id,
                            Lead.attributes.has_key(key),
                        )
                    )
                ).all()
            definition = Definition(key=key, type=final["type"])
            assert [value_problem(definition, value) for value in values] == [
                None
            ] * len(values)
