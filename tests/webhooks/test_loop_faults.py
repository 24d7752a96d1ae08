"""The delivery loop's transactions and sending tasks, under faults and bursts."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from aiohttp import web
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.core.clock import utcnow
from app.core.ids import decode, new_uuid
from app.models import (
    Event,
    UndispatchedEvent,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from app.webhooks import delivery as webhook_delivery
from app.webhooks import loop as webhook_loop
from app.webhooks.dispatch import Dispatch, dispatch_pending
from app.webhooks.repository import EventRepository
from app.webhooks.sender import AttemptResult, OutgoingRequest, WebhookSender
from tests.webhooks.conftest import (
    Committed,
    ReceivedRequest,
    Receiver,
    ScriptedResponse,
)
from tests.webhooks.factories import create_endpoint
from tests.webhooks.test_batch import add_endpoint, deliveries, emit_events, limited
from workers import tasks


async def dispatch_all(committed: Committed) -> None:
    """Create the deliveries of every undispatched event, and send none."""
    async with committed.database.session() as session:
        await dispatch_pending(session, limit=500)
        await session.commit()


async def add_unsubscribed_events(committed: Committed, count: int) -> None:
    """Insert undispatched events of a type no endpoint takes."""
    async with committed.database.session() as session:
        await session.execute(
            text(
                "WITH inserted AS ("
                "INSERT INTO events (id, workspace_id, type, object_type, object_id, "
                "sequence, data, created_at) "
                "SELECT gen_random_uuid(), :workspace_id, 'deal.created', 'deal', "
                "gen_random_uuid(), 1, '{}'::jsonb, now() "
                "FROM generate_series(1, :count) RETURNING id) "
                "INSERT INTO undispatched_events (event_id) SELECT id FROM inserted"
            ),
            {"workspace_id": committed.workspace.id, "count": count},
        )
        await session.commit()


async def undispatched(committed: Committed) -> int:
    """Count the workspace's events not dispatched yet."""
    async with committed.database.session() as session:
        count = await session.scalar(
            text(
                "SELECT count(*) FROM undispatched_events AS queued "
                "JOIN events ON events.id = queued.event_id "
                "WHERE events.workspace_id = :workspace_id"
            ),
            {"workspace_id": committed.workspace.id},
        )
        return int(count or 0)


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


class PathReceiver(Receiver):
    """Notes, by request path, the max requests it handled at once."""

    def __init__(self) -> None:
        super().__init__()
        self.active_by_path: Counter[str] = Counter()
        self.peak_by_path: Counter[str] = Counter()

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.path
        self.active_by_path[path] += 1
        self.peak_by_path[path] = max(
            self.peak_by_path[path], self.active_by_path[path]
        )
        try:
            return await super()._handle(request)
        finally:
            self.active_by_path[path] -= 1


class CrashingSender(WebhookSender):
    """Raises instead of sending the first ``crashes`` requests."""

    def __init__(self, settings: Any, crashes: int) -> None:
        super().__init__(settings)
        self.crashes = crashes

    async def send(
        self,
        request: OutgoingRequest,
        *,
        extra_headers: dict[str, str] | None = None,
    ) -> AttemptResult:
        if self.crashes > 0:
            self.crashes -= 1
            raise RuntimeError("the sender crashed")
        return await super().send(request, extra_headers=extra_headers)


async def unsent_events(committed: Committed, events: list[Event]) -> list[Any]:
    """Return the events that are off the dispatch queue but have no delivery."""
    async with committed.database.session() as session:
        rows = await session.execute(
            select(Event.id)
            .where(Event.id.in_([event.id for event in events]))
            .where(
                ~select(UndispatchedEvent.event_id)
                .where(UndispatchedEvent.event_id == Event.id)
                .exists()
            )
            .where(
                ~select(WebhookDelivery.id)
                .where(WebhookDelivery.event_id == Event.id)
                .exists()
            )
        )
        return list(rows.all())


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
            ).claim_undispatched_batch(500)
            async with committed.database.session() as second:
                second_rows = await EventRepository.from_session(
                    second
                ).claim_undispatched_batch(500)
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

        # Successes at a healthy endpoint, so the record reads no endpoint first.
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

    async def test_lease_too_short_is_released_with_its_attempt(
        self,
        committed: Committed,
        receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        ctx = limited(
            committed,
            webhook_timeout_seconds=20,
            claim_lease_seconds=10,
            webhook_poll_interval_seconds=0.05,
        )
        endpoint = await add_endpoint(committed, receiver.url())
        await emit_events(committed, 3)
        # The first leases end before a request could time out.
        monkeypatch.setattr(webhook_delivery, "LEASE_MARGIN_SECONDS", -15)
        released: list[int] = []

        async def counted_release(
            session: AsyncSession, claims: list[webhook_delivery.DeliveryClaim]
        ) -> int:
            released.append(await webhook_delivery.release(session, claims))
            monkeypatch.setattr(webhook_delivery, "LEASE_MARGIN_SECONDS", 30)
            return released[-1]

        monkeypatch.setattr(webhook_loop, "release", counted_release)
        loop = tasks.delivery_loop(ctx)
        loop.start()
        try:
            await eventually(lambda: len(receiver.requests) == 3, 5)
            await eventually(lambda: loop.in_flight == 0, 5)
        finally:
            await loop.stop()

        # The short leases were given back unsent, so each delivery went out once,
        # on its first counted attempt.
        assert sum(released) == 3
        counts = Counter(request.headers["webhook-id"] for request in receiver.requests)
        assert set(counts.values()) == {1}
        rows = await deliveries(committed, endpoint.id)
        assert {(row.status, row.attempts) for row in rows} == {("succeeded", 1)}

    async def test_lease_and_dispatch_share_the_batch(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        batch_size = 4
        ctx = limited(
            committed,
            webhook_batch_size=batch_size,
            webhook_max_in_flight_per_endpoint=batch_size,
            webhook_poll_interval_seconds=0.1,
        )
        receiver.default = ScriptedResponse(delay_seconds=1.0)
        # One endpoint has due deliveries for the lease to take.
        await add_endpoint(committed, receiver.url("/old"))
        await emit_events(committed, batch_size)
        await dispatch_all(committed)
        # New events also go to another, whose deliveries the dispatch leases.
        await add_endpoint(committed, receiver.url("/new"))
        await emit_events(committed, batch_size)
        loop = tasks.delivery_loop(ctx)
        peak = 0
        loop.start()
        try:
            deadline = time.monotonic() + 0.8
            while time.monotonic() < deadline:
                peak = max(peak, loop.in_flight)
                await asyncio.sleep(0.01)
        finally:
            await loop.stop()

        assert receiver.peak_active <= batch_size
        assert peak <= batch_size

    async def test_retry_is_leased_while_events_back_up(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        ctx = limited(
            committed, webhook_batch_size=4, webhook_poll_interval_seconds=0.05
        )
        endpoint = await add_endpoint(committed, receiver.url())
        await emit_events(committed, 1)
        await dispatch_all(committed)
        # The delivery is a retry that comes due once the loop is running.
        async with committed.database.session() as session:
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.endpoint_id == endpoint.id)
                .values(next_attempt_at=utcnow() + timedelta(seconds=0.3))
            )
            await session.commit()
        # A backlog of events no endpoint takes keeps the dispatch busy.
        await add_unsubscribed_events(committed, 6000)
        loop = tasks.delivery_loop(ctx)
        started = time.monotonic()
        loop.start()
        try:
            await eventually(lambda: len(receiver.requests) == 1, 60)
            sent_after = time.monotonic() - started
            backlog_left = await undispatched(committed)
        finally:
            await loop.stop()

        # The retry went out before the backlog was dispatched.
        assert backlog_left > 0, f"sent after {sent_after:.1f} s"

    async def test_failed_dispatch_recovers_without_spinning(
        self,
        committed: Committed,
        receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        ctx = limited(committed, webhook_poll_interval_seconds=0.1)
        endpoint = await add_endpoint(committed, receiver.url())
        await emit_events(committed, 3)
        await dispatch_all(committed)
        late = await emit_events(committed, 4)
        failing = True
        calls = 0

        async def flaky_dispatch(
            session: AsyncSession, *, limit: int, lease_new: Any = None
        ) -> Dispatch:
            nonlocal calls
            calls += 1
            if failing:
                raise RuntimeError("the dispatch failed")
            return await dispatch_pending(session, limit=limit, lease_new=lease_new)

        monkeypatch.setattr(webhook_loop, "dispatch_pending", flaky_dispatch)
        loop = tasks.delivery_loop(ctx)
        started = time.monotonic()
        loop.start()
        try:
            # Due deliveries go out while every dispatch fails.
            await eventually(lambda: len(receiver.requests) == 3, 5)
            await asyncio.sleep(0.3)
            failing_calls = calls
            failing_seconds = time.monotonic() - started
            failing = False
            await eventually(lambda: len(receiver.requests) >= 7, 5)
            await eventually(lambda: loop.in_flight == 0, 5)
        finally:
            await loop.stop()

        # A failed dispatch waits a poll interval before the next.
        assert failing_calls <= failing_seconds / 0.1 + 2
        counts = Counter(request.headers["webhook-id"] for request in receiver.requests)
        assert len(counts) == 7
        assert set(counts.values()) == {1}
        rows = await deliveries(committed, endpoint.id)
        assert {row.event_id for row in rows} >= {event.id for event in late}
        assert {(row.status, row.attempts) for row in rows} == {("succeeded", 1)}

    async def test_stop_during_blocked_dispatch(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        ctx = limited(committed, webhook_poll_interval_seconds=0.05)
        endpoint = await add_endpoint(committed, receiver.url())
        await emit_events(committed, 3)
        await dispatch_all(committed)
        late = await emit_events(committed, 3)
        loop = tasks.delivery_loop(ctx)

        async with committed.database.session() as blocker:
            # The dispatch's FOR UPDATE waits for this lock, but plain reads do not.
            await blocker.execute(text("LOCK TABLE events IN EXCLUSIVE MODE"))
            loop.start()
            await eventually(lambda: len(receiver.requests) == 3, 5)
            stopping = asyncio.create_task(loop.stop())
            await asyncio.sleep(0.2)
            await blocker.rollback()
        await asyncio.wait_for(stopping, 5)

        assert loop.in_flight == 0
        rows = await deliveries(committed, endpoint.id)
        sent = [row for row in rows if row.event_id not in {e.id for e in late}]
        assert len(sent) == 3
        assert {(row.status, row.attempts) for row in sent} == {("succeeded", 1)}
        assert await unsent_events(committed, late) == []

    async def test_crashed_send_leaves_queue_moving(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        ctx = limited(committed, webhook_max_in_flight_per_endpoint=1)
        crashing = CrashingSender(ctx["settings"], crashes=1)
        endpoint = await add_endpoint(committed, receiver.url())
        await emit_events(committed, 3)
        loop = tasks.delivery_loop({**ctx, "webhook_sender": crashing})
        try:
            recorded = await asyncio.wait_for(loop.run(until_idle=True), 10)
        finally:
            await crashing.close()

        assert recorded == 2
        assert loop.in_flight == 0
        assert len(receiver.requests) == 2
        rows = await deliveries(committed, endpoint.id)
        statuses = Counter((row.status, row.attempts) for row in rows)
        # The crashed attempt is not recorded, so its lease lapses and it is sent again.
        assert statuses == Counter({("succeeded", 1): 2, ("pending", 1): 1})

    async def test_gone_endpoint_spares_the_others(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        ctx = limited(
            committed,
            webhook_max_in_flight_per_endpoint=1,
            webhook_poll_interval_seconds=0.05,
        )
        healthy = Receiver()
        await healthy.start()
        healthy.default = ScriptedResponse(delay_seconds=0.02)
        receiver.default = ScriptedResponse(status=410, delay_seconds=0.02)
        gone_endpoint = await add_endpoint(committed, receiver.url())
        await add_endpoint(committed, healthy.url())
        await emit_events(committed, 5)
        loop = tasks.delivery_loop(ctx)
        loop.start()
        try:
            await eventually(lambda: len(healthy.requests) == 5, 5)
            await eventually(lambda: loop.in_flight == 0, 5)
        finally:
            await loop.stop()
            await healthy.stop()

        # Its other four leased deliveries are skipped after the 410, released, and
        # failed by the next lease without an attempt.
        assert len(receiver.requests) == 1
        assert len(healthy.requests) == 5
        async with committed.database.session() as session:
            refreshed = await session.get(WebhookEndpoint, gone_endpoint.id)
        assert refreshed is not None
        assert refreshed.enabled is False
        rows = await deliveries(committed, gone_endpoint.id)
        outcomes = Counter((row.status, row.attempts) for row in rows)
        assert outcomes == Counter({("failed", 1): 1, ("failed", 0): 4})
        skipped = [row for row in rows if row.attempts == 0]
        assert {row.last_error for row in skipped} == {webhook_delivery.DISABLED_ERROR}

    async def test_reenabled_endpoint_gets_deliveries(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        ctx = limited(committed, webhook_poll_interval_seconds=0.05)
        receiver.respond_with(ScriptedResponse(status=410))
        endpoint = await add_endpoint(committed, receiver.url())
        await emit_events(committed, 1)
        loop = tasks.delivery_loop(ctx)

        async def disabled() -> bool:
            async with committed.database.session() as session:
                row = await session.get(WebhookEndpoint, endpoint.id)
                return row is not None and not row.enabled

        loop.start()
        try:
            await eventually(disabled, 5)
            async with committed.database.session() as session:
                await session.execute(
                    update(WebhookEndpoint)
                    .where(WebhookEndpoint.id == endpoint.id)
                    .values(enabled=True, disabled_reason=None, failing_since=None)
                )
                await session.commit()
            await emit_events(committed, 2)
            loop.wake()
            # The 410 is remembered for a lease's length, which is far longer.
            await eventually(lambda: len(receiver.requests) == 3, 5)
            await eventually(lambda: loop.in_flight == 0, 5)
        finally:
            await loop.stop()

        rows = await deliveries(committed, endpoint.id)
        statuses = Counter(row.status for row in rows)
        assert statuses == Counter({"failed": 1, "succeeded": 2})

    async def test_bursts_across_endpoints_keep_limits(
        self, committed: Committed
    ) -> None:
        ctx = limited(
            committed,
            webhook_max_in_flight_per_endpoint=2,
            webhook_batch_size=6,
            webhook_poll_interval_seconds=0.05,
        )
        receiver = PathReceiver()
        await receiver.start()
        receiver.default = ScriptedResponse(delay_seconds=0.03)
        paths = [f"/endpoint-{number}" for number in range(4)]
        for path in paths:
            await add_endpoint(committed, receiver.url(path))
        loop = tasks.delivery_loop(ctx)

        def received(count: int) -> Callable[[], bool]:
            return lambda: len(receiver.requests) >= count

        loop.start()
        try:
            # Each burst drains before the next, so every queue empties and refills.
            for burst in range(5):
                await emit_events(committed, 1 + burst % 3)
                if burst % 2 == 0:
                    loop.wake()
                expected = 4 * sum(1 + number % 3 for number in range(burst + 1))
                await eventually(received(expected), 10)
            await eventually(lambda: loop.in_flight == 0, 5)
        finally:
            await loop.stop()
            await receiver.stop()

        counts = Counter(request.headers["webhook-id"] for request in receiver.requests)
        assert len(counts) == 4 * (1 + 2 + 3 + 1 + 2)
        assert set(counts.values()) == {1}
        for path in paths:
            assert receiver.peak_by_path[path] <= 2, path
        assert loop.in_flight == 0


class TestGatheredRecords:
    """A running loop lets outcomes gather, and records many in one transaction."""

    @staticmethod
    async def start_loop(
        committed: Committed,
        receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch,
        *,
        wait_seconds: float,
        events: int,
        **settings: Any,
    ) -> tuple[webhook_loop.DeliveryLoop, list[int], WebhookEndpoint]:
        """Start a loop with ``events`` to send, noting how many outcomes each of its
        record transactions stores."""
        ctx = limited(committed, webhook_poll_interval_seconds=0.05, **settings)
        monkeypatch.setattr(webhook_loop, "RECORD_WAIT_SECONDS", wait_seconds)
        batches: list[int] = []

        async def counted_record(
            session: AsyncSession, settings: Any, outcomes: list[Any]
        ) -> list[webhook_delivery.Outcome]:
            batches.append(len(outcomes))
            return await webhook_delivery.record(session, settings, outcomes)

        monkeypatch.setattr(webhook_loop, "record", counted_record)
        endpoint = await add_endpoint(committed, receiver.url())
        await emit_events(committed, events)
        loop = tasks.delivery_loop(ctx)
        loop.start()
        return loop, batches, endpoint

    async def test_outcomes_gather_before_one_record(
        self,
        committed: Committed,
        receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        receiver.default = ScriptedResponse(status=204, delay_seconds=0.01)
        loop, batches, endpoint = await self.start_loop(
            committed,
            receiver,
            monkeypatch,
            wait_seconds=0.5,
            events=8,
            webhook_max_in_flight_per_endpoint=1,
            webhook_batch_size=400,
        )
        try:
            await eventually(lambda: sum(batches) == 8, 10)
        finally:
            await loop.stop()

        # One request at a time, each ending 10 ms after the last: recorded as
        # they came, most transactions would store one.
        assert max(batches) >= 4, batches
        rows = await deliveries(committed, endpoint.id)
        assert {(row.status, row.attempts) for row in rows} == {("succeeded", 1)}

    async def test_full_batch_recorded_at_once(
        self,
        committed: Committed,
        receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # A record batch is a quarter of the loop's batch: 2 outcomes.
        loop, batches, endpoint = await self.start_loop(
            committed,
            receiver,
            monkeypatch,
            wait_seconds=60,
            events=4,
            webhook_max_in_flight_per_endpoint=4,
            webhook_batch_size=8,
        )
        try:
            await eventually(lambda: sum(batches) == 4, 10)
        finally:
            await loop.stop()

        assert min(batches) >= 2, batches
        rows = await deliveries(committed, endpoint.id)
        assert {row.status for row in rows} == {"succeeded"}

    async def test_stop_records_gathered_outcomes_at_once(
        self,
        committed: Committed,
        receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        loop, batches, endpoint = await self.start_loop(
            committed,
            receiver,
            monkeypatch,
            wait_seconds=60,
            events=3,
            webhook_timeout_seconds=2,
            webhook_batch_size=400,
        )
        try:
            await eventually(lambda: len(receiver.requests) == 3, 10)
            await eventually(lambda: loop.in_flight == 0, 5)
            assert batches == []
        finally:
            started = time.monotonic()
            await loop.stop()
            stopped_after = time.monotonic() - started

        # The stop waited neither for the gathering nor for its own timeout.
        assert stopped_after < 2, stopped_after
        assert batches == [3]
        rows = await deliveries(committed, endpoint.id)
        assert {(row.status, row.attempts) for row in rows} == {("succeeded", 1)}


def signed_only_by(request: ReceivedRequest, secret: str, other: str) -> bool:
    """Return whether the request verifies with ``secret`` and not with ``other``."""
    try:
        Webhook(secret).verify(request.body, request.headers)
    except WebhookVerificationError:
        return False
    try:
        Webhook(other).verify(request.body, request.headers)
    except WebhookVerificationError:
        return True
    return False


async def delivery_statuses(committed: Committed, endpoint_id: str) -> Counter[str]:
    async with committed.database.session() as session:
        rows = await session.scalars(
            select(WebhookDelivery.status).where(
                WebhookDelivery.endpoint_id == decode("webhook_endpoint", endpoint_id)
            )
        )
        return Counter(rows.all())


class TestEndpointChangedWhileQueued:
    """Requests leased ahead of an endpoint change follow the change."""

    EVENTS = 8

    async def test_rotation_retires_old_secret(
        self,
        committed: Committed,
        committed_api: httpx.AsyncClient,
        receiver: Receiver,
    ) -> None:
        ctx = limited(committed, webhook_max_in_flight_per_endpoint=1)
        receiver.default = ScriptedResponse(delay_seconds=0.3)
        endpoint = await create_endpoint(
            committed_api, committed.auth, receiver.url(), event_types=["lead.*"]
        )
        path = f"/v1/webhook-endpoints/{endpoint['id']}"
        await emit_events(committed, self.EVENTS)
        loop = tasks.delivery_loop(ctx)
        loop.start()
        try:
            await eventually(lambda: len(receiver.requests) >= 1, 5)
            rotated = await committed_api.post(
                f"{path}/rotate-secret",
                json={"previous_secret_expires_in": 0},
                headers=committed.auth,
            )
            sent_before = len(receiver.requests)

            async def all_succeeded() -> bool:
                statuses = await delivery_statuses(committed, endpoint["id"])
                return statuses["succeeded"] == self.EVENTS

            await eventually(all_succeeded, 20)
        finally:
            await loop.stop()

        assert rotated.status_code == 200, rotated.text
        new_secret = rotated.json()["secret"]
        later = receiver.requests[sent_before:]
        old_only = [
            request
            for request in later
            if signed_only_by(request, endpoint["secret"], new_secret)
        ]
        # With one slot and a 0.3 s receiver, one more claim may go out before the
        # loop reads the change.
        assert len(old_only) <= 1
        assert len(later) >= self.EVENTS - sent_before

    async def test_disabled_endpoint_gets_no_more(
        self,
        committed: Committed,
        committed_api: httpx.AsyncClient,
        receiver: Receiver,
    ) -> None:
        ctx = limited(committed, webhook_max_in_flight_per_endpoint=1)
        receiver.default = ScriptedResponse(delay_seconds=0.3)
        endpoint = await create_endpoint(
            committed_api, committed.auth, receiver.url(), event_types=["lead.*"]
        )
        path = f"/v1/webhook-endpoints/{endpoint['id']}"
        await emit_events(committed, self.EVENTS)
        loop = tasks.delivery_loop(ctx)
        loop.start()
        try:
            await eventually(lambda: len(receiver.requests) >= 1, 5)
            disabled = await committed_api.patch(
                path, json={"enabled": False}, headers=committed.auth
            )
            sent_before = len(receiver.requests)

            async def none_pending() -> bool:
                statuses = await delivery_statuses(committed, endpoint["id"])
                return statuses["pending"] == 0

            await eventually(none_pending, 20)
        finally:
            await loop.stop()

        assert disabled.status_code == 200, disabled.text
        statuses = await delivery_statuses(committed, endpoint["id"])
        # With one slot and a 0.3 s receiver, one more claim may go out before the
        # loop reads the change.
        assert len(receiver.requests) - sent_before <= 1
        assert statuses["failed"] >= self.EVENTS - sent_before - 1
        assert statuses["succeeded"] + statuses["failed"] == self.EVENTS
