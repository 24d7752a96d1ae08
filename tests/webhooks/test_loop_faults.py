"""The delivery loop's transactions and sending tasks, under faults and bursts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import func, select

from app.core.clock import utcnow
from app.core.ids import new_uuid
from app.models import WebhookAttempt
from app.webhooks import delivery as webhook_delivery
from app.webhooks.dispatch import dispatch_pending
from app.webhooks.repository import EventRepository
from app.webhooks.sender import AttemptResult
from tests.webhooks.conftest import Committed, Receiver, ScriptedResponse
from tests.webhooks.test_batch import add_endpoint, deliveries, emit_events, limited
from workers import tasks


async def dispatch_all(committed: Committed) -> None:
    """Create the deliveries of every undispatched event, and send none."""
    async with committed.database.session() as session:
        await dispatch_pending(session, limit=500)
        await session.commit()


async def eventually(
    check: Callable[[], Awaitable[bool] | bool], seconds: float
) -> None:
    """Poll ``check`` every 20 ms until it is true, and fail after ``seconds``."""
    for _ in range(int(seconds / 0.02)):
        outcome = check()
        if outcome if isinstance(outcome, bool) else await outcome:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not true within {seconds} s")


class TestDriverTransactions:
    async def test_held_slot_lock_blocks_lease(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        settings = limited(committed, webhook_max_in_flight_per_endpoint=1)["settings"]
        endpoint = await add_endpoint(committed, receiver.url())
        await emit_events(committed, 2)
        await dispatch_all(committed)

        async with committed.database.session() as first:
            first_claims = await webhook_delivery.lease(
                first, settings, limit=1, owner=new_uuid()
            )
            async with committed.database.session() as second:
                second_claims = await webhook_delivery.lease(
                    second, settings, limit=1, owner=new_uuid()
                )
                await second.rollback()
            await first.rollback()

        assert [claim.endpoint_id for claim in first_claims] == [endpoint.id]
        # The first transaction holds the endpoint's slot lock until it ends.
        assert [claim.endpoint_id for claim in second_claims] == []

    async def test_locked_events_skipped_by_second(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        await add_endpoint(committed, receiver.url())
        events = await emit_events(committed, 3)

        async with committed.database.session() as first:
            first_rows = await EventRepository.from_session(
                first
            ).lock_undispatched_batch(500)
            async with committed.database.session() as second:
                second_rows = await EventRepository.from_session(
                    second
                ).lock_undispatched_batch(500)
                await second.rollback()
            await first.rollback()

        ours = {event.id for event in events}
        assert ours <= {row.id for row in first_rows}
        assert ours.isdisjoint(row.id for row in second_rows)

    async def test_rolled_back_record_stores_nothing(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        settings = committed.ctx["settings"]
        endpoint = await add_endpoint(committed, receiver.url())
        await emit_events(committed, 2)
        await dispatch_all(committed)
        async with committed.database.session() as session:
            claims = await webhook_delivery.lease(
                session, settings, limit=2, owner=new_uuid()
            )
            await session.commit()
        assert len(claims) == 2
        success = AttemptResult(attempted_at=utcnow(), duration_ms=5, status_code=200)

        # Successes at a healthy endpoint: the record reads no endpoint first.
        async with committed.database.session() as session:
            outcomes = await webhook_delivery.record(
                session, settings, [(claim, success) for claim in claims]
            )
            await session.rollback()

        assert outcomes == ["succeeded", "succeeded"]
        rows = await deliveries(committed, endpoint.id)
        assert {(row.status, row.attempts) for row in rows} == {("pending", 1)}
        async with committed.database.session() as session:
            stored = await session.scalar(
                select(func.count())
                .select_from(WebhookAttempt)
                .where(WebhookAttempt.delivery_id.in_([c.delivery_id for c in claims]))
            )
        assert stored == 0


class TestRunningLoop:
    async def test_full_batch_waits_without_spinning(
        self,
        committed: Committed,
        receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        ctx = limited(
            committed,
            webhook_batch_size=2,
            webhook_max_in_flight_per_endpoint=2,
            webhook_poll_interval_seconds=0.1,
        )
        receiver.default = ScriptedResponse(delay_seconds=1.5)
        await add_endpoint(committed, receiver.url())
        await emit_events(committed, 2)
        loop = tasks.delivery_loop(ctx)
        waits = 0
        wait = loop._wait

        async def counted_wait(seconds: float) -> None:
            nonlocal waits
            waits += 1
            await wait(seconds)

        monkeypatch.setattr(loop, "_wait", counted_wait)
        loop.start()
        try:
            await eventually(lambda: receiver.active == 2, 5)
            waits = 0
            await asyncio.sleep(0.8)
            saturated_waits = waits
        finally:
            await loop.stop()

        # With the whole batch in flight, the loop waits a poll interval at a time.
        assert saturated_waits <= 12
        assert len(receiver.requests) == 2
