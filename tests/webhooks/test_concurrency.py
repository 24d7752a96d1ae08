"""The per-endpoint limit of requests in flight, across concurrent deliveries."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web
from arq.connections import ArqRedis
from sqlalchemy import select

from app.models import WebhookDelivery, WebhookEndpoint
from tests.webhooks.conftest import Committed, Receiver, ScriptedResponse
from tests.webhooks.factories import deliveries_of, record_event
from tests.webhooks.test_dispatch import queued
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


class NotingReceiver(Receiver):
    """Notes how many requests another receiver had finished when one arrived."""

    def __init__(self, other: Receiver) -> None:
        super().__init__()
        self.other = other
        self.other_done_on_arrival: list[int] = []

    async def _handle(self, request: web.Request) -> web.Response:
        self.other_done_on_arrival.append(len(self.other.requests) - self.other.active)
        return await super()._handle(request)


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
        fast = NotingReceiver(receiver)
        await fast.start()
        receiver.default = ScriptedResponse(delay_seconds=0.5)
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

        await tasks.delivery_loop(ctx).run(until_idle=True)

        try:
            assert len(fast.requests) == 1
            # The slow endpoint's five requests take three rounds of 0.5 s behind
            # its two slots; the fast one did not wait for them.
            assert fast.other_done_on_arrival[0] < 5
            assert receiver.peak_active == 2
            assert len(receiver.requests) == 5
            async with committed.database.session() as session:
                rows = (
                    await session.scalars(
                        select(WebhookDelivery).where(WebhookDelivery.id.in_(slow_ids))
                    )
                ).all()
            assert {row.status for row in rows} == {"succeeded"}
            assert all(row.attempts == 1 for row in rows)
            assert await queued(redis_client) == []
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
