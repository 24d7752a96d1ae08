"""The benchmark harness, run in its smoke mode: it must work, and it times nothing."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis

from app.leads.importer import RowValidator, ValidRow, read_file
from benchmarks.config import BenchConfig
from benchmarks.environment import (
    DATABASE_URL_ENV,
    OWNER_KEY,
    BenchServers,
    BenchSetupError,
    asyncpg_dsn,
    check_database_name,
    claim_redis,
    database_name,
    release_redis,
    with_database,
)
from benchmarks.imports import build_csv
from benchmarks.load import percentile
from benchmarks.report import render
from benchmarks.runner import BASELINE, TUNED, run
from tests.conftest import Servers


@pytest.fixture
def bench_servers(servers: Servers, redis_client: aioredis.Redis) -> BenchServers:
    """A database of its own next to the test database, and the flushed test Redis."""
    database_url = os.environ.get(DATABASE_URL_ENV) or with_database(
        servers.database_url, database_name(servers.database_url) + "_bench"
    )
    return BenchServers(database_url=database_url, redis_url=servers.redis_url)


@pytest.fixture
async def empty_redis(redis_client: aioredis.Redis) -> AsyncIterator[aioredis.Redis]:
    yield redis_client
    await redis_client.flushdb()


async def _count_full_stack_events(database_url: str) -> int:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        # The bare app writes its events as actor 'bench'; the full stack writes the
        # API key that created the lead.
        count: int = await connection.fetchval(
            "SELECT count(*) FROM events WHERE type = 'lead.created' "
            "AND actor LIKE 'key!_%' ESCAPE '!'"
        )
        return count
    finally:
        await connection.close()


class TestSmokeRun:
    def test_every_workload_measured(self, bench_servers: BenchServers) -> None:
        config = BenchConfig().smoke()

        report = run(config, servers=bench_servers)

        assert [item.title for item in report.workloads] == [
            "GET /v1/leads/{id}",
            "POST /v1/leads",
        ]
        for summary in report.workloads:
            for server in (summary.bare, summary.full):
                assert server.requests > 0
                assert server.requests_per_second > 0
                assert 0 < server.p50_ms <= server.p99_ms
                assert server.peak_rss_mb > 0
                assert server.cpu_ms_per_request > 0
            assert summary.ratio > 0
            assert summary.cpu_ratio > 0
        post = report.workloads[1]
        events = asyncio.run(_count_full_stack_events(bench_servers.database_url))
        assert events >= post.full.requests
        assert [latency.label for latency in report.jobs] == [TUNED, BASELINE]
        for latency in report.jobs:
            assert latency.jobs == config.jobs
            assert 0 < latency.p50_ms <= latency.p95_ms <= latency.max_ms
        assert [check.name for check in report.checks] == [
            "GET /v1/leads/{id} full/bare req/s",
            "POST /v1/leads full/bare req/s",
            "API peak RSS under load",
            "job start p95",
            f"CSV import of {config.import_rows} rows full/bare rows/s",
            "nurture emails worker/bare emails/s",
            "lead conversion to won full/bare req/s",
            "Stripe webhooks full/bare deliveries/s",
        ]
        assert report.stripe is not None
        assert report.stripe.full.applied_seconds is not None
        assert report.conversion is not None
        assert report.conversion.full.requests == 5 * config.conversion_leads
        imports = report.imports
        assert imports is not None
        assert imports.rows == config.import_rows
        assert imports.full_seconds > 0
        assert imports.bare_seconds > 0
        assert imports.ratio > 0
        nurture = report.nurture
        assert nurture is not None
        assert nurture.full.messages == config.nurture_enrollments
        assert nurture.ratio > 0
        table = render(report)
        assert "bare COPY" in table
        assert "GET /v1/leads/{id}" in table
        assert "full/bare" in table
        assert "arq default" in table
        assert "worker/bare" in table


class TestImportFile:
    def test_imports_without_errors(self) -> None:
        content = build_csv(30)

        parsed = read_file(content, {}, max_rows=100)
        validator = RowValidator.for_file(parsed, date_format=None, phone_region=None)
        results = [validator.validate(record) for record in parsed.records]

        assert len(results) == 30
        assert all(isinstance(result, ValidRow) for result in results)


class TestGuards:
    def test_database_name_without_bench(self) -> None:
        with pytest.raises(BenchSetupError, match="contains 'bench'"):
            check_database_name("postgresql://postgres@127.0.0.1:5432/salescycle")

    def test_database_name_with_bench(self) -> None:
        check_database_name("postgresql://postgres@127.0.0.1:5432/salescycle_bench")

    async def test_redis_with_foreign_keys(self, empty_redis: aioredis.Redis) -> None:
        await empty_redis.set("somebody:else", "1")

        with pytest.raises(BenchSetupError, match="keys that no benchmark run created"):
            await claim_redis(empty_redis)

        assert await empty_redis.get("somebody:else") == b"1"

    async def test_redis_left_by_a_run(self, empty_redis: aioredis.Redis) -> None:
        await empty_redis.set(OWNER_KEY, "1")
        await empty_redis.set("arq:job:left-over", "1")

        await claim_redis(empty_redis)

        assert await empty_redis.exists("arq:job:left-over") == 0
        assert await empty_redis.exists(OWNER_KEY) == 1
        await release_redis(empty_redis)
        assert await empty_redis.dbsize() == 0


class TestPercentile:
    @pytest.mark.parametrize(
        ("fraction", "expected"),
        [(0.0, 1.0), (0.5, 5.0), (0.95, 10.0), (0.99, 10.0), (1.0, 10.0)],
    )
    def test_nearest_rank(self, fraction: float, expected: float) -> None:
        values = [float(value) for value in range(1, 11)]

        assert percentile(values, fraction) == expected

    def test_empty(self) -> None:
        assert percentile([], 0.5) == 0.0
