"""A running delivery loop's dispatch leases the deliveries it creates, when it may."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import text, update
from standardwebhooks.webhooks import Webhook

from app.core import ids
from app.core.clock import utcnow
from app.core.ids import new_uuid
from app.models import WebhookDelivery
from app.webhooks import delivery as webhook_delivery
from app.webhooks.delivery import NewLeases, leases_per_endpoint
from app.webhooks.dispatch import Dispatch, dispatch_pending
from app.webhooks.repository import SLOT_LOCK_NAMESPACE, WebhookDeliveryRepository
from app.webhooks.sender import WebhookSender
from tests.webhooks.conftest import Committed, Receiver
from tests.webhooks.test_batch import SECRET, add_endpoint, deliveries, emit_events


async def dispatch_leasing(
    committed: Committed, owner: uuid.UUID, limit: int = 500, **settings: Any
) -> Dispatch:
    """Dispatch every undispatched event, leasing to ``owner``, and commit."""
    new_leases = NewLeases(
        committed.ctx["settings"].model_copy(update=settings), owner, limit
    )
    async with committed.database.session() as session:
        dispatch = await dispatch_pending(session, limit=500, lease_new=new_leases)
        await session.commit()
    return dispatch


async def dispatch_unleased(committed: Committed) -> None:
    async with committed.database.session() as session:
        await dispatch_pending(session, limit=500)
        await session.commit()


class TestLeasedAtDispatch:
    async def test_new_deliveries_start_leased_with_their_request(
        self, committed: Committed, receiver: Receiver, sender: WebhookSender
    ) -> None:
        endpoint = await add_endpoint(committed, receiver.url())
        events = await emit_events(committed, 3)
        owner = new_uuid()

        dispatch = await dispatch_leasing(committed, owner)

        assert (dispatch.events, len(dispatch.claims), dispatch.unleased) == (3, 3, 0)
        rows = {row.id: row for row in await deliveries(committed, endpoint.id)}
        for claim in dispatch.claims:
            row = rows[claim.delivery_id]
            assert (row.status, row.attempts, row.claimed_by) == ("pending", 1, owner)
            assert row.claimed_until == claim.claimed_until
            assert claim.attempt == 1
            assert claim.request.message_id == ids.encode(
                "webhook_delivery", claim.delivery_id
            )
            body = orjson.loads(claim.request.body)
            assert body["id"] == ids.encode("event", claim.event_id)
        assert {claim.event_id for claim in dispatch.claims} == {e.id for e in events}

        results = [await sender.send(claim.request) for claim in dispatch.claims]
        async with committed.database.session() as session:
            outcomes = await webhook_delivery.record(
                session,
                committed.ctx["settings"],
                list(zip(dispatch.claims, results, strict=True)),
            )
            await session.commit()

        assert outcomes == ["succeeded"] * 3
        for request in receiver.requests:
            Webhook(SECRET).verify(request.body, request.headers)
        rows = {row.id: row for row in await deliveries(committed, endpoint.id)}
        assert {
            (row.status, row.attempts, row.claimed_until) for row in rows.values()
        } == {("succeeded", 1, None)}

    async def test_leases_no_more_than_the_requested_room(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        endpoint = await add_endpoint(committed, receiver.url())
        await emit_events(committed, 5)

        dispatch = await dispatch_leasing(committed, new_uuid(), limit=2)

        assert (dispatch.events, len(dispatch.claims), dispatch.unleased) == (5, 2, 3)
        rows = await deliveries(committed, endpoint.id)
        leased = [row for row in rows if row.claimed_until is not None]
        waiting = [row for row in rows if row.claimed_until is None]
        assert {row.id for row in leased} == {c.delivery_id for c in dispatch.claims}
        assert {(row.status, row.attempts) for row in waiting} == {("pending", 0)}
        assert len(waiting) == 3

    async def test_owner_share_caps_new_leases(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        settings = {"webhook_max_in_flight_per_endpoint": 1}
        share = leases_per_endpoint(
            committed.ctx["settings"].model_copy(update=settings)
        )
        await add_endpoint(committed, receiver.url())
        owner = new_uuid()
        await emit_events(committed, share - 1)
        first = await dispatch_leasing(committed, owner, **settings)
        await emit_events(committed, 3)

        second = await dispatch_leasing(committed, owner, **settings)

        # The share counts the leases the owner holds already.
        assert len(first.claims) == share - 1
        assert (len(second.claims), second.unleased) == (1, 2)

    async def test_due_delivery_keeps_new_ones_unleased(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        endpoint = await add_endpoint(committed, receiver.url())
        await emit_events(committed, 2)
        await dispatch_unleased(committed)
        await emit_events(committed, 2)

        dispatch = await dispatch_leasing(committed, new_uuid())

        # New deliveries do not pass the endpoint's older due ones.
        assert (dispatch.events, len(dispatch.claims), dispatch.unleased) == (2, 0, 2)
        rows = await deliveries(committed, endpoint.id)
        assert {(row.attempts, row.claimed_until) for row in rows} == {(0, None)}

    async def test_other_owner_lease_keeps_new_ones_unleased(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        await add_endpoint(committed, receiver.url())
        await emit_events(committed, 2)
        other = await dispatch_leasing(committed, new_uuid())
        await emit_events(committed, 2)

        dispatch = await dispatch_leasing(committed, new_uuid())

        assert len(other.claims) == 2
        assert (len(dispatch.claims), dispatch.unleased) == (0, 2)

    async def test_lapsed_lease_of_another_owner_does_not_count(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        endpoint = await add_endpoint(committed, receiver.url())
        await emit_events(committed, 2)
        await dispatch_leasing(committed, new_uuid())
        async with committed.database.session() as session:
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.endpoint_id == endpoint.id)
                .values(claimed_until=utcnow())
            )
            await session.commit()
        await emit_events(committed, 2)

        dispatch = await dispatch_leasing(committed, new_uuid())

        # The lapsed deliveries are due again, so the new ones wait behind them.
        assert (len(dispatch.claims), dispatch.unleased) == (0, 2)

    async def test_held_slot_lock_keeps_new_ones_unleased(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        endpoint = await add_endpoint(committed, receiver.url())
        await emit_events(committed, 2)

        async with committed.database.session() as holder:
            locked = await WebhookDeliveryRepository.from_session(
                holder
            ).try_lock_endpoint_slots([endpoint.id])
            dispatch = await dispatch_leasing(committed, new_uuid())
            await holder.rollback()

        assert locked == [endpoint.id]
        assert (dispatch.events, len(dispatch.claims), dispatch.unleased) == (2, 0, 2)

    async def test_rolled_back_dispatch_leases_nothing(
        self, committed: Committed, receiver: Receiver
    ) -> None:
        endpoint = await add_endpoint(committed, receiver.url())
        await emit_events(committed, 2)
        new_leases = NewLeases(committed.ctx["settings"], new_uuid(), 10)
        async with committed.database.session() as session:
            dispatch = await dispatch_pending(session, limit=500, lease_new=new_leases)
            await session.rollback()

        assert len(dispatch.claims) == 2
        assert await deliveries(committed, endpoint.id) == []
        again = await dispatch_leasing(committed, new_uuid())
        assert (again.events, len(again.claims)) == (2, 2)


class TestSlotFacts:
    async def test_lease_committed_before_the_slot_lock_is_seen(
        self, committed: Committed
    ) -> None:
        endpoint = await add_endpoint(committed, "http://127.0.0.1:9/hooks")
        await emit_events(committed, 1)
        await dispatch_unleased(committed)
        other_owner = new_uuid()
        # Not due, so only its lease counts in the facts.
        async with committed.database.session() as session:
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.endpoint_id == endpoint.id)
                .values(
                    status="succeeded", next_attempt_at=None, claimed_by=other_owner
                )
            )
            await session.commit()
        lock_key = {"namespace": SLOT_LOCK_NAMESPACE, "id": str(endpoint.id)}
        stop = asyncio.Event()

        async def toggle_other_lease() -> int:
            """Take and drop the other owner's lease, under the slot lock."""
            toggles = 0
            async with committed.database.session() as session:
                while not stop.is_set() and toggles < 200_000:
                    await session.execute(
                        text("SELECT pg_advisory_xact_lock(:namespace, hashtext(:id))"),
                        lock_key,
                    )
                    until = utcnow() + timedelta(hours=1) if toggles % 2 else None
                    await session.execute(
                        update(WebhookDelivery)
                        .where(WebhookDelivery.endpoint_id == endpoint.id)
                        .values(claimed_until=until)
                    )
                    await session.commit()
                    toggles += 1
                    await asyncio.sleep(0)
            return toggles

        owner = new_uuid()
        stale = 0
        locked = 0
        toggler = asyncio.create_task(toggle_other_lease())
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not stale:
                async with committed.database.session() as session:
                    slots = await WebhookDeliveryRepository.from_session(
                        session
                    ).lock_slots_for_new([endpoint.id], utcnow(), owner)
                    if slots:
                        locked += 1
                        # With the slot lock held, no other lease can change now.
                        leased_elsewhere = await session.scalar(
                            text(
                                "SELECT EXISTS (SELECT 1 FROM webhook_deliveries "
                                "WHERE endpoint_id = :id AND claimed_until > now() "
                                "AND claimed_by IS DISTINCT FROM :owner)"
                            ),
                            {"id": endpoint.id, "owner": owner},
                        )
                        if leased_elsewhere != slots[0].held_elsewhere:
                            stale += 1
                    await session.rollback()
        finally:
            stop.set()
            toggles = await toggler

        assert toggles > 0
        assert locked > 0
        assert stale == 0
