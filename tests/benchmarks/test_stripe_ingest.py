"""The Stripe benchmark, run small: every event applied once, and nothing is timed."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import redis.asyncio as aioredis

from benchmarks.config import BenchConfig
from benchmarks.environment import BenchServers, database_name, with_database
from benchmarks.report import render
from benchmarks.runner import run_stripe
from benchmarks.stripe_ingest import FULL, deliveries
from tests.conftest import Servers


@pytest.fixture
def stripe_servers(servers: Servers, redis_client: aioredis.Redis) -> BenchServers:
    """A database of its own, apart from those of the other benchmark tests."""
    database_url = with_database(
        servers.database_url, database_name(servers.database_url) + "_bench_stripe"
    )
    return BenchServers(database_url=database_url, redis_url=servers.redis_url)


class TestDeliveries:
    def test_each_event_twice(self) -> None:
        refs = [f"inv_{number}" for number in range(50)]

        bodies = deliveries("run", refs)

        counts = Counter(json.loads(body)["id"] for body in bodies)
        assert len(bodies) == 100
        assert len(counts) == 50
        assert set(counts.values()) == {2}

    def test_invoice_in_metadata(self) -> None:
        [first, _] = deliveries("run", ["inv_only"])

        event = json.loads(first)

        assert event["type"] == "payment_intent.succeeded"
        assert event["data"]["object"]["metadata"] == {"invoice_id": "inv_only"}


class TestStripeSmokeRun:
    def test_every_event_applied_once(self, stripe_servers: BenchServers) -> None:
        config = BenchConfig().smoke()

        report = run_stripe(config, servers=stripe_servers)

        stripe = report.stripe
        assert stripe is not None
        assert stripe.deliveries == config.stripe_events
        assert stripe.events == config.stripe_events // 2
        assert [run.label for run in stripe.bare_runs] == ["bare before", "bare after"]
        assert stripe.full.label == FULL
        for run in [*stripe.bare_runs, stripe.full]:
            assert run.deliveries == config.stripe_events
            assert run.events == config.stripe_events // 2
            assert run.deliveries_per_second > 0
        assert stripe.full.applied_seconds is not None
        assert stripe.full.applied_seconds > 0
        assert stripe.ratio > 0
        assert [check.name for check in report.checks] == [
            "Stripe webhooks full/bare deliveries/s"
        ]
        assert "full/bare" in render(report)
