"""The listing benchmark, run small: it must work, and it times nothing."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import redis.asyncio as aioredis

from app.main import create_app
from app.settings import Settings
from benchmarks.environment import BenchServers, database_name, with_database
from benchmarks.listing import (
    PAGE_SIZE,
    WORKLOADS,
    deep_cursor,
    measure,
    render,
    seed,
)
from benchmarks.seed import prepare_schema
from tests.conftest import Servers


@pytest.fixture
def listing_servers(servers: Servers, redis_client: aioredis.Redis) -> BenchServers:
    """A database of its own, apart from the one of the harness smoke test."""
    database_url = with_database(
        servers.database_url, database_name(servers.database_url) + "_bench_listing"
    )
    return BenchServers(database_url=database_url, redis_url=servers.redis_url)


class TestListingBenchmark:
    async def test_every_workload_measured(self, listing_servers: BenchServers) -> None:
        results = await measure(listing_servers, leads=1_200, depth=100, requests=2)

        assert [item.title for item in results] == [item.title for item in WORKLOADS]
        for item in results:
            assert item.first_page_ms > 0
            assert item.deep_page_ms > 0
            assert item.ratio > 0
        assert "| status=working, sort=-score |" in render(results, 1_200)

    async def test_deep_cursor_matches_walk(
        self, listing_servers: BenchServers
    ) -> None:
        url = listing_servers.database_url
        await _prepare(url)
        workspace_id, api_key = await seed(url, 1_200)
        app = create_app(
            Settings(database_url=url, redis_url=listing_servers.redis_url)
        )
        headers = {"Authorization": f"Bearer {api_key}"}
        transport = httpx.ASGITransport(app=app)

        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
        ):
            for workload in WORKLOADS:
                params = {**workload.params, "limit": str(PAGE_SIZE)}
                walked = (
                    await client.get("/v1/leads", params=params, headers=headers)
                ).json()
                built = await deep_cursor(url, workspace_id, workload, PAGE_SIZE)
                assert built == walked["next_cursor"]


async def _prepare(url: str) -> None:
    await asyncio.to_thread(prepare_schema, url)
