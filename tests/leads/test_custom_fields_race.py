"""Definition changes racing other writes, on connections that commit for real."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core.db import Database
from app.core.jobs import JobQueue
from app.customfields.values import Definition, value_problem
from app.main import create_app
from app.models import CustomFieldDefinition, Lead, Workspace
from app.settings import Settings


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


class TestChoiceRemovalRace:
    async def test_stored_values_fit_final_choices(
        self,
        committed_client: httpx.AsyncClient,
        committed_auth: dict[str, str],
        committed_workspace: Workspace,
        committing_sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        client, auth = committed_client, committed_auth
        for round_number in range(3):
            key = f"tier_{round_number}"
            created = await client.post(
                "/v1/custom-fields",
                json={
                    "key": key,
                    "label": "Tier",
                    "type": "choice",
                    "choices": ["gold", "silver"],
                },
                headers=auth,
            )
            field_id = created.json()["id"]

            writes = [
                client.post(
                    "/v1/leads",
                    json={
                        "email": f"c{round_number}-{i}@example.com",
                        "attributes": {key: "silver"},
                    },
                    headers=auth,
                )
                for i in range(10)
            ]
            change = client.patch(
                f"/v1/custom-fields/{field_id}",
                json={"choices": ["gold"]},
                headers=auth,
            )
            # The change starts between writes, so a write may commit before it or
            # wait for its lock.
            responses = await asyncio.gather(*writes[:5], change, *writes[5:])
            changed = responses.pop(5)

            assert changed.status_code in (200, 409)
            assert {item.status_code for item in responses} <= {201, 422}
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
            definition = Definition(
                key=key, type="choice", choices=tuple(final["choices"])
            )
            assert [value_problem(definition, value) for value in values] == [
                None
            ] * len(values)


class TestDefinitionLimitRace:
    async def test_parallel_creates_stop_at_limit(
        self,
        settings: Settings,
        engine: AsyncEngine,
        queue: JobQueue,
        committed_auth: dict[str, str],
        committed_workspace: Workspace,
        committing_sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        limited = settings.model_copy(
            update={"custom_field_max_definitions_per_object_type": 3}
        )
        app = create_app(
            limited, database=Database(limited, engine=engine), queue=queue
        )
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)

        async with httpx.AsyncClient(
            transport=transport, base_url="http://test"
        ) as api:
            responses = await asyncio.gather(
                *(
                    api.post(
                        "/v1/custom-fields",
                        json={"key": f"field_{i}", "label": "F", "type": "text"},
                        headers=committed_auth,
                    )
                    for i in range(8)
                )
            )
        async with committing_sessionmaker() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(CustomFieldDefinition)
                .where(CustomFieldDefinition.workspace_id == committed_workspace.id)
            )

        statuses = sorted(response.status_code for response in responses)
        assert statuses == [201] * 3 + [409] * 5
        assert count == 3
