"""The conversion benchmark, run small: every lead must end won, and nothing is timed."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from benchmarks.config import BenchConfig
from benchmarks.conversion import FULL
from benchmarks.environment import BenchServers, database_name, with_database
from benchmarks.report import render
from benchmarks.runner import run_conversion
from tests.conftest import Servers


@pytest.fixture
def conversion_servers(servers: Servers, redis_client: aioredis.Redis) -> BenchServers:
    """A database of its own, apart from those of the other benchmark tests."""
    database_url = with_database(
        servers.database_url,
        database_name(servers.database_url) + "_bench_conversion",
    )
    return BenchServers(database_url=database_url, redis_url=servers.redis_url)


class TestConversionSmokeRun:
    def test_every_lead_won(self, conversion_servers: BenchServers) -> None:
        config = BenchConfig().smoke()

        report = run_conversion(config, servers=conversion_servers)

        conversion = report.conversion
        assert conversion is not None
        assert conversion.leads == config.conversion_leads
        # Convert, then three open stages after the first and the won stage.
        assert conversion.requests_per_lead == 5
        assert [run.label for run in conversion.bare_runs] == [
            "bare before",
            "bare after",
        ]
        assert conversion.full.label == FULL
        for run in [*conversion.bare_runs, conversion.full]:
            assert run.leads == config.conversion_leads
            assert run.requests == 5 * config.conversion_leads
            assert run.seconds > 0
            assert run.requests_per_second > 0
            assert run.cpu_ms_per_request > 0
        assert conversion.ratio > 0
        assert conversion.cpu_ratio > 0
        assert [check.name for check in report.checks] == [
            "lead conversion to won full/bare req/s"
        ]
        assert "full/bare" in render(report)
