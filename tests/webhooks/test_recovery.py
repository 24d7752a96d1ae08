from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks.webhooks import Webhook

from app.core import ids
from app.core.clock import utcnow
from app.models import (
    Event,
    UndispatchedEvent,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookRecovery,
    Workspace,
)
from app.webhooks import recovery as webhook_recovery
from app.webhooks.recovery import RECOVER_JOB, webhook_recovery_service
from app.webhooks.service import CATCH_UP_JOB
from tests.conftest import make_workspace_key
from tests.webhooks.conftest import Committed, Receiver, fresh
from tests.webhooks.factories import (
    create_endpoint,
    deliveries_of,
    dispatch,
    drain,
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
        queued_count = await tasks.recover_webhook_deliveries(ctx, str(recovery_id))
        again = await tasks.recover_webhook_deliveries(ctx, str(recovery_id))

        assert queued_count == 2
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
        fetched = await client.get(
            f"/v1/webhook-recoveries/{recovery['id']}", headers=auth
        )
        assert fetched.status_code == 200
        assert fetched.json()["status"] == "succeeded"
        assert fetched.json()["recovered_count"] == 2
        assert fetched.json()["completed_at"] is not None

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

    async def test_waits_for_a_locked_failed_delivery(
        self,
        committed: Committed,
        committed_api: httpx.AsyncClient,
        receiver: Receiver,
    ) -> None:
        endpoint = await create_endpoint(committed_api, committed.auth, receiver.url())
        async with committed.database.session() as session:
            event = await record_event(session, committed.workspace.id)
        await dispatch(committed.ctx, event)
        async with committed.database.session() as session:
            [delivery] = await deliveries_of(session, event.id)
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery.id)
                .values(
                    status="failed",
                    attempts=12,
                    next_attempt_at=None,
                    completed_at=utcnow() - timedelta(minutes=5),
                )
            )
            await session.commit()
        response = await committed_api.post(
            recover_path(endpoint),
            json={"since": since_text(timedelta(hours=1))},
            headers=committed.auth,
        )
        recovery_id = ids.decode("webhook_recovery", response.json()["id"])

        # Another transaction locks the delivery's row, and then rolls back.
        async with committed.database.session() as holder:
            await holder.execute(
                select(WebhookDelivery.id)
                .where(WebhookDelivery.id == delivery.id)
                .with_for_update()
            )
            job = asyncio.create_task(
                tasks.recover_webhook_deliveries(committed.ctx, str(recovery_id))
            )
            await asyncio.sleep(0.5)
            await holder.rollback()
        queued_count = await asyncio.wait_for(job, timeout=10)

        assert queued_count == 1
        async with committed.database.session() as session:
            row = await fresh(session, WebhookDelivery, delivery.id)
            assert row.status == "pending"

    async def test_only_an_empty_batch_ends_the_failed_deliveries(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint = await create_endpoint(client, auth, receiver.url())
        await failed_deliveries(
            session, workspace, ctx, 1, failed_ago=timedelta(minutes=5)
        )
        response = await client.post(
            recover_path(endpoint),
            json={"since": since_text(timedelta(hours=1))},
            headers=auth,
        )
        recovery_id = ids.decode("webhook_recovery", response.json()["id"])

        batches = []
        for _ in range(2):
            async with tasks.unit_of_work(ctx) as batch_session:
                batches.append(
                    await webhook_recovery_service.run_batch(batch_session, recovery_id)
                )

        assert [(batch.requeued, batch.finished) for batch in batches if batch] == [
            (1, False),
            (0, True),
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

        fetched = await client.get(
            f"/v1/webhook-recoveries/{response.json()['id']}", headers=other
        )
        started = await client.post(
            recover_path(endpoint),
            json={"since": (utcnow() - timedelta(hours=1)).isoformat()},
            headers=other,
        )

        assert fetched.status_code == 404
        assert fetched.json()["code"] == "webhook_recovery_not_found"
        assert started.status_code == 404


def since_text(ago: timedelta) -> str:
    return (utcnow() - ago).isoformat().replace("+00:00", "Z")


async def set_enabled(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    endpoint: dict[str, Any],
    enabled: bool,
) -> None:
    response = await client.patch(
        f"/v1/webhook-endpoints/{endpoint['id']}",
        json={"enabled": enabled},
        headers=auth,
    )
    assert response.status_code == 200, response.text


async def recover_missing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    endpoint: dict[str, Any],
    *,
    since: timedelta = timedelta(days=1),
    include_missing: bool = True,
) -> dict[str, Any]:
    response = await client.post(
        recover_path(endpoint),
        json={"since": since_text(since), "include_missing": include_missing},
        headers=auth,
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def run_recovery(ctx: dict[str, Any], recovery: dict[str, Any]) -> int:
    """Run the recovery's job once; return how many deliveries it queued."""
    recovery_id = ids.decode("webhook_recovery", recovery["id"])
    return await tasks.recover_webhook_deliveries(ctx, str(recovery_id))


async def missed_while_disabled(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    session: AsyncSession,
    workspace: Workspace,
    ctx: dict[str, Any],
    receiver: Receiver,
    count: int = 1,
) -> tuple[dict[str, Any], list[Event]]:
    """Create an endpoint of invoice events, and emit ``count`` invoice.paid events
    while it is disabled; return it, enabled again, and the events."""
    endpoint = await create_endpoint(
        client, auth, receiver.url(), event_types=["invoice.*"]
    )
    await set_enabled(client, auth, endpoint, False)
    missed = [
        await record_event(session, workspace.id, "invoice.paid") for _ in range(count)
    ]
    for event in missed:
        await dispatch(ctx, event)
    await set_enabled(client, auth, endpoint, True)
    return endpoint, missed


async def delivery_count(session: AsyncSession, event: Event) -> int:
    return len(await deliveries_of(session, event.id))


class TestRecoverMissing:
    async def test_events_missed_while_disabled_are_sent(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint = await create_endpoint(
            client, auth, receiver.url(), event_types=["invoice.*"]
        )
        delivered = await record_event(session, workspace.id, "invoice.paid")
        await dispatch(ctx, delivered)
        await drain(ctx)
        await set_enabled(client, auth, endpoint, False)
        missed = [
            await record_event(session, workspace.id, "invoice.paid"),
            await record_event(session, workspace.id, "invoice.finalized"),
        ]
        unsubscribed = await record_event(session, workspace.id, "lead.created")
        test_event = await record_event(session, workspace.id, "invoice.paid")
        too_old = await record_event(session, workspace.id, "invoice.paid")
        await session.execute(
            update(Event).where(Event.id == test_event.id).values(test=True)
        )
        await session.execute(
            update(Event)
            .where(Event.id == too_old.id)
            .values(created_at=utcnow() - timedelta(days=2))
        )
        await session.commit()
        for event in (*missed, unsubscribed, test_event, too_old):
            await dispatch(ctx, event)
        await set_enabled(client, auth, endpoint, True)
        receiver.requests.clear()

        recovery = await recover_missing(client, auth, endpoint)
        queued_count = await run_recovery(ctx, recovery)
        await drain(ctx)

        assert recovery["include_missing"] is True
        assert recovery["missing_count"] == 0
        assert queued_count == 2
        created = [(await deliveries_of(session, event.id))[0] for event in missed]
        assert sorted(
            request.headers["webhook-id"] for request in receiver.requests
        ) == sorted(ids.encode("webhook_delivery", row.id) for row in created)
        for request in receiver.requests:
            Webhook(endpoint["secret"]).verify(request.body, request.headers)
        for event in (unsubscribed, test_event, too_old):
            assert await delivery_count(session, event) == 0
        assert await delivery_count(session, delivered) == 1
        fetched = await client.get(
            f"/v1/webhook-recoveries/{recovery['id']}", headers=auth
        )
        assert fetched.json()["status"] == "succeeded"
        assert fetched.json()["missing_count"] == 2
        assert fetched.json()["recovered_count"] == 0

    async def test_second_recovery_creates_none(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint, [missed] = await missed_while_disabled(
            client, auth, session, workspace, ctx, receiver
        )
        first = await recover_missing(client, auth, endpoint)
        await run_recovery(ctx, first)

        second = await recover_missing(client, auth, endpoint)
        queued_count = await run_recovery(ctx, second)

        assert queued_count == 0
        assert await delivery_count(session, missed) == 1
        fetched = await client.get(
            f"/v1/webhook-recoveries/{second['id']}", headers=auth
        )
        assert fetched.json()["status"] == "succeeded"
        assert fetched.json()["missing_count"] == 0

    async def test_without_include_missing_creates_none(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint, [missed] = await missed_while_disabled(
            client, auth, session, workspace, ctx, receiver
        )

        recovery = await recover_missing(client, auth, endpoint, include_missing=False)
        queued_count = await run_recovery(ctx, recovery)

        assert recovery["include_missing"] is False
        assert queued_count == 0
        assert await delivery_count(session, missed) == 0

    async def test_endpoint_disabled_meanwhile_gets_none(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint, [missed] = await missed_while_disabled(
            client, auth, session, workspace, ctx, receiver
        )
        recovery = await recover_missing(client, auth, endpoint)
        await set_enabled(client, auth, endpoint, False)

        queued_count = await run_recovery(ctx, recovery)

        assert queued_count == 0
        assert await delivery_count(session, missed) == 0
        fetched = await client.get(
            f"/v1/webhook-recoveries/{recovery['id']}", headers=auth
        )
        assert fetched.json()["status"] == "succeeded"
        assert fetched.json()["missing_count"] == 0

    async def test_events_after_the_request_left_out(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint = await create_endpoint(
            client, auth, receiver.url(), event_types=["invoice.*"]
        )
        recovery = await recover_missing(client, auth, endpoint)
        await set_enabled(client, auth, endpoint, False)
        later = await record_event(session, workspace.id, "invoice.paid")
        # The test's statements share one transaction, whose now() does not move.
        await session.execute(
            update(Event)
            .where(Event.id == later.id)
            .values(created_at=utcnow() + timedelta(seconds=1))
        )
        await session.commit()
        await dispatch(ctx, later)

        queued_count = await run_recovery(ctx, recovery)

        assert queued_count == 0
        assert await delivery_count(session, later) == 0

    async def test_dispatch_after_replay_adds_no_second_delivery(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint = await create_endpoint(
            client, auth, receiver.url(), event_types=["invoice.*"]
        )
        undispatched = await record_event(session, workspace.id, "invoice.paid")
        recovery = await recover_missing(client, auth, endpoint)

        await run_recovery(ctx, recovery)
        created = await dispatch(ctx, undispatched)

        assert created == 0
        assert await delivery_count(session, undispatched) == 1

    async def test_since_before_1970(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint, [missed] = await missed_while_disabled(
            client, auth, session, workspace, ctx, receiver
        )

        response = await client.post(
            recover_path(endpoint),
            json={"since": "1900-01-01T00:00:00Z", "include_missing": True},
            headers=auth,
        )
        queued_count = await run_recovery(ctx, response.json())

        assert response.status_code == 202
        assert queued_count == 1
        assert await delivery_count(session, missed) == 1
        fetched = await client.get(
            f"/v1/webhook-recoveries/{response.json()['id']}", headers=auth
        )
        assert fetched.json()["status"] == "succeeded"
        assert fetched.json()["missing_count"] == 1

    async def test_resumes_after_the_last_batch(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(webhook_recovery, "RECOVERY_BATCH", 2)
        endpoint, missed = await missed_while_disabled(
            client, auth, session, workspace, ctx, receiver, count=5
        )
        recovery = await recover_missing(client, auth, endpoint)
        recovery_id = ids.decode("webhook_recovery", recovery["id"])
        # Two batches commit, then the job dies: the first takes the failed
        # deliveries (none), the second two events.
        for _ in range(2):
            async with tasks.unit_of_work(ctx) as batch_session:
                batch = await webhook_recovery_service.run_batch(
                    batch_session, recovery_id
                )
            assert batch is not None
            assert not batch.finished

        queued_count = await tasks.recover_webhook_deliveries(ctx, str(recovery_id))

        assert queued_count == 3
        assert [await delivery_count(session, event) for event in missed] == [1] * 5
        row = await fresh(session, WebhookRecovery, recovery_id)
        assert row.status == "succeeded"
        assert row.missing_count == 5
        assert row.last_event_id == missed[-1].id


async def dispatched_before_commit(session: AsyncSession, event: Event) -> None:
    """Take the event out of the dispatch queue with no delivery, as a dispatch that
    ran before a new endpoint's transaction committed left it."""
    await session.execute(
        delete(UndispatchedEvent).where(UndispatchedEvent.event_id == event.id)
    )
    await session.commit()


async def catch_up(ctx: dict[str, Any], endpoint: dict[str, Any]) -> int:
    endpoint_id = ids.decode("webhook_endpoint", endpoint["id"])
    return await tasks.catch_up_webhook_endpoint(ctx, str(endpoint_id))


async def endpoint_row(session: AsyncSession, endpoint: dict[str, Any]) -> Any:
    return await fresh(
        session, WebhookEndpoint, ids.decode("webhook_endpoint", endpoint["id"])
    )


class TestCatchUp:
    async def test_raced_event_is_delivered(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        redis_client: ArqRedis,
    ) -> None:
        await redis_client.flushdb()
        endpoint = await create_endpoint(
            client, auth, receiver.url(), event_types=["invoice.*"]
        )
        queued_jobs = await queued(redis_client)
        raced = await record_event(session, workspace.id, "invoice.paid")
        await dispatched_before_commit(session, raced)
        before = await record_event(session, workspace.id, "invoice.paid")
        await dispatched_before_commit(session, before)
        await session.execute(
            update(Event)
            .where(Event.id == before.id)
            .values(created_at=utcnow() - timedelta(minutes=1))
        )
        await session.commit()

        created = await catch_up(ctx, endpoint)
        again = await catch_up(ctx, endpoint)
        await drain(ctx)

        endpoint_id = ids.decode("webhook_endpoint", endpoint["id"])
        assert (CATCH_UP_JOB, (str(endpoint_id),)) in [job[:2] for job in queued_jobs]
        assert created == 1
        assert again == 0
        [delivery] = await deliveries_of(session, raced.id)
        assert delivery.status == "succeeded"
        [request] = receiver.requests
        assert request.headers["webhook-id"] == ids.encode(
            "webhook_delivery", delivery.id
        )
        Webhook(endpoint["secret"]).verify(request.body, request.headers)
        assert await delivery_count(session, before) == 0
        row = await endpoint_row(session, endpoint)
        assert row.catch_up_pending is False
        assert row.version == 1

    async def test_worker_clock_behind_database(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        endpoint = await create_endpoint(
            client, auth, receiver.url(), event_types=["invoice.*"]
        )
        raced = await record_event(session, workspace.id, "invoice.paid")
        await dispatched_before_commit(session, raced)

        # Events are stamped by PostgreSQL's clock, which the worker's may trail.
        def trailing() -> datetime:
            return utcnow() - timedelta(minutes=1)

        for module in (tasks, webhook_recovery):
            monkeypatch.setattr(module, "utcnow", trailing, raising=False)

        created = await catch_up(ctx, endpoint)

        assert created == 1
        assert await delivery_count(session, raced) == 1

    async def test_disabled_endpoint_gets_none(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint = await create_endpoint(
            client, auth, receiver.url(), event_types=["invoice.*"]
        )
        raced = await record_event(session, workspace.id, "invoice.paid")
        await dispatched_before_commit(session, raced)
        await set_enabled(client, auth, endpoint, False)

        created = await catch_up(ctx, endpoint)

        assert created == 0
        assert await delivery_count(session, raced) == 0
        assert (await endpoint_row(session, endpoint)).catch_up_pending is False

    async def test_types_changed_before_catch_up(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint = await create_endpoint(
            client, auth, receiver.url(), event_types=["lead.*"]
        )
        raced = await record_event(session, workspace.id, "lead.created")
        await dispatched_before_commit(session, raced)
        unsubscribed = await record_event(session, workspace.id, "invoice.paid")
        await dispatch(ctx, unsubscribed)
        response = await client.patch(
            f"/v1/webhook-endpoints/{endpoint['id']}",
            json={"event_types": ["invoice.*"]},
            headers=auth,
        )

        created = await catch_up(ctx, endpoint)

        assert response.status_code == 200, response.text
        assert created == 0
        assert await delivery_count(session, raced) == 1
        assert await delivery_count(session, unsubscribed) == 0
        assert (await endpoint_row(session, endpoint)).catch_up_pending is False

    async def test_disabled_and_enabled_before_catch_up(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
    ) -> None:
        endpoint = await create_endpoint(
            client, auth, receiver.url(), event_types=["invoice.*"]
        )
        raced = await record_event(session, workspace.id, "invoice.paid")
        await dispatched_before_commit(session, raced)
        await set_enabled(client, auth, endpoint, False)
        while_disabled = await record_event(session, workspace.id, "invoice.paid")
        await dispatch(ctx, while_disabled)
        await set_enabled(client, auth, endpoint, True)

        created = await catch_up(ctx, endpoint)

        # Disabled before its catch-up, the endpoint gets none, as the job gives it.
        assert created == 0
        assert await delivery_count(session, raced) == 0
        assert await delivery_count(session, while_disabled) == 0

    async def test_job_waits_for_racing_disable(
        self,
        committed: Committed,
        committed_api: httpx.AsyncClient,
        receiver: Receiver,
    ) -> None:
        endpoint = await create_endpoint(
            committed_api, committed.auth, receiver.url(), event_types=["invoice.*"]
        )
        endpoint_id = ids.decode("webhook_endpoint", endpoint["id"])
        async with committed.database.session() as session:
            raced = await record_event(session, committed.workspace.id, "invoice.paid")
            await dispatched_before_commit(session, raced)

        # A PATCH that disables the endpoint keeps its row locked while the job starts,
        # and clears catch_up_pending as it commits.
        async with committed.database.session() as patch:
            await patch.execute(
                select(WebhookEndpoint.id)
                .where(WebhookEndpoint.id == endpoint_id)
                .with_for_update()
            )
            job = asyncio.create_task(
                tasks.catch_up_webhook_endpoint(committed.ctx, str(endpoint_id))
            )
            await asyncio.sleep(0.5)
            await patch.execute(
                update(WebhookEndpoint)
                .where(WebhookEndpoint.id == endpoint_id)
                .values(enabled=False, disabled_reason="manual", catch_up_pending=False)
            )
            await patch.commit()
        created = await asyncio.wait_for(job, timeout=10)

        assert created == 0
        async with committed.database.session() as session:
            assert await delivery_count(session, raced) == 0

    async def test_endpoint_created_disabled_needs_none(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        receiver: Receiver,
    ) -> None:
        endpoint = await create_endpoint(client, auth, receiver.url(), enabled=False)

        assert (await endpoint_row(session, endpoint)).catch_up_pending is False

    async def test_sweep_requeues_lost_catch_up(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        ctx: dict[str, Any],
        receiver: Receiver,
        redis_client: ArqRedis,
    ) -> None:
        recent = await create_endpoint(client, auth, receiver.url())
        lost = await create_endpoint(client, auth, receiver.url())
        lost_id = ids.decode("webhook_endpoint", lost["id"])
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == lost_id)
            .values(created_at=utcnow() - timedelta(minutes=2))
        )
        await session.commit()
        await redis_client.flushdb()

        result = await dispatch_sweep(ctx)

        assert result.catch_ups == 1
        assert [job[:2] for job in await queued(redis_client)] == [
            (CATCH_UP_JOB, (str(lost_id),))
        ]
        assert (await endpoint_row(session, recent)).catch_up_pending is True
