"""The delivery loop: bulk dispatch, batch leases, and the guarantees across workers."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

from sqlalchemy import select, text, update
from standardwebhooks.webhooks import Webhook

from app.core import ids
from app.core.clock import utcnow
from app.models import (
    Event,
    UndispatchedEvent,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from app.webhooks import delivery as webhook_delivery
from app.webhooks.dispatch import dispatch_pending
from app.webhooks.sender import WebhookSender
from tests.webhooks.conftest import Committed, Receiver, ScriptedResponse
from tests.webhooks.factories import drain, record_event
from workers import tasks

SECRET = "whsec_" + "D" * 43 + "="


async def add_endpoint(committed: Committed, url: str) -> WebhookEndpoint:
    async with committed.database.session() as session:
        endpoint = WebhookEndpoint(
            workspace_id=committed.workspace.id,
            url=url,
            event_types=["lead.*"],
            secret=SECRET,
        )
        session.add(endpoint)
        await session.commit()
        return endpoint


async def emit_events(committed: Committed, count: int) -> list[Event]:
    async with committed.database.session() as session:
        return [
            await record_event(session, committed.workspace.id) for _ in range(count)
        ]


async def deliveries(committed: Committed, endpoint_id: uuid.UUID) -> list[Any]:
    async with committed.database.session() as session:
        rows = await session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
        )
        return list(rows.all())


def limited(committed: Committed, **settings: Any) -> dict[str, Any]:
    updated = committed.ctx["settings"].model_copy(update=settings)
    return {**committed.ctx, "settings": updated}


class TestBulkDispatch:
    async def test_loop_dispatches_events_without_their_jobs(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        endpoint = await add_endpoint(committed, receiver.url())
        events = await emit_events(committed, 7)
        async with committed.database.session() as session:
            late = WebhookEndpoint(
                workspace_id=committed.workspace.id,
                url=receiver.url("/late"),
                event_types=["*"],
                secret=SECRET,
            )
            session.add(late)
            await session.commit()

        await drain(committed.ctx)

        rows = await deliveries(committed, endpoint.id)
        assert sorted(row.event_id for row in rows) == sorted(e.id for e in events)
        assert {row.status for row in rows} == {"succeeded"}
        # The endpoint created after the events gets none of them.
        assert await deliveries(committed, late.id) == []
        async with committed.database.session() as session:
            undispatched = await session.scalars(
                select(UndispatchedEvent.event_id).where(
                    UndispatchedEvent.event_id.in_([event.id for event in events])
                )
            )
            assert undispatched.all() == []
        for request in receiver.requests:
            Webhook(SECRET).verify(request.body, request.headers)


class TestBatchLeases:
    async def test_two_loops_never_send_one_delivery_at_once(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        ctx = limited(committed, webhook_max_in_flight_per_endpoint=4)
        receiver.default = ScriptedResponse(delay_seconds=0.05)
        endpoint = await add_endpoint(committed, receiver.url())
        await emit_events(committed, 30)
        second_sender = WebhookSender(ctx["settings"])
        try:
            await asyncio.gather(
                drain(ctx), drain({**ctx, "webhook_sender": second_sender})
            )
        finally:
            await second_sender.close()

        counts = Counter(request.headers["webhook-id"] for request in receiver.requests)
        assert len(counts) == 30
        assert set(counts.values()) == {1}
        assert receiver.peak_active <= 4
        rows = await deliveries(committed, endpoint.id)
        assert {(row.status, row.attempts) for row in rows} == {("succeeded", 1)}

    async def test_in_flight_limit_holds_across_a_batch(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        ctx = limited(
            committed, webhook_max_in_flight_per_endpoint=3, webhook_batch_size=50
        )
        receiver.default = ScriptedResponse(delay_seconds=0.1)
        endpoint = await add_endpoint(committed, receiver.url())
        await emit_events(committed, 12)

        await drain(ctx)

        assert len(receiver.requests) == 12
        assert receiver.peak_active == 3
        rows = await deliveries(committed, endpoint.id)
        assert {row.status for row in rows} == {"succeeded"}

    async def test_batch_of_a_killed_worker_is_sent_again(
        self, committed: Committed, receiver: Receiver, sender: WebhookSender
    ) -> None:
        endpoint = await add_endpoint(committed, receiver.url())
        await emit_events(committed, 6)
        await drain(limited(committed, webhook_batch_size=1, webhook_max_attempts=1))
        # Start over: the first drain sent one; make all six due and unsent again.
        async with committed.database.session() as session:
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.endpoint_id == endpoint.id)
                .values(
                    status="pending",
                    attempts=0,
                    attempt_limit=None,
                    next_attempt_at=utcnow(),
                    completed_at=None,
                )
            )
            await session.commit()
        receiver.requests.clear()
        settings = committed.ctx["settings"]

        # A worker leases a batch and sends it, then dies before recording.
        async with committed.database.session() as session:
            batch = await webhook_delivery.lease(
                session, settings, limit=4, owner=uuid.uuid4()
            )
            await session.commit()
        for claim in batch:
            await sender.send(claim.request)
        blocked = await drain(committed.ctx)
        async with committed.database.session() as session:
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_([claim.delivery_id for claim in batch]))
                .values(claimed_until=utcnow() - timedelta(seconds=1))
            )
            await session.commit()
        await drain(committed.ctx)

        assert len(batch) == 4
        # While the dead worker's leases lived, no other loop sent to its endpoint.
        assert blocked == 0
        counts = Counter(request.headers["webhook-id"] for request in receiver.requests)
        batch_ids = {
            ids.encode("webhook_delivery", claim.delivery_id) for claim in batch
        }
        assert {key for key, count in counts.items() if count == 2} == batch_ids
        bodies: dict[str, bytes] = {}
        for request in receiver.requests:
            key = request.headers["webhook-id"]
            assert bodies.setdefault(key, request.body) == request.body
        rows = await deliveries(committed, endpoint.id)
        assert {row.status for row in rows} == {"succeeded"}
        assert {
            row.attempts for row in rows if row.id in {c.delivery_id for c in batch}
        } == {2}

    async def test_sends_next_batch_while_recording_waits(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        ctx = limited(
            committed, webhook_max_in_flight_per_endpoint=2, webhook_batch_size=2
        )
        endpoint = await add_endpoint(committed, receiver.url())
        await emit_events(committed, 6)
        loop = tasks.delivery_loop(ctx)

        # Another transaction holds a lock that blocks every insert of attempts, so
        # no outcome can be recorded until it ends.
        async with committed.database.session() as blocker:
            await blocker.execute(text("LOCK TABLE webhook_attempts IN SHARE MODE"))
            loop.start()
            for _ in range(200):
                if len(receiver.requests) >= 6:
                    break
                await asyncio.sleep(0.05)
            sent_while_blocked = len(receiver.requests)
            await blocker.rollback()
        for _ in range(200):
            rows = await deliveries(committed, endpoint.id)
            if {row.status for row in rows} == {"succeeded"}:
                break
            await asyncio.sleep(0.05)
        await loop.stop()

        # A batch holds two deliveries, so the loop leased three batches while the
        # first batch's outcomes waited to be recorded.
        assert sent_while_blocked == 6
        assert len(receiver.requests) == 6
        assert {(row.status, row.attempts) for row in rows} == {("succeeded", 1)}

    async def test_running_loop_sends_events_as_they_come(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        ctx = limited(
            committed, webhook_max_in_flight_per_endpoint=3, webhook_batch_size=8
        )
        receiver.default = ScriptedResponse(delay_seconds=0.02)
        endpoint = await add_endpoint(committed, receiver.url())
        loop = tasks.delivery_loop(ctx)
        loop.start()
        try:
            # Four commits, each sent before the next, so the endpoint's queue runs
            # empty in between. Two wake the loop as a dispatch job would, and two
            # wait for its poll.
            for commit in range(4):
                await emit_events(committed, 10)
                if commit % 2 == 0:
                    loop.wake()
                for _ in range(200):
                    if len(receiver.requests) >= 10 * (commit + 1):
                        break
                    await asyncio.sleep(0.05)
        finally:
            await loop.stop()

        counts = Counter(request.headers["webhook-id"] for request in receiver.requests)
        assert len(counts) == 40
        assert set(counts.values()) == {1}
        assert receiver.peak_active <= 3
        assert loop.in_flight == 0
        rows = await deliveries(committed, endpoint.id)
        assert len(rows) == 40
        assert {(row.status, row.attempts) for row in rows} == {("succeeded", 1)}

    async def test_stop_releases_unsent_leases(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        ctx = limited(
            committed,
            webhook_max_in_flight_per_endpoint=1,
            webhook_batch_size=20,
            claim_lease_seconds=600,
        )
        receiver.default = ScriptedResponse(delay_seconds=0.3)
        endpoint = await add_endpoint(committed, receiver.url())
        await emit_events(committed, 8)
        loop = tasks.delivery_loop(ctx)
        loop.start()
        for _ in range(200):
            if receiver.requests:
                break
            await asyncio.sleep(0.02)

        await loop.stop()

        # The request in flight ends and is recorded. The others were leased but
        # not started, so their leases and attempts are given back.
        rows = await deliveries(committed, endpoint.id)
        sent = [row for row in rows if row.status == "succeeded"]
        waiting = [row for row in rows if row.status == "pending"]
        assert len(receiver.requests) == 1
        assert len(sent) == 1
        assert sent[0].attempts == 1
        assert len(waiting) == 7
        assert {(row.attempts, row.claimed_until) for row in waiting} == {(0, None)}
        assert loop.in_flight == 0

        await drain(ctx)

        rows = await deliveries(committed, endpoint.id)
        assert {(row.status, row.attempts) for row in rows} == {("succeeded", 1)}
        counts = Counter(request.headers["webhook-id"] for request in receiver.requests)
        assert len(counts) == 8
        assert set(counts.values()) == {1}

    async def test_batch_outcomes_recorded_together(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        endpoint = await add_endpoint(committed, receiver.url())
        await emit_events(committed, 3)
        receiver.respond_with(
            ScriptedResponse(status=500), ScriptedResponse(status=503)
        )

        await drain(limited(committed, webhook_max_attempts=1))

        rows = await deliveries(committed, endpoint.id)
        assert Counter(row.status for row in rows) == {"failed": 2, "succeeded": 1}
        async with committed.database.session() as session:
            attempts = (
                await session.scalars(
                    select(WebhookAttempt).where(
                        WebhookAttempt.delivery_id.in_([row.id for row in rows])
                    )
                )
            ).all()
            refreshed = await session.get(WebhookEndpoint, endpoint.id)
        assert sorted(attempt.status_code or 0 for attempt in attempts) == [
            200,
            500,
            503,
        ]
        assert refreshed is not None
        assert refreshed.enabled

    async def test_gone_endpoint_gets_no_more_of_the_batch(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        ctx = limited(committed, webhook_max_in_flight_per_endpoint=1)
        endpoint = await add_endpoint(committed, receiver.url())
        await emit_events(committed, 4)
        receiver.default = ScriptedResponse(status=410)

        await drain(ctx)

        assert len(receiver.requests) == 1
        async with committed.database.session() as session:
            refreshed = await session.get(WebhookEndpoint, endpoint.id)
        assert refreshed is not None
        assert refreshed.enabled is False
        assert refreshed.disabled_reason == "gone"


class TestLeasesByPace:
    def test_fast_endpoint_may_hold_more_leases(self, committed: Committed) -> None:
        settings = committed.ctx["settings"].model_copy(
            update={"webhook_max_in_flight_per_endpoint": 2}
        )
        unknown = webhook_delivery.leases_per_endpoint(settings)
        timeout = settings.webhook_timeout_seconds

        assert webhook_delivery.leases_per_endpoint(settings, 0.01) > unknown
        assert webhook_delivery.leases_per_endpoint(settings, timeout) == unknown
        assert webhook_delivery.leases_per_endpoint(settings, 10 * timeout) == unknown
        # However fast, a request is counted as taking at least MIN_PACE_SECONDS.
        assert webhook_delivery.leases_per_endpoint(
            settings, 0.0
        ) == webhook_delivery.leases_per_endpoint(settings, 0.01)

    async def test_lease_takes_more_of_a_fast_endpoint(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        endpoint = await add_endpoint(committed, receiver.url())
        settings = committed.ctx["settings"].model_copy(
            update={"webhook_max_in_flight_per_endpoint": 1}
        )
        usual = webhook_delivery.leases_per_endpoint(settings)
        await emit_events(committed, usual + 3)
        async with committed.database.session() as session:
            await dispatch_pending(session, limit=100)
            await session.commit()

        async with committed.database.session() as session:
            unknown = await webhook_delivery.lease(
                session, settings, limit=100, owner=uuid.uuid4()
            )
            await session.rollback()
        async with committed.database.session() as session:
            fast = await webhook_delivery.lease(
                session,
                settings,
                limit=100,
                owner=uuid.uuid4(),
                slowest={endpoint.id: 0.005},
            )
            await session.commit()

        assert len(unknown) == usual
        assert len(fast) == usual + 3
