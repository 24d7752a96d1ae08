"""Concurrent requests on one opportunity, each committing on its own connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core import ids
from app.models import Pipeline, Stage, StageTransition
from tests.customers.factories import create_contact, create_customer
from tests.opportunities.factories import (
    create_lost_reason,
    create_opportunity,
    default_pipeline,
    move,
    stage_ids,
)
from tests.opportunities.test_default_pipeline_race import wait_for_lock_wait


class TestConcurrentMoves:
    async def test_won_and_lost_at_once(
        self,
        committed_client: httpx.AsyncClient,
        committed_auth: dict[str, str],
        committing_sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        client, auth = committed_client, committed_auth
        stages = await stage_ids(client, auth)
        created = await create_opportunity(client, auth)
        reason = await create_lost_reason(client, auth)

        won, lost = await asyncio.gather(
            move(client, auth, created["id"], stages["Closed won"]),
            move(
                client,
                auth,
                created["id"],
                stages["Closed lost"],
                lost_reason_id=reason["id"],
            ),
        )

        statuses = sorted([won.status_code, lost.status_code])
        assert statuses == [200, 409]
        winner = won if won.status_code == 200 else lost
        loser = lost if winner is won else won
        assert loser.json()["code"] == "invalid_transition"
        current = await client.get(f"/v1/opportunities/{created['id']}", headers=auth)
        assert current.json()["status"] == winner.json()["status"]
        async with committing_sessionmaker() as session:
            moves = await session.scalar(
                select(func.count())
                .select_from(StageTransition)
                .where(
                    StageTransition.opportunity_id
                    == ids.decode("opportunity", created["id"])
                )
            )
        assert moves == 2

    async def test_same_if_match_at_once(
        self, committed_client: httpx.AsyncClient, committed_auth: dict[str, str]
    ) -> None:
        client, auth = committed_client, committed_auth
        created = await create_opportunity(client, auth)
        guarded = {**auth, "If-Match": '"1"'}

        responses = await asyncio.gather(
            *(
                client.patch(
                    f"/v1/opportunities/{created['id']}",
                    json={"amount": amount},
                    headers=guarded,
                )
                for amount in (100, 200)
            )
        )

        assert sorted(response.status_code for response in responses) == [200, 412]
        current = await client.get(f"/v1/opportunities/{created['id']}", headers=auth)
        assert current.json()["version"] == 2


async def history_rows(
    committing_sessionmaker: async_sessionmaker[AsyncSession], opportunity_id: str
) -> list[StageTransition]:
    async with committing_sessionmaker() as session:
        rows = await session.scalars(
            select(StageTransition)
            .where(
                StageTransition.opportunity_id
                == ids.decode("opportunity", opportunity_id)
            )
            .order_by(StageTransition.id)
        )
        return list(rows.all())


class TestConcurrentStageMoves:
    async def test_same_if_match_one_wins(
        self,
        committed_client: httpx.AsyncClient,
        committed_auth: dict[str, str],
        committing_sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        client, auth = committed_client, committed_auth
        stages = await stage_ids(client, auth)
        created = await create_opportunity(client, auth)
        guarded = {**auth, "If-Match": '"1"'}
        targets = ["Value proposition", "Objection handling", "Negotiation"]

        responses = await asyncio.gather(
            *(move(client, guarded, created["id"], stages[name]) for name in targets)
        )

        codes = sorted(response.status_code for response in responses)
        assert codes == [200, 412, 412]
        winner = next(response for response in responses if response.status_code == 200)
        rows = await history_rows(committing_sessionmaker, created["id"])
        assert len(rows) == 2
        assert rows[1].from_stage_id == ids.decode("stage", stages["Qualification"])
        assert rows[1].to_stage_id == ids.decode("stage", winner.json()["stage_id"])
        assert rows[1].opportunity_version == 1

    async def test_unguarded_moves_serialize(
        self,
        committed_client: httpx.AsyncClient,
        committed_auth: dict[str, str],
        committing_sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        client, auth = committed_client, committed_auth
        stages = await stage_ids(client, auth)
        created = await create_opportunity(client, auth)
        targets = [
            "Value proposition",
            "Objection handling",
            "Negotiation",
            "Value proposition",
            "Negotiation",
            "Objection handling",
        ]

        responses = await asyncio.gather(
            *(move(client, auth, created["id"], stages[name]) for name in targets)
        )

        assert all(response.status_code == 200 for response in responses)
        rows = await history_rows(committing_sessionmaker, created["id"])
        versions = [row.opportunity_version for row in rows]
        assert len(versions) == len(set(versions))
        assert versions == sorted(versions)
        for previous, current in zip(rows, rows[1:], strict=False):
            assert current.from_stage_id == previous.to_stage_id
            assert current.from_stage_id != current.to_stage_id
        final = await client.get(f"/v1/opportunities/{created['id']}", headers=auth)
        assert ids.decode("stage", final.json()["stage_id"]) == rows[-1].to_stage_id
        assert final.json()["version"] == len(rows)

    async def test_win_races_blocking_objection(
        self,
        committed_client: httpx.AsyncClient,
        committed_auth: dict[str, str],
    ) -> None:
        client, auth = committed_client, committed_auth
        created = await create_opportunity(client, auth)

        won, objection = await asyncio.gather(
            client.post(
                f"/v1/opportunities/{created['id']}/won", json={}, headers=auth
            ),
            client.post(
                f"/v1/opportunities/{created['id']}/objections",
                json={"category": "price", "text": "Too dear", "blocking": True},
                headers=auth,
            ),
        )

        assert objection.status_code == 201
        if won.status_code == 409:
            assert won.json()["objection_ids"] == [objection.json()["id"]]
        else:
            # The objection took the opportunity's row lock after the win committed.
            assert won.status_code == 200
            current = await client.get(
                f"/v1/opportunities/{created['id']}", headers=auth
            )
            assert current.json()["status"] == "won"


class TestConcurrentActivities:
    async def test_notes_on_one_opportunity(
        self, committed_client: httpx.AsyncClient, committed_auth: dict[str, str]
    ) -> None:
        client, auth = committed_client, committed_auth
        created = await create_opportunity(client, auth)
        note = {
            "kind": "note",
            "subject": "n",
            "body": "b",
            "opportunity_id": created["id"],
        }

        responses = await asyncio.gather(
            *(client.post("/v1/activities", json=note, headers=auth) for _ in range(10))
        )

        assert [response.status_code for response in responses] == [201] * 10
        listed = await client.get(
            "/v1/activities",
            params={"opportunity_id": created["id"], "limit": 50},
            headers=auth,
        )
        assert len(listed.json()["data"]) == 10

    async def test_notes_on_customer_and_contact(
        self, committed_client: httpx.AsyncClient, committed_auth: dict[str, str]
    ) -> None:
        client, auth = committed_client, committed_auth
        created = await create_opportunity(client, auth)
        contact = await create_contact(client, auth, created["customer_id"])
        notes = [
            {"kind": "note", "body": "b", "customer_id": created["customer_id"]},
            {"kind": "note", "body": "b", "contact_id": contact["id"]},
            {
                "kind": "call",
                "subject": "c",
                "contact_id": contact["id"],
                "opportunity_id": created["id"],
            },
        ]

        responses = await asyncio.gather(
            *(
                client.post("/v1/activities", json=note, headers=auth)
                for note in notes * 4
            )
        )

        assert [response.status_code for response in responses] == [201] * 12

    async def test_objections_on_one_opportunity(
        self, committed_client: httpx.AsyncClient, committed_auth: dict[str, str]
    ) -> None:
        client, auth = committed_client, committed_auth
        created = await create_opportunity(client, auth)

        responses = await asyncio.gather(
            *(
                client.post(
                    f"/v1/opportunities/{created['id']}/objections",
                    json={"category": "price", "text": "Too dear"},
                    headers=auth,
                )
                for _ in range(8)
            )
        )

        assert [response.status_code for response in responses] == [201] * 8


@asynccontextmanager
async def stage_turned_lost(
    maker: async_sessionmaker[AsyncSession], pipeline_id: str, stage_id: str
) -> AsyncIterator[None]:
    """Hold a stage edit open for the body, then commit it.

    The edit does what PATCH .../stages/{id} does. It locks the pipeline, finds no
    opportunity in the stage, and makes the stage a lost one. The body starts a request
    that must wait for the pipeline, and the edit commits once the request waits.
    """
    async with maker() as edit:
        await edit.execute(
            select(Pipeline)
            .where(Pipeline.id == ids.decode("pipeline", pipeline_id))
            .with_for_update()
        )
        await edit.execute(
            update(Stage)
            .where(Stage.id == ids.decode("stage", stage_id))
            .values(is_lost=True)
        )
        yield
        await wait_for_lock_wait(maker)
        await edit.commit()


class TestStageEditRaces:
    async def test_move_into_stage_turned_lost(
        self,
        committed_client: httpx.AsyncClient,
        committed_auth: dict[str, str],
        committing_sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        client, auth = committed_client, committed_auth
        stages = await stage_ids(client, auth)
        created = await create_opportunity(client, auth)
        target = stages["Value proposition"]

        async with stage_turned_lost(
            committing_sessionmaker, created["pipeline_id"], target
        ):
            moving = asyncio.create_task(move(client, auth, created["id"], target))
        response = await asyncio.wait_for(moving, timeout=10)

        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "lost_reason_id"
        current = await client.get(f"/v1/opportunities/{created['id']}", headers=auth)
        assert current.json()["status"] == "open"
        assert current.json()["stage_id"] == stages["Qualification"]

    async def test_create_in_stage_turned_lost(
        self,
        committed_client: httpx.AsyncClient,
        committed_auth: dict[str, str],
        committing_sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        client, auth = committed_client, committed_auth
        stages = await stage_ids(client, auth)
        pipeline = await default_pipeline(client, auth)
        customer = await create_customer(client, auth)
        target = stages["Value proposition"]

        async with stage_turned_lost(committing_sessionmaker, pipeline["id"], target):
            creating = asyncio.create_task(
                client.post(
                    "/v1/opportunities",
                    json={
                        "customer_id": customer["id"],
                        "name": "n",
                        "stage_id": target,
                    },
                    headers=auth,
                )
            )
        response = await asyncio.wait_for(creating, timeout=10)

        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["code"] == "stage_not_open"
