"""Liveness, readiness and metrics endpoints, with real and unreachable servers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.clock import utcnow
from app.core.db import Database, PendingJob
from app.core.jobs import JobQueue
from app.main import create_app
from app.models import (
    Event,
    ProviderEvent,
    UndispatchedEvent,
    WebhookDelivery,
    WebhookEndpoint,
    Workspace,
)
from app.settings import Settings
from app.webhooks.signing import generate_secret
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


def samples(body: str) -> dict[str, float]:
    """Map each sample of a metrics page to its value, keyed by name and labels."""
    values = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            labels = ",".join(
                f"{label}={value}" for label, value in sorted(sample.labels.items())
            )
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = (
                sample.value
            )
    return values


def event_row(workspace: Workspace, *, age: timedelta) -> Event:
    return Event(
        id=ids.new_uuid(),
        workspace_id=workspace.id,
        type="lead.created",
        object_type="lead",
        object_id=ids.new_uuid(),
        sequence=1,
        data={},
        created_at=utcnow() - age,
    )


def provider_event(status: str, *, age: timedelta) -> ProviderEvent:
    event_id = f"evt_{ids.new_uuid().hex}"
    return ProviderEvent(
        id=ids.new_uuid(),
        provider="stripe",
        event_id=event_id,
        type="charge.refunded",
        payload={"id": event_id, "data": {"object": {}}},
        status=status,
        attempts=1,
        received_at=utcnow() - age,
    )


class TestBacklogGauges:
    async def test_reads_the_waiting_work(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        workspace: Workspace,
        queue: JobQueue,
    ) -> None:
        oldest = event_row(workspace, age=timedelta(seconds=90))
        newer = event_row(workspace, age=timedelta(seconds=5))
        dispatched = event_row(workspace, age=timedelta(hours=1))
        endpoint = WebhookEndpoint(
            workspace_id=workspace.id,
            url="https://hooks.example.com/in",
            event_types=["*"],
            secret=generate_secret(),
        )
        session.add_all([oldest, newer, dispatched, endpoint])
        await session.flush()
        session.add_all(
            [
                UndispatchedEvent(event_id=oldest.id),
                UndispatchedEvent(event_id=newer.id),
            ]
        )
        now = utcnow()
        deliveries = [
            # Due for two minutes, and not leased.
            (now - timedelta(minutes=2), None, "pending"),
            # Leased: its request is being sent.
            (now - timedelta(minutes=10), now + timedelta(minutes=1), "pending"),
            # Retried later.
            (now + timedelta(hours=1), None, "pending"),
            (None, None, "succeeded"),
        ]
        for next_attempt_at, claimed_until, status in deliveries:
            event = event_row(workspace, age=timedelta(hours=1))
            session.add(event)
            await session.flush()
            session.add(
                WebhookDelivery(
                    workspace_id=workspace.id,
                    endpoint_id=endpoint.id,
                    event_id=event.id,
                    status=status,
                    next_attempt_at=next_attempt_at,
                    claimed_until=claimed_until,
                )
            )
            await session.flush()
        session.add_all(
            [
                provider_event("received", age=timedelta(seconds=1)),
                provider_event("held", age=timedelta(minutes=30)),
                provider_event("held", age=timedelta(minutes=1)),
                provider_event("failed", age=timedelta(minutes=3)),
                provider_event("processed", age=timedelta(minutes=3)),
            ]
        )
        await session.commit()
        for name in ("a", "b"):
            await queue.enqueue(
                PendingJob("dispatch_event", (name,), f"backlog-{name}")
            )

        response = await client.get("/metrics")

        assert response.status_code == 200
        values = samples(response.text)
        assert values["salescycle_backlog_up"] == 1
        assert values["salescycle_webhook_events_undispatched"] == 2
        assert 89 <= values["salescycle_webhook_oldest_undispatched_event_age_seconds"]
        assert values["salescycle_webhook_oldest_undispatched_event_age_seconds"] < 150
        assert values["salescycle_webhook_deliveries_pending"] == 3
        assert 119 <= values["salescycle_webhook_oldest_due_delivery_age_seconds"] < 180
        assert values["salescycle_provider_events{status=received}"] == 1
        assert values["salescycle_provider_events{status=held}"] == 2
        assert values["salescycle_provider_events{status=failed}"] == 1
        assert 1799 <= values["salescycle_provider_oldest_held_event_age_seconds"]
        assert values["salescycle_provider_oldest_held_event_age_seconds"] < 1860
        assert values["salescycle_jobs_ready"] == 2

    async def test_nothing_waiting(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/metrics")

        values = samples(response.text)
        assert values["salescycle_backlog_up"] == 1
        assert values["salescycle_webhook_events_undispatched"] == 0
        assert values["salescycle_webhook_oldest_undispatched_event_age_seconds"] == 0
        assert values["salescycle_webhook_oldest_due_delivery_age_seconds"] == 0
        assert values["salescycle_provider_oldest_held_event_age_seconds"] == 0
        assert values["salescycle_jobs_ready"] == 0

    async def test_recent_reading_reused(
        self, client: httpx.AsyncClient, session: AsyncSession, workspace: Workspace
    ) -> None:
        first = samples((await client.get("/metrics")).text)
        event = event_row(workspace, age=timedelta(0))
        session.add(event)
        await session.flush()
        session.add(UndispatchedEvent(event_id=event.id))
        await session.commit()

        second = samples((await client.get("/metrics")).text)

        assert first["salescycle_webhook_events_undispatched"] == 0
        # Read less than REFRESH_SECONDS ago, the figures are served again as read.
        assert second["salescycle_webhook_events_undispatched"] == 0

    async def test_servers_down(self, unreachable: tuple[Settings, JobQueue]) -> None:
        settings, queue = unreachable
        database = Database(settings)
        async with await client_for(settings, database, queue) as http:
            response = await http.get("/metrics")
        await database.dispose()

        assert response.status_code == 200
        values = samples(response.text)
        assert values["salescycle_backlog_up"] == 0
        assert "salescycle_http_requests_total" in response.text
