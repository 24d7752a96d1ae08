from __future__ import annotations

import asyncio
import warnings
from datetime import timedelta
from typing import Any

import httpx
from arq.connections import ArqRedis
from arq.worker import Worker
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks.webhooks import Webhook

from app.core import ids
from app.core.clock import utcnow
from app.core.events import MORE_EVENTS, emit
from app.core.jobs import QUEUE_NAME, redis_settings
from app.models import (
    Event,
    UndispatchedEvent,
    WebhookDelivery,
    WebhookEndpoint,
    Workspace,
)
from app.settings import Settings
from app.webhooks import dispatch as webhook_dispatch
from tests.conftest import make_workspace_key
from tests.webhooks.conftest import Committed, Receiver, ScriptedResponse, fresh
from tests.webhooks.factories import (
    create_endpoint,
    deliveries_of,
    dispatch,
    drain,
    is_dispatched,
    queue_again,
    record_event,
)
from workers import tasks
from workers.settings import worker_functions

URL = "http://127.0.0.1:9/hooks"


async def age(session: AsyncSession, event: Event) -> None:
    """Make an event look older than the sweep's grace period."""
    await session.execute(
        update(Event)
        .where(Event.id == event.id)
        .values(created_at=Event.created_at - timedelta(minutes=1))
    )
    await session.commit()


async def age_endpoints(session: AsyncSession) -> None:
    """Move endpoints' creation back, so they predate events aged by ``age``."""
    await session.execute(
        update(WebhookEndpoint).values(
            created_at=WebhookEndpoint.created_at - timedelta(minutes=2)
        )
    )
    await session.commit()


async def queued(redis_client: ArqRedis) -> list[tuple[str, tuple[Any, ...], str]]:
    jobs = await redis_client.queued_jobs(queue_name=QUEUE_NAME)
    return sorted((job.function, job.args, job.job_id or "") for job in jobs)


async def dispatch_sweep(ctx: dict[str, Any]) -> webhook_dispatch.SweepResult:
    async with tasks.unit_of_work(ctx) as session:
        return await webhook_dispatch.sweep(session)


async def run_worker(settings: Settings, ctx: dict[str, Any]) -> Worker:
    """Run a real arq worker until the queue is empty."""
    worker = Worker(
        functions=worker_functions(),
        queue_name=QUEUE_NAME,
        redis_settings=redis_settings(settings.redis_url),
        burst=True,
        max_burst_jobs=50,
        max_jobs=1,
        poll_delay=0.01,
        handle_signals=False,
        ctx=dict(ctx),
    )
    try:
        await asyncio.wait_for(worker.main(), timeout=30)
    finally:
        with warnings.catch_warnings():
            # arq 0.28 closes its pool with the deprecated redis-py close().
            warnings.simplefilter("ignore", DeprecationWarning)
            await worker.close()
    return worker


class TestDispatchEvent:
    async def test_matching_endpoints_only(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        redis_client: ArqRedis,
    ) -> None:
        everything = await create_endpoint(client, auth, URL, event_types=["*"])
        invoices = await create_endpoint(client, auth, URL, event_types=["invoice.*"])
        exact = await create_endpoint(client, auth, URL, event_types=["invoice.paid"])
        await create_endpoint(client, auth, URL, event_types=["invoice.voided"])
        await create_endpoint(client, auth, URL, event_types=["lead.*"])
        await create_endpoint(client, auth, URL, event_types=["*"], enabled=False)
        _, other_auth = await make_workspace_key(session)
        await create_endpoint(client, other_auth, URL, event_types=["*"])
        event = await record_event(session, workspace.id, "invoice.paid")
        await redis_client.flushdb()

        created = await dispatch(ctx, event)

        assert created == 3
        deliveries = await deliveries_of(session, event.id)
        endpoint_ids = {
            ids.encode("webhook_endpoint", delivery.endpoint_id)
            for delivery in deliveries
        }
        assert endpoint_ids == {everything["id"], invoices["id"], exact["id"]}
        assert all(delivery.status == "pending" for delivery in deliveries)
        assert all(delivery.attempts == 0 for delivery in deliveries)
        assert await is_dispatched(session, event.id)
        # The delivery loops lease the new deliveries from PostgreSQL.
        assert await queued(redis_client) == []

    async def test_idempotent(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
    ) -> None:
        await create_endpoint(client, auth, URL)
        event = await record_event(session, workspace.id)

        first = await dispatch(ctx, event)
        second = await dispatch(ctx, event)
        await queue_again(session, event.id)
        forced = await dispatch(ctx, event)

        assert (first, second, forced) == (1, 0, 0)
        assert len(await deliveries_of(session, event.id)) == 1
        assert await is_dispatched(session, event.id)

    async def test_no_subscriber_marks_dispatched(
        self, session: AsyncSession, workspace: Workspace, ctx: dict[str, Any]
    ) -> None:
        event = await record_event(session, workspace.id)

        created = await dispatch(ctx, event)

        assert created == 0
        assert await is_dispatched(session, event.id)

    async def test_endpoint_created_after_event_left_out(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
    ) -> None:
        event = await record_event(session, workspace.id)
        endpoint = await create_endpoint(client, auth, URL)
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == ids.decode("webhook_endpoint", endpoint["id"]))
            .values(created_at=event.created_at + timedelta(seconds=1))
        )
        await session.commit()

        assert await dispatch(ctx, event) == 0

    async def test_missing_event(self, ctx: dict[str, Any]) -> None:
        assert await tasks.dispatch_event(ctx, str(ids.new_uuid())) == 0

    async def test_emit_defers_dispatch_job(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        redis_client: ArqRedis,
        session: AsyncSession,
    ) -> None:
        endpoint = await create_endpoint(client, auth, URL)

        jobs = await queued(redis_client)

        endpoint_id = ids.decode("webhook_endpoint", endpoint["id"])
        event_id = await session.scalar(
            select(Event.id).where(Event.object_id == endpoint_id)
        )
        assert jobs == [
            (
                "catch_up_webhook_endpoint",
                (str(endpoint_id),),
                f"catch-up:{endpoint_id}",
            ),
            ("dispatch_event", (str(event_id),), f"dispatch:{event_id}"),
        ]

    async def test_one_job_names_every_event_of_a_transaction(
        self, committed: Committed, redis_client: ArqRedis
    ) -> None:
        async with committed.database.session() as session:
            session.add(
                WebhookEndpoint(
                    workspace_id=committed.workspace.id,
                    url=URL,
                    event_types=["lead.*"],
                    secret="whsec_" + "C" * 43 + "=",
                )
            )
            await session.commit()
        await redis_client.flushdb()
        queue = committed.ctx["queue"]
        async with committed.database.session() as session:
            events = [
                await emit(
                    session,
                    workspace_id=committed.workspace.id,
                    type="lead.created",
                    object_type="lead",
                    object_id=ids.new_uuid(),
                    data={},
                )
                for _ in range(3)
            ]
            await session.commit()
            await queue.send_pending(session)
            # The next transaction of the same session has a job of its own.
            later = await record_event(session, committed.workspace.id)
            await queue.send_pending(session)

        jobs = await redis_client.queued_jobs(queue_name=QUEUE_NAME)
        by_id = {job.job_id or "": job for job in jobs}
        assert sorted(by_id) == sorted(
            [f"dispatch:{events[0].id}", f"dispatch:{later.id}"]
        )
        first = by_id[f"dispatch:{events[0].id}"]
        assert first.args == (str(events[0].id),)
        assert first.kwargs == {MORE_EVENTS: [str(event.id) for event in events[1:]]}
        assert by_id[f"dispatch:{later.id}"].kwargs == {}

        created = await tasks.dispatch_event(committed.ctx, *first.args, **first.kwargs)

        assert created == 3
        async with committed.database.session() as session:
            for event in events:
                assert len(await deliveries_of(session, event.id)) == 1
            assert await deliveries_of(session, later.id) == []


class TestSweep:
    async def test_delivers_after_redis_flush(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        redis_client: ArqRedis,
        settings: Settings,
    ) -> None:
        endpoint = await create_endpoint(
            client, auth, receiver.url(), event_types=["invoice.*"]
        )
        event = await record_event(session, workspace.id, "invoice.finalized")
        await age(session, event)
        await age_endpoints(session)
        await redis_client.flushdb()

        found = await tasks.sweep_webhooks(ctx)
        await run_worker(settings, ctx)
        await drain(ctx)

        assert found == 1
        [request] = receiver.requests
        payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)
        assert payload["id"] == ids.encode("event", event.id)
        [delivery] = await deliveries_of(session, event.id)
        assert delivery.status == "succeeded"

    async def test_due_delivery_sent_without_job(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        redis_client: ArqRedis,
    ) -> None:
        await create_endpoint(client, auth, receiver.url(), event_types=["lead.*"])
        event = await record_event(session, workspace.id)
        await dispatch(ctx, event)
        [delivery] = await deliveries_of(session, event.id)
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery.id)
            .values(next_attempt_at=utcnow() - timedelta(minutes=1))
        )
        await session.commit()
        await redis_client.flushdb()

        found = await tasks.sweep_webhooks(ctx)
        jobs = await queued(redis_client)
        await drain(ctx)

        assert found == 0
        assert jobs == []
        assert len(receiver.requests) == 1
        assert (await fresh(session, WebhookDelivery, delivery.id)).status == (
            "succeeded"
        )

    async def test_worker_with_loop_queues_no_dispatch(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        redis_client: ArqRedis,
    ) -> None:
        await create_endpoint(client, auth, receiver.url(), event_types=["lead.*"])
        await age_endpoints(session)
        event = await record_event(session, workspace.id)
        await age(session, event)
        await redis_client.flushdb()
        loop_ctx = {**ctx, tasks.WEBHOOK_LOOP: tasks.delivery_loop(ctx)}

        found = await tasks.sweep_webhooks(loop_ctx)
        jobs = await queued(redis_client)
        await drain(ctx)

        assert found == 0
        assert [job for job in jobs if job[0] == "dispatch_event"] == []
        # The loop dispatched the event from PostgreSQL, with no job.
        assert len(receiver.requests) == 1
        [delivery] = await deliveries_of(session, event.id)
        assert delivery.status == "succeeded"

    async def test_leaves_fresh_and_leased_work(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        redis_client: ArqRedis,
    ) -> None:
        await create_endpoint(client, auth, URL)
        await session.execute(
            delete(UndispatchedEvent).where(
                UndispatchedEvent.event_id.in_(
                    select(Event.id).where(Event.workspace_id == workspace.id)
                )
            )
        )
        leased_event = await record_event(session, workspace.id)
        await dispatch(ctx, leased_event)
        [leased] = await deliveries_of(session, leased_event.id)
        future_event = await record_event(session, workspace.id)
        await dispatch(ctx, future_event)
        [future] = await deliveries_of(session, future_event.id)
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == leased.id)
            .values(
                next_attempt_at=utcnow() - timedelta(minutes=1),
                claimed_until=utcnow() + timedelta(minutes=1),
            )
        )
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == future.id)
            .values(next_attempt_at=utcnow() + timedelta(minutes=1))
        )
        await session.commit()
        await record_event(session, workspace.id)
        old = await record_event(session, workspace.id)
        await age(session, old)
        await redis_client.flushdb()

        found = await tasks.sweep_webhooks(ctx)

        assert found == 1
        assert await queued(redis_client) == [
            ("dispatch_event", (str(old.id),), f"dispatch:{old.id}")
        ]

    async def test_lapsed_lease_leased_again_as_next_attempt(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        receiver: Receiver,
        redis_client: ArqRedis,
    ) -> None:
        await create_endpoint(client, auth, receiver.url(), event_types=["lead.*"])
        event = await record_event(session, workspace.id)
        await dispatch(ctx, event)
        [delivery] = await deliveries_of(session, event.id)
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery.id)
            .values(
                attempts=1,
                next_attempt_at=utcnow() - timedelta(minutes=5),
                claimed_until=utcnow() - timedelta(minutes=1),
            )
        )
        await session.commit()
        await redis_client.flushdb()

        await drain(ctx)

        [request] = receiver.requests
        assert request.headers["webhook-id"] == ids.encode(
            "webhook_delivery", delivery.id
        )
        row = await fresh(session, WebhookDelivery, delivery.id)
        assert row.attempts == 2
        assert row.status == "succeeded"

    async def test_settles_unsubscribed_events(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        redis_client: ArqRedis,
    ) -> None:
        await create_endpoint(client, auth, URL, event_types=["invoice.*"])
        await create_endpoint(client, auth, URL, event_types=["*"], enabled=False)
        other = Workspace(id=ids.new_uuid(), name="Other")
        session.add(other)
        await session.flush()
        session.add(
            WebhookEndpoint(
                workspace_id=other.id,
                url=URL,
                event_types=["*"],
                secret="whsec_other",
            )
        )
        await session.commit()
        subscribed = await record_event(session, workspace.id, "invoice.finalized")
        unsubscribed = await record_event(session, workspace.id, "lead.created")
        for event in (subscribed, unsubscribed):
            await age(session, event)
        fresh_event = await record_event(session, workspace.id, "lead.updated")
        await redis_client.flushdb()

        result = await dispatch_sweep(ctx)

        assert await is_dispatched(session, unsubscribed.id)
        assert not await is_dispatched(session, subscribed.id)
        assert not await is_dispatched(session, fresh_event.id)
        assert await queued(redis_client) == [
            ("dispatch_event", (str(subscribed.id),), f"dispatch:{subscribed.id}")
        ]
        assert result.settled == 1
        assert result.events == 1

    async def test_unsubscribed_event_never_queued(
        self,
        session: AsyncSession,
        workspace: Workspace,
        ctx: dict[str, Any],
        redis_client: ArqRedis,
    ) -> None:
        await redis_client.flushdb()
        event = await record_event(session, workspace.id)
        await age(session, event)

        await tasks.sweep_webhooks(ctx)

        assert await queued(redis_client) == []
        assert await is_dispatched(session, event.id)

    async def test_settling_sweep_not_duplicated(
        self, committed: Committed, redis_client: ArqRedis
    ) -> None:
        async with committed.database.session() as writer:
            event = await record_event(writer, committed.workspace.id)
            await writer.execute(
                update(Event)
                .where(Event.id == event.id)
                .values(created_at=Event.created_at - timedelta(minutes=1))
            )
            await writer.commit()
        await redis_client.flushdb()

        async with committed.database.session() as first:
            settled = await webhook_dispatch.sweep(first)
            # The first sweep has not committed, so its settled row is still
            # undispatched and locked when the second sweep runs.
            second = await asyncio.wait_for(dispatch_sweep(committed.ctx), timeout=5)
            await first.commit()

        assert settled.settled == 1
        assert second.settled == 0
        assert second.events == 0
        assert await queued(redis_client) == []


class TestAcrossConnections:
    async def test_parallel_workers_send_once(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        database = committed.database
        async with database.session() as session:
            endpoint = WebhookEndpoint(
                workspace_id=committed.workspace.id,
                url=receiver.url(),
                event_types=["*"],
                secret="whsec_" + "A" * 43 + "=",
            )
            session.add(endpoint)
            await session.commit()
            event = await record_event(session, committed.workspace.id)

        counts = await asyncio.gather(
            *(tasks.dispatch_event(committed.ctx, str(event.id)) for _ in range(4))
        )
        async with database.session() as session:
            [delivery] = await deliveries_of(session, event.id)
        outcomes = await asyncio.gather(
            *(tasks.deliver_webhook(committed.ctx, str(delivery.id)) for _ in range(4))
        )

        assert sorted(counts) == [0, 0, 0, 1]
        assert sorted(outcomes) == ["skipped", "skipped", "skipped", "succeeded"]
        assert len(receiver.requests) == 1
        async with database.session() as session:
            row = await session.get(WebhookDelivery, delivery.id)
            assert row is not None
            assert row.attempts == 1
            assert row.status == "succeeded"

    async def test_retry_sent_by_loop(
        self,
        committed: Committed,
        receiver: Receiver,
        redis_client: ArqRedis,
        settings: Settings,
    ) -> None:
        database = committed.database
        async with database.session() as session:
            session.add(
                WebhookEndpoint(
                    workspace_id=committed.workspace.id,
                    url=receiver.url(),
                    event_types=["lead.*"],
                    secret="whsec_" + "B" * 43 + "=",
                )
            )
            await session.commit()
            event = await record_event(session, committed.workspace.id)
        await tasks.dispatch_event(committed.ctx, str(event.id))
        async with database.session() as session:
            [delivery] = await deliveries_of(session, event.id)
        receiver.respond_with(ScriptedResponse(status=500))

        first = await tasks.deliver_webhook(committed.ctx, str(delivery.id))
        async with database.session() as session:
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery.id)
                .values(next_attempt_at=utcnow() - timedelta(minutes=1))
            )
            await session.commit()
        await redis_client.flushdb()
        await drain(committed.ctx)

        assert first == "retrying"
        assert len(receiver.requests) == 2
        assert receiver.requests[0].body == receiver.requests[1].body
        async with database.session() as session:
            row = await session.get(WebhookDelivery, delivery.id)
            assert row is not None
            assert row.status == "succeeded"
            count = await session.scalar(
                select(func.count())
                .select_from(WebhookDelivery)
                .where(WebhookDelivery.event_id == event.id)
            )
            assert count == 1
