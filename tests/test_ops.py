"""Liveness, readiness and metrics endpoints, with real and unreachable servers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from app.core.db import Database
from app.core.jobs import JobQueue
from app.main import create_app
from app.settings import Settings
from tests.cli_support import free_port


@pytest.fixture
async def unreachable() -> AsyncIterator[tuple[Settings, JobQueue]]:
    """Settings and a queue whose servers listen nowhere (free loopback ports)."""
    settings = Settings(
        env="test",
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/none",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        log_level="WARNING",
    )
    queue = JobQueue(settings.redis_url)
    yield settings, queue
    await queue.close()


async def client_for(
    settings: Settings, database: Database, queue: JobQueue
) -> httpx.AsyncClient:
    app = create_app(settings, database=database, queue=queue)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


class TestHealthz:
    async def test_up(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz")

        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    async def test_needs_no_servers(
        self, unreachable: tuple[Settings, JobQueue]
    ) -> None:
        settings, queue = unreachable
        database = Database(settings)
        async with await client_for(settings, database, queue) as http:
            response = await http.get("/healthz")
        await database.dispose()

        assert response.status_code == 200


class TestReadyz:
    async def test_both_up(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/readyz")

        assert response.status_code == 200
        assert response.json() == {"status": "ok", "database": "ok", "redis": "ok"}

    async def test_redis_down(
        self,
        settings: Settings,
        database: Database,
        unreachable: tuple[Settings, JobQueue],
    ) -> None:
        _, queue = unreachable
        async with await client_for(settings, database, queue) as http:
            response = await http.get("/readyz")

        assert response.status_code == 503
        assert response.json() == {
            "status": "unavailable",
            "database": "ok",
            "redis": "unavailable",
        }

    async def test_database_down(
        self, queue: JobQueue, unreachable: tuple[Settings, JobQueue]
    ) -> None:
        settings, _ = unreachable
        database = Database(settings)
        async with await client_for(settings, database, queue) as http:
            response = await http.get("/readyz")
        await database.dispose()

        assert response.status_code == 503
        assert response.json() == {
            "status": "unavailable",
            "database": "unavailable",
            "redis": "ok",
        }


class TestMetrics:
    async def test_counts_requests(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await client.get("/v1/leads", headers=auth)

        response = await client.get("/metrics")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        body = response.text
        assert "# TYPE salescycle_http_requests_total counter" in body
        # NOTE: the route label is the router-relative template ("/leads") under
        # FastAPI 0.165, without the "/v1" include prefix; either form is accepted.
        counted = re.search(
            r'^salescycle_http_requests_total\{method="GET",route="(/v1)?/leads",'
            r'status="200"\} [1-9]',
            body,
            re.MULTILINE,
        )
        assert counted is not None, body
        assert "salescycle_http_request_duration_seconds_bucket" in body
