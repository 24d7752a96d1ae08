"""The per-endpoint limit of requests in flight, across concurrent deliveries."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from arq.connections import ArqRedis
from sqlalchemy import select

from app.models import WebhookDelivery, WebhookEndpoint
from tests.webhooks.conftest import Committed, Receiver, ScriptedResponse
from tests.webhooks.factories import deliveries_of, record_event
from tests.webhooks.test_dispatch import queued, run_worker
from workers import tasks


async def add_endpoint(
    committed: Committed, url: str, event_types: list[str]
) -> WebhookEndpoint:
    async with committed.database.session() as session:
        endpoint = WebhookEndpoint(
            workspace_id=committed.workspace.id,
            url=url,
            event_types=event_types,
            secret="whsec_" + "C" * 43 + "=",
        )
        session.add(endpoint)
        await session.commit()
        return endpoint


class TestEndpointLimit:
    async def test_slow_endpoint_holds_its_slots_only(
        self,
        committed: Committed,
        receiver: Receiver,
        redis_client: ArqRedis,
    ) -> None:
        settings = committed.ctx["settings"].model_copy(
            update={"webhook_max_in_flight_per_endpoint": 2}
        )
        ctx = {**committed.ctx, "settings": settings}
        fast = Receiver()
        await fast.start()
        receiver.default = ScriptedResponse(delay_seconds=3.0)
        await add_endpoint(committed, receiver.url("/slow"), ["lead.*"])
        await add_endpoint(committed, fast.url("/fast"), ["invoice.*"])
        async with committed.database.session() as session:
            slow_events = [
                await record_event(session, committed.workspace.id) for _ in range(5)
            ]
            fast_event = await record_event(
                session, committed.workspace.id, "invoice.paid"
            )
        for event in [*slow_events, fast_event]:
            await tasks.dispatch_event(ctx, str(event.id))
        async with committed.database.session() as session:
            slow_ids = [
                (await deliveries_of(session, event.id))[0].id for event in slow_events
            ]
            [fast_delivery] = await deliveries_of(session, fast_event.id)
        await redis_client.flushdb()

        slow_run = asyncio.gather(
            *(tasks.deliver_webhook(ctx, str(delivery_id)) for delivery_id in slow_ids)
        )
        fast_outcome = await tasks.deliver_webhook(ctx, str(fast_delivery.id))
        # Requests the slow receiver is still answering when the fast delivery ends.
        slow_in_flight = receiver.active
        slow_outcomes = await slow_run

        try:
            assert fast_outcome == "succeeded"
            assert slow_in_flight > 0
            assert sorted(slow_outcomes) == ["skipped"] * 3 + ["succeeded"] * 2
            assert receiver.peak_active == 2
            async with committed.database.session() as session:
                waiting = (
                    await session.scalars(
                        select(WebhookDelivery).where(
                            WebhookDelivery.id.in_(slow_ids),
                            WebhookDelivery.status == "pending",
                        )
                    )
                ).all()
            assert len(waiting) == 3
            assert all(row.throttled_at is not None for row in waiting)
            assert all(row.attempts == 0 for row in waiting)
            # The two finished attempts freed two slots and queued waiting
            # deliveries, and each of those queues the next when it ends. Two
            # attempts that end at once can pick the same waiting delivery, so one
            # job is queued instead of two.
            jobs = await queued(redis_client)
            assert 1 <= len(jobs) <= 2
            assert {job[1][0] for job in jobs} < {str(row.id) for row in waiting}
            assert all(":throttled:" in job[2] for job in jobs)

            await run_worker(settings, ctx)

            assert len(receiver.requests) == 5
            async with committed.database.session() as session:
                rows = (
                    await session.scalars(
                        select(WebhookDelivery).where(WebhookDelivery.id.in_(slow_ids))
                    )
                ).all()
            assert {row.status for row in rows} == {"succeeded"}
            assert all(row.throttled_at is None for row in rows)
            assert all(row.attempts == 1 for row in rows)
        finally:
            await fast.stop()

    async def test_lapsed_lease_frees_its_slot(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        settings = committed.ctx["settings"].model_copy(
            update={"webhook_max_in_flight_per_endpoint": 1}
        )
        ctx = {**committed.ctx, "settings": settings}
        await add_endpoint(committed, receiver.url(), ["lead.*"])
        async with committed.database.session() as session:
            dead = await record_event(session, committed.workspace.id)
            waiting = await record_event(session, committed.workspace.id)
        await tasks.dispatch_event(ctx, str(dead.id))
        await tasks.dispatch_event(ctx, str(waiting.id))
        async with committed.database.session() as session:
            [held] = await deliveries_of(session, dead.id)
            [next_delivery] = await deliveries_of(session, waiting.id)
            # A worker that died mid-request leaves its lease behind.
            held.claimed_until = held.created_at + timedelta(days=1)
            await session.commit()

        blocked = await tasks.deliver_webhook(ctx, str(next_delivery.id))
        async with committed.database.session() as session:
            [held] = await deliveries_of(session, dead.id)
            held.claimed_until = held.created_at - timedelta(seconds=1)
            await session.commit()
        freed = await tasks.deliver_webhook(ctx, str(next_delivery.id))

        assert blocked == "skipped"
        assert freed == "succeeded"
        assert len(receiver.requests) == 1
