from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from arq.connections import ArqRedis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks.webhooks import Webhook

from app.core import ids
from app.core.clock import utcnow
from app.models import WebhookDelivery, WebhookRecovery, Workspace
from app.webhooks.recovery import RECOVER_JOB
from tests.conftest import make_workspace_key
from tests.webhooks.conftest import Receiver, fresh
from tests.webhooks.factories import (
    create_endpoint,
    deliveries_of,
    dispatch,
    record_event,
)
from tests.webhooks.test_dispatch import dispatch_sweep, queued
from workers import tasks


async def failed_deliveries(
    session: AsyncSession,
    workspace: Workspace,
    ctx: dict[str, Any],
    count: int,
    *,
    failed_ago: timedelta,
) -> list[WebhookDelivery]:
    """Dispatch ``count`` events and mark their deliveries failed after 12 attempts."""
    deliveries = []
    for _ in range(count):
        event = await record_event(session, workspace.id)
        await dispatch(ctx, event)
        deliveries.extend(await deliveries_of(session, event.id))
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_([delivery.id for delivery in deliveries]))
        .values(
            status="failed",
            attempts=12,
            next_attempt_at=None,
            completed_at=utcnow() - failed_ago,
            last_error="The endpoint responded 500.",
        )
    )
    await session.commit()
    return deliveries


def recover_path(endpoint: dict[str, Any]) -> str:
    return f"/v1/webhook-endpoints/{endpoint['id']}/recover"


class TestRecoverDeliveries:
    async def test_failed_since_sent_again(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        redis_client: ArqRedis,
    ) -> None:
        endpoint = await create_endpoint(client, auth, receiver.url())
        older = await failed_deliveries(
            session, workspace, ctx, 1, failed_ago=timedelta(hours=3)
        )
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == older[0].id)
            .values(created_at=utcnow() - timedelta(days=2))
        )
        await session.commit()
        recent = await failed_deliveries(
            session, workspace, ctx, 2, failed_ago=timedelta(hours=1)
        )
        await redis_client.flushdb()
        since = utcnow() - timedelta(days=1)

        response = await client.post(
            recover_path(endpoint),
            json={"since": since.isoformat().replace("+00:00", "Z")},
            headers=auth,
        )

        assert response.status_code == 202, response.text
        recovery = response.json()
        assert recovery["object"] == "webhook_recovery"
        assert recovery["status"] == "pending"
        assert recovery["recovered_count"] == 0
        assert recovery["endpoint_id"] == endpoint["id"]
        assert response.headers["Location"] == (
            f"/v1/webhook-recoveries/{recovery['id']}"
        )
        recovery_id = ids.decode("webhook_recovery", recovery["id"])
        assert [job[:2] for job in await queued(redis_client)] == [
            (RECOVER_JOB, (str(recovery_id),))
        ]

        await redis_client.flushdb()
        taken = await tasks.recover_webhook_deliveries(ctx, str(recovery_id))
        again = await tasks.recover_webhook_deliveries(ctx, str(recovery_id))

        assert taken == 2
        assert again == 0
        jobs = await queued(redis_client)
        assert sorted(job[1][0] for job in jobs) == sorted(
            str(delivery.id) for delivery in recent
        )
        for delivery in recent:
            row = await fresh(session, WebhookDelivery, delivery.id)
            assert row.status == "pending"
            assert row.attempt_limit == 13
            assert await tasks.deliver_webhook(ctx, str(delivery.id)) == "succeeded"
        skipped = await fresh(session, WebhookDelivery, older[0].id)
        assert skipped.status == "failed"
        assert sorted(
            request.headers["webhook-id"] for request in receiver.requests
        ) == (
            sorted(ids.encode("webhook_delivery", delivery.id) for delivery in recent)
        )
        for request in receiver.requests:
            Webhook(endpoint["secret"]).verify(request.body, request.headers)
        shown = await client.get(
            f"/v1/webhook-recoveries/{recovery['id']}", headers=auth
        )
        assert shown.status_code == 200
        assert shown.json()["status"] == "succeeded"
        assert shown.json()["recovered_count"] == 2
        assert shown.json()["completed_at"] is not None

    async def test_sweep_requeues_stalled_recovery(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        redis_client: ArqRedis,
    ) -> None:
        endpoint = await create_endpoint(client, auth, receiver.url())
        await failed_deliveries(
            session, workspace, ctx, 1, failed_ago=timedelta(minutes=5)
        )
        response = await client.post(
            recover_path(endpoint),
            json={"since": (utcnow() - timedelta(hours=1)).isoformat()},
            headers=auth,
        )
        recovery_id = ids.decode("webhook_recovery", response.json()["id"])
        await session.execute(
            update(WebhookRecovery)
            .where(WebhookRecovery.id == recovery_id)
            .values(updated_at=utcnow() - timedelta(minutes=2))
        )
        await session.commit()
        await redis_client.flushdb()

        result = await dispatch_sweep(ctx)

        assert result.recoveries == 1
        assert [job[:2] for job in await queued(redis_client)] == [
            (RECOVER_JOB, (str(recovery_id),))
        ]

    async def test_future_since_rejected(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        receiver: Receiver,
    ) -> None:
        endpoint = await create_endpoint(client, auth, receiver.url())

        response = await client.post(
            recover_path(endpoint),
            json={"since": (utcnow() + timedelta(hours=1)).isoformat()},
            headers=auth,
        )
        naive = await client.post(
            recover_path(endpoint), json={"since": "2026-12-01T10:00:00"}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "since"
        assert naive.status_code == 422

    async def test_disabled_endpoint_is_409(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        receiver: Receiver,
    ) -> None:
        endpoint = await create_endpoint(client, auth, receiver.url(), enabled=False)

        response = await client.post(
            recover_path(endpoint),
            json={"since": (utcnow() - timedelta(hours=1)).isoformat()},
            headers=auth,
        )

        assert response.status_code == 409
        assert response.json()["code"] == "webhook_endpoint_disabled"

    async def test_other_workspace_is_404(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        receiver: Receiver,
    ) -> None:
        endpoint = await create_endpoint(client, auth, receiver.url())
        response = await client.post(
            recover_path(endpoint),
            json={"since": (utcnow() - timedelta(hours=1)).isoformat()},
            headers=auth,
        )
        _, other = await make_workspace_key(session)

        shown = await client.get(
            f"/v1/webhook-recoveries/{response.json()['id']}", headers=other
        )
        started = await client.post(
            recover_path(endpoint),
            json={"since": (utcnow() - timedelta(hours=1)).isoformat()},
            headers=other,
        )

        assert shown.status_code == 404
        assert shown.json()["code"] == "webhook_recovery_not_found"
        assert started.status_code == 404
