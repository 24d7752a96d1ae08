"""Fault tests with a real worker process: SIGKILL mid-batch, and a Redis flush.

The worker is ``python -m app.cli worker`` on the test database and Redis. The receiver
is the in-process HTTP server on 127.0.0.1, answering each request after a delay so
that requests are in flight when the fault strikes.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from arq.connections import ArqRedis
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook

from app.core import ids
from app.core.clock import utcnow
from app.models import WebhookDelivery, WebhookEndpoint
from app.settings import Settings
from tests.live import running
from tests.webhooks.conftest import Committed, Receiver, ScriptedResponse
from tests.webhooks.factories import record_event
from workers import tasks

EVENTS = 40
SECRET = "whsec_" + "F" * 43 + "="
TIMEOUT_SECONDS = 90


def worker_env(settings: Settings) -> dict[str, str]:
    return {
        "SALESCYCLE_ENV": "test",
        "SALESCYCLE_DATABASE_URL": settings.database_url,
        "SALESCYCLE_REDIS_URL": settings.redis_url,
        "SALESCYCLE_LOG_LEVEL": "INFO",
        "SALESCYCLE_WEBHOOK_ALLOW_PRIVATE_HOSTS": '["127.0.0.1"]',
        "SALESCYCLE_WEBHOOK_ALLOW_HTTP": "true",
        "SALESCYCLE_WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT": "8",
        "SALESCYCLE_SWEEP_INTERVAL_SECONDS": "1",
        # Far above the receiver's delays, so that a loaded machine does not time
        # out a first attempt and push its retry past the test's wait.
        "SALESCYCLE_WEBHOOK_TIMEOUT_SECONDS": "6",
        "SALESCYCLE_CLAIM_LEASE_SECONDS": "10",
    }


async def eventually(check: Callable[[], Awaitable[bool]], awaited: str) -> None:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {TIMEOUT_SECONDS} s waiting for {awaited}")


async def queue_deliveries(committed: Committed, url: str) -> list[uuid.UUID]:
    """Create an endpoint and EVENTS events, and queue one delivery job per event."""
    async with committed.database.session() as session:
        endpoint = WebhookEndpoint(
            workspace_id=committed.workspace.id,
            url=url,
            event_types=["lead.*"],
            secret=SECRET,
        )
        session.add(endpoint)
        await session.commit()
        events = [
            await record_event(session, committed.workspace.id) for _ in range(EVENTS)
        ]
    for event in events:
        await tasks.dispatch_event(committed.ctx, str(event.id))
    async with committed.database.session() as session:
        rows = await session.scalars(
            select(WebhookDelivery.id).where(
                WebhookDelivery.event_id.in_([event.id for event in events])
            )
        )
        return list(rows.all())


async def statuses(committed: Committed, delivery_ids: list[uuid.UUID]) -> Counter[str]:
    async with committed.database.session() as session:
        rows = await session.scalars(
            select(WebhookDelivery.status).where(WebhookDelivery.id.in_(delivery_ids))
        )
        return Counter(rows.all())


async def some_succeeded(committed: Committed, delivery_ids: list[uuid.UUID]) -> bool:
    return (await statuses(committed, delivery_ids))["succeeded"] > 0


def received(receiver: Receiver, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len(receiver.requests) >= count

    return check


def received_ids(receiver: Receiver) -> Counter[str]:
    return Counter(request.headers["webhook-id"] for request in receiver.requests)


def check_bodies(receiver: Receiver) -> None:
    """Assert every request verifies and repeats of one webhook-id carry one body."""
    bodies: dict[str, bytes] = {}
    for request in receiver.requests:
        Webhook(SECRET).verify(request.body, request.headers)
        message_id = request.headers["webhook-id"]
        assert bodies.setdefault(message_id, request.body) == request.body


class TestWorkerFaults:
    async def test_sigkill_loses_nothing(
        self,
        committed: Committed,
        receiver: Receiver,
        redis_client: ArqRedis,
        settings: Settings,
        tmp_path: Path,
    ) -> None:
        receiver.default = ScriptedResponse(delay_seconds=0.5)
        delivery_ids = await queue_deliveries(committed, receiver.url())
        env = worker_env(settings)

        with running(
            ["app.cli", "worker"],
            env,
            ready_url=None,
            log_path=tmp_path / "killed.log",
        ) as worker:
            await eventually(
                lambda: some_succeeded(committed, delivery_ids),
                "the first recorded deliveries",
            )
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
        async with committed.database.session() as session:
            leased = set(
                (
                    await session.scalars(
                        select(WebhookDelivery.id).where(
                            WebhookDelivery.id.in_(delivery_ids),
                            WebhookDelivery.claimed_until.is_not(None),
                            WebhookDelivery.status == "pending",
                        )
                    )
                ).all()
            )
            # The leases would lapse after 36 s (the 6 s timeout, plus 30 s);
            # moving them back stands in for the wait.
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(leased))
                .values(claimed_until=utcnow() - timedelta(minutes=1))
            )
            await session.commit()
        done_before_restart = await statuses(committed, delivery_ids)

        with running(
            ["app.cli", "worker"],
            env,
            ready_url=None,
            log_path=tmp_path / "restarted.log",
        ):
            await eventually(
                lambda: statuses_done(committed, delivery_ids), "every delivery"
            )

        final = await statuses(committed, delivery_ids)
        assert final == Counter({"succeeded": EVENTS})
        assert 0 < done_before_restart["succeeded"] < EVENTS
        assert leased
        counts = received_ids(receiver)
        expected = {ids.encode("webhook_delivery", item) for item in delivery_ids}
        assert set(counts) == expected
        repeated = {message_id for message_id, count in counts.items() if count > 1}
        assert repeated <= {ids.encode("webhook_delivery", item) for item in leased}
        assert all(count <= 2 for count in counts.values())
        check_bodies(receiver)

    async def test_redis_flush_loses_nothing(
        self,
        committed: Committed,
        receiver: Receiver,
        redis_client: ArqRedis,
        settings: Settings,
        tmp_path: Path,
    ) -> None:
        receiver.default = ScriptedResponse(delay_seconds=0.2)
        delivery_ids = await queue_deliveries(committed, receiver.url())

        with running(
            ["app.cli", "worker"],
            worker_env(settings),
            ready_url=None,
            log_path=tmp_path / "worker.log",
        ):
            await eventually(received(receiver, 5), "the first requests")
            await redis_client.flushdb()
            flushed_at = len(receiver.requests)
            await eventually(
                lambda: statuses_done(committed, delivery_ids), "every delivery"
            )

        assert flushed_at < EVENTS
        assert await statuses(committed, delivery_ids) == Counter({"succeeded": EVENTS})
        counts = received_ids(receiver)
        assert set(counts) == {
            ids.encode("webhook_delivery", item) for item in delivery_ids
        }
        assert max(counts.values()) == 1
        check_bodies(receiver)


async def statuses_done(committed: Committed, delivery_ids: list[uuid.UUID]) -> bool:
    counts = await statuses(committed, delivery_ids)
    return counts["succeeded"] == len(delivery_ids)
