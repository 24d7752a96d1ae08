"""Batches of the provider event inbox: each event is applied once by one worker."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from arq.utils import timestamp_ms
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.providers.inbox import (
    DRAIN_JOB,
    DRAIN_WINDOW_MS,
    DrainSignal,
    provider_event_service,
)
from app.billing.repository import InvoiceRepository, PaymentRepository
from app.billing.views import invoice_data, payment_data
from app.core.clock import utcnow
from app.core.ids import new_uuid
from app.core.jobs import QUEUE_NAME, JobQueue
from app.models import Event, Invoice, Payment, ProviderEvent, Workspace
from app.settings import Settings
from tests.billing.conftest import Committed
from tests.billing.factories import (
    create_customer,
    create_open_invoice,
    payment_intent,
    sign,
    stripe_body,
)
from workers import tasks

URL = "/v1/provider-webhooks/stripe"


async def deliver(client: httpx.AsyncClient, body: bytes) -> dict[str, Any]:
    response = await client.post(
        URL,
        content=body,
        headers={"Content-Type": "application/json", "Stripe-Signature": sign(body)},
    )
    assert response.status_code == 200, response.text
    receipt: dict[str, Any] = response.json()
    return receipt


def payment_body(invoice_id: str, number: int) -> bytes:
    return stripe_body(
        "payment_intent.succeeded",
        payment_intent(invoice_id, 10000, intent_id=f"pi_batch_{number}"),
        event_id=f"evt_batch_{number}",
    )


async def rows_by_event(session: AsyncSession) -> dict[str, ProviderEvent]:
    rows = await session.scalars(
        select(ProviderEvent).execution_options(populate_existing=True)
    )
    return {row.event_id: row for row in rows}


async def deliver_payments(
    client: httpx.AsyncClient, session: AsyncSession, invoice_ids: list[str]
) -> dict[str, ProviderEvent]:
    """Deliver one payment event per invoice and return the stored rows by event id."""
    for number, invoice_id in enumerate(invoice_ids):
        await deliver(client, payment_body(invoice_id, number))
    return await rows_by_event(session)


async def count_payments(session: AsyncSession, workspace_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Payment)
        .where(Payment.workspace_id == workspace_id)
    )
    return int(count or 0)


@pytest.fixture
async def invoice_ids(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    session: AsyncSession,
    workspace: Workspace,
) -> AsyncIterator[list[str]]:
    customer = await create_customer(session, workspace.id)
    yield [(await create_open_invoice(client, auth, customer))["id"] for _ in range(3)]


class TestBatchClaim:
    async def test_one_job_applies_batch(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        workspace: Workspace,
        invoice_ids: list[str],
    ) -> None:
        rows = await deliver_payments(client, session, invoice_ids)

        first = await tasks.process_provider_event(
            worker_ctx, str(rows["evt_batch_0"].id)
        )
        later = [
            await tasks.process_provider_event(worker_ctx, str(rows[name].id))
            for name in ("evt_batch_1", "evt_batch_2")
        ]

        assert first == "processed"
        assert later == [None, None]
        rows = await rows_by_event(session)
        assert {row.status for row in rows.values()} == {"processed"}
        assert {row.attempts for row in rows.values()} == {1}
        assert await count_payments(session, workspace.id) == 3

    async def test_duplicate_delivery_applied_once(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        workspace: Workspace,
        invoice_ids: list[str],
    ) -> None:
        body = payment_body(invoice_ids[0], 0)
        receipts = [await deliver(client, body), await deliver(client, body)]
        [row] = (await rows_by_event(session)).values()

        outcomes = [
            await tasks.process_provider_event(worker_ctx, str(row.id)),
            await tasks.process_provider_event(worker_ctx, str(row.id)),
        ]
        redelivered = await deliver(client, body)

        assert [receipt["duplicate"] for receipt in receipts] == [False, True]
        assert redelivered["duplicate"] is True
        assert outcomes == ["processed", None]
        [row] = (await rows_by_event(session)).values()
        assert row.status == "processed"
        assert row.attempts == 1
        assert await count_payments(session, workspace.id) == 1

    async def test_claimed_event_not_claimed_again(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        invoice_ids: list[str],
    ) -> None:
        rows = await deliver_payments(client, session, invoice_ids)
        lease = timedelta(minutes=2)

        first = await provider_event_service.claim_batch(
            session, rows["evt_batch_1"].id, lease
        )
        second = await provider_event_service.claim_batch(
            session, rows["evt_batch_0"].id, lease
        )

        assert first[0] == rows["evt_batch_1"].id
        assert sorted(first) == sorted(row.id for row in rows.values())
        assert second == []

    async def test_failing_event_leaves_batch_applied(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        workspace: Workspace,
        invoice_ids: list[str],
    ) -> None:
        broken = ProviderEvent(
            id=new_uuid(),
            provider="stripe",
            event_id="evt_broken",
            type="payment_intent.succeeded",
            payload={"data": "not an object"},
            status="received",
            attempts=0,
            received_at=utcnow() - timedelta(seconds=1),
        )
        session.add(broken)
        await session.commit()
        await deliver(client, payment_body(invoice_ids[0], 0))
        rows = await rows_by_event(session)

        outcome = await tasks.process_provider_event(
            worker_ctx, str(rows["evt_batch_0"].id)
        )

        assert outcome == "processed"
        rows = await rows_by_event(session)
        assert rows["evt_batch_0"].status == "processed"
        assert rows["evt_batch_0"].attempts == 1
        assert rows["evt_broken"].status == "received"
        assert rows["evt_broken"].attempts == 1
        assert rows["evt_broken"].error is not None
        assert "TypeError" in rows["evt_broken"].error
        assert await count_payments(session, workspace.id) == 1

    async def test_crash_after_claim_retried(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        workspace: Workspace,
        invoice_ids: list[str],
    ) -> None:
        await deliver(client, payment_body(invoice_ids[0], 0))
        [row] = (await rows_by_event(session)).values()
        # A worker claims the event, commits the lease, and dies before applying it.
        async with tasks.unit_of_work(worker_ctx) as claiming:
            claimed = await provider_event_service.claim_batch(
                claiming, row.id, timedelta(minutes=2)
            )
        while_leased = await tasks.process_provider_event(worker_ctx, str(row.id))
        swept_while_leased = await tasks.sweep_provider_events(worker_ctx)
        await session.execute(
            update(ProviderEvent).values(
                claimed_until=utcnow() - timedelta(seconds=1),
                received_at=utcnow() - timedelta(minutes=1),
            )
        )
        await session.commit()

        swept = await tasks.sweep_provider_events(worker_ctx)

        assert claimed == [row.id]
        assert while_leased is None
        assert swept_while_leased == 0
        assert swept == 1
        [row] = (await rows_by_event(session)).values()
        assert row.status == "processed"
        assert row.attempts == 2
        assert await count_payments(session, workspace.id) == 1


async def deliver_committed_payments(
    committed: Committed, *, first_number: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """Open 8 invoices and deliver one payment event for each.

    Return the invoices and the event ids.
    """
    client, auth = committed.client, committed.auth
    invoices = [
        await create_open_invoice(client, auth, committed.customer) for _ in range(8)
    ]
    bodies = [
        payment_body(invoice["id"], first_number + number)
        for number, invoice in enumerate(invoices)
    ]
    for body in bodies:
        await deliver(client, body)
    return invoices, [json.loads(body)["id"] for body in bodies]


class TestConcurrentWorkers:
    async def test_each_event_applied_once(
        self, committed: Committed, settings: Settings
    ) -> None:
        client, auth = committed.client, committed.auth
        invoices, event_ids = await deliver_committed_payments(
            committed, first_number=0
        )
        async with committed.database.session() as session:
            row_ids = list(
                await session.scalars(
                    select(ProviderEvent.id).where(
                        ProviderEvent.event_id.in_(event_ids)
                    )
                )
            )
        queue = JobQueue(settings.redis_url)
        ctx = {"db": committed.database, "queue": queue, "settings": settings}

        try:
            outcomes = await asyncio.gather(
                *(
                    tasks.process_provider_event(ctx, str(row_id))
                    for row_id in [*row_ids, *row_ids]
                )
            )
        finally:
            await queue.close()

        assert outcomes.count("processed") >= 1
        assert set(outcomes) <= {"processed", None}
        async with committed.database.session() as session:
            rows = list(
                await session.scalars(
                    select(ProviderEvent).where(ProviderEvent.event_id.in_(event_ids))
                )
            )
            payments = await count_payments(session, committed.workspace_id)
            intents = await session.scalar(
                select(func.count(func.distinct(Payment.provider_payment_id))).where(
                    Payment.workspace_id == committed.workspace_id
                )
            )
        assert len(rows) == 8
        assert {row.status for row in rows} == {"processed"}
        assert {row.attempts for row in rows} == {1}
        assert payments == 8
        assert intents == 8
        for invoice in invoices:
            state = (
                await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
            ).json()
            assert state["status"] == "paid"
            assert state["amount_paid"] == 10000


class TestBatchApply:
    async def test_batch_skips_finished_event(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        workspace: Workspace,
        invoice_ids: list[str],
    ) -> None:
        for number, invoice_id in enumerate(invoice_ids[:2]):
            await deliver(client, payment_body(invoice_id, number))
        rows = await rows_by_event(session)
        done, pending = rows["evt_batch_0"].id, rows["evt_batch_1"].id
        await session.execute(
            update(ProviderEvent)
            .where(ProviderEvent.id == done)
            .values(status="ignored")
        )
        await session.commit()

        outcomes = await provider_event_service.process_batch(session, [done, pending])
        await session.commit()

        assert outcomes == {done: None, pending: "processed"}
        rows = await rows_by_event(session)
        assert rows["evt_batch_0"].status == "ignored"
        assert rows["evt_batch_1"].status == "processed"
        assert await count_payments(session, workspace.id) == 1

    async def test_emitted_data_matches_committed_rows(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        invoice_ids: list[str],
    ) -> None:
        rows = await deliver_payments(client, session, invoice_ids)

        await tasks.process_provider_event(worker_ctx, str(rows["evt_batch_0"].id))

        events = (
            await session.scalars(
                select(Event).where(
                    Event.type.in_(("invoice.paid", "payment.succeeded"))
                )
            )
        ).all()
        assert sorted(event.type for event in events) == (
            ["invoice.paid"] * 3 + ["payment.succeeded"] * 3
        )
        for event in events:
            if event.type == "invoice.paid":
                invoice = await session.get(
                    Invoice, event.object_id, populate_existing=True
                )
                assert invoice is not None
                lines = await InvoiceRepository.from_session(session).lines(invoice.id)
                assert invoice.status == "paid"
                assert event.data == invoice_data(invoice, lines)
            else:
                payment = await session.get(
                    Payment, event.object_id, populate_existing=True
                )
                assert payment is not None
                allocations = await PaymentRepository.from_session(
                    session
                ).allocations_of([payment.id])
                assert event.data == payment_data(payment, allocations[payment.id])


async def drain_keys(redis_client: aioredis.Redis) -> list[bytes]:
    return list(await redis_client.keys(f"arq:job:{DRAIN_JOB}:*"))


class TestDrain:
    async def test_one_drain_job_per_window(
        self, queue: JobQueue, redis_client: aioredis.Redis
    ) -> None:
        signal = DrainSignal(queue)
        start = (timestamp_ms() // DRAIN_WINDOW_MS + 10) * DRAIN_WINDOW_MS

        await signal.stored(start)
        await signal.stored(start + DRAIN_WINDOW_MS - 1)
        first_window = await drain_keys(redis_client)
        await signal.stored(start + DRAIN_WINDOW_MS)
        queued = await redis_client.zrange(QUEUE_NAME, 0, -1, withscores=True)

        assert first_window == [
            f"arq:job:{DRAIN_JOB}:{start + DRAIN_WINDOW_MS}".encode()
        ]
        assert len(await drain_keys(redis_client)) == 2
        # Each job is due when its window ends, after every event stored in it.
        assert sorted(score for _, score in queued) == [
            start + DRAIN_WINDOW_MS,
            start + 2 * DRAIN_WINDOW_MS,
        ]

    async def test_drain_applies_every_received_event(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        workspace: Workspace,
        invoice_ids: list[str],
    ) -> None:
        await deliver_payments(client, session, invoice_ids)

        drained = await tasks.drain_provider_events(worker_ctx)
        again = await tasks.drain_provider_events(worker_ctx)

        assert drained == 3
        assert again == 0
        rows = await rows_by_event(session)
        assert {row.status for row in rows.values()} == {"processed"}
        assert {row.attempts for row in rows.values()} == {1}
        assert await count_payments(session, workspace.id) == 3

    async def test_drain_leaves_leased_event(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        invoice_ids: list[str],
    ) -> None:
        rows = await deliver_payments(client, session, invoice_ids)
        leased = rows["evt_batch_1"].id
        await session.execute(
            update(ProviderEvent)
            .where(ProviderEvent.id == leased)
            .values(claimed_until=utcnow() + timedelta(minutes=1))
        )
        await session.commit()

        drained = await tasks.drain_provider_events(worker_ctx)

        assert drained == 2
        rows = await rows_by_event(session)
        assert rows["evt_batch_1"].status == "received"
        assert rows["evt_batch_1"].attempts == 0
        assert {rows["evt_batch_0"].status, rows["evt_batch_2"].status} == {"processed"}

    async def test_sweep_applies_events_of_lost_drain_job(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        redis_client: aioredis.Redis,
        workspace: Workspace,
        invoice_ids: list[str],
    ) -> None:
        await deliver_payments(client, session, invoice_ids)
        queued = await drain_keys(redis_client)
        # Redis loses the drain job before the worker takes it.
        await redis_client.flushdb()
        fresh = await tasks.sweep_provider_events(worker_ctx)
        await session.execute(
            update(ProviderEvent).values(received_at=utcnow() - timedelta(minutes=1))
        )
        await session.commit()

        swept = await tasks.sweep_provider_events(worker_ctx)

        assert queued != []
        assert fresh == 0
        assert swept == 3
        rows = await rows_by_event(session)
        assert {row.status for row in rows.values()} == {"processed"}
        assert {row.attempts for row in rows.values()} == {1}
        assert await count_payments(session, workspace.id) == 3


class TestConcurrentDrains:
    async def test_each_event_applied_once(
        self, committed: Committed, settings: Settings
    ) -> None:
        _, event_ids = await deliver_committed_payments(committed, first_number=100)
        queue = JobQueue(settings.redis_url)
        ctx: dict[str, Any] = {
            "db": committed.database,
            "queue": queue,
            "settings": settings,
        }
        await tasks.start_provider_drain(ctx)

        try:
            # arq gives each job a copy of the worker's context.
            leased = await asyncio.gather(
                *(
                    tasks.drain_provider_events({**ctx, "job_id": f"drain-{number}"})
                    for number in range(4)
                )
            )
        finally:
            await queue.close()

        # Two lanes drain; the jobs that find both busy return at once.
        assert sum(leased) == 8
        assert leased.count(0) >= 2
        async with committed.database.session() as session:
            rows = list(
                await session.scalars(
                    select(ProviderEvent).where(ProviderEvent.event_id.in_(event_ids))
                )
            )
            payments = await count_payments(session, committed.workspace_id)
        assert {row.status for row in rows} == {"processed"}
        assert {row.attempts for row in rows} == {1}
        assert payments == 8
