"""Concurrent requests on one opportunity, each committing on its own connection."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core import ids
from app.models import StageTransition
from tests.opportunities.factories import (
    create_lost_reason,
    create_opportunity,
    move,
    stage_ids,
)


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
