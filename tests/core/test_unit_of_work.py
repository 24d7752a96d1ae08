from __future__ import annotations

import httpx
import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import Database
from app.core.jobs import QUEUE_NAME, JobQueue
from app.main import create_app
from app.models import Event
from app.settings import Settings
from tests.conftest import TestDatabase
from tests.webhooks.factories import create_endpoint


async def queued_job_ids(redis_client: aioredis.Redis) -> list[str]:
    members = await redis_client.zrange(QUEUE_NAME, 0, -1)
    return [member.decode() for member in members]


class TestJobsAfterCommit:
    async def test_enqueued_after_commit(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        redis_client: aioredis.Redis,
    ) -> None:
        await create_endpoint(client, auth, "http://127.0.0.1:9/hooks")
        before = await queued_job_ids(redis_client)

        response = await client.post(
            "/v1/leads", json={"email": "a@example.com"}, headers=auth
        )

        assert response.status_code == 201
        event_id = await session.scalar(
            select(Event.id).where(Event.type == "lead.created")
        )
        after = await queued_job_ids(redis_client)
        assert sorted(set(after) - set(before)) == [f"dispatch:{event_id}"]

    async def test_rollback_enqueues_nothing(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        redis_client: aioredis.Redis,
    ) -> None:
        await create_endpoint(client, auth, "http://127.0.0.1:9/hooks")
        await client.post("/v1/leads", json={"email": "a@example.com"}, headers=auth)
        before = await queued_job_ids(redis_client)
        # The endpoint's catch-up, and the dispatch of each event.
        assert len(before) == 3

        duplicate = await client.post(
            "/v1/leads", json={"email": "a@example.com"}, headers=auth
        )

        assert duplicate.status_code == 409
        assert await queued_job_ids(redis_client) == before


class TestDependencyOutages:
    async def test_redis_down_write_succeeds(
        self,
        settings: Settings,
        database: TestDatabase,
        auth: dict[str, str],
        session: AsyncSession,
    ) -> None:
        dead_queue = JobQueue("redis://127.0.0.1:1/0")
        app = create_app(settings, database=database, queue=dead_queue)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)

        async with httpx.AsyncClient(
            transport=transport, base_url="http://test"
        ) as http:
            response = await http.post(
                "/v1/leads", json={"email": "a@example.com"}, headers=auth
            )

        assert response.status_code == 201
        assert (await session.scalars(select(Event.type))).all() == ["lead.created"]

    async def test_database_down_is_503(
        self, settings: Settings, auth: dict[str, str]
    ) -> None:
        unreachable = settings.model_copy(
            update={"database_url": "postgresql+asyncpg://postgres@127.0.0.1:1/none"}
        )
        database = Database(unreachable)
        app = create_app(
            unreachable, database=database, queue=JobQueue(settings.redis_url)
        )
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)

        async with httpx.AsyncClient(
            transport=transport, base_url="http://test"
        ) as http:
            response = await http.get("/v1/leads", headers=auth)
            ready = await http.get("/readyz")

        await database.dispose()
        assert response.status_code == 503
        assert response.json()["code"] == "service_unavailable"
        assert response.headers["retry-after"] == "5"
        assert ready.status_code == 503
        assert ready.json()["database"] == "unavailable"
