"""Retrying failed provider events: the row goes back to the inbox, applied once."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import Row, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.providers import inbox_admin
from app.billing.providers.inbox import DRAIN_JOB
from app.core import ids
from app.core.clock import utcnow
from app.core.errors import Conflict, NotFound
from app.core.jobs import JobQueue
from app.models import Payment, ProviderEvent, Workspace
from app.models.base import Base
from app.settings import Settings
from tests.billing.conftest import Committed
from tests.billing.factories import (
    create_open_invoice,
    payment_intent,
    sign,
    stripe_body,
)
from workers import tasks

URL = "/v1/provider-webhooks/stripe"
# Long enough for a retry that is not blocked by a row lock to finish.
LOCK_WAIT_SECONDS = 0.5


async def deliver(client: httpx.AsyncClient, body: bytes) -> str:
    """Post a signed Stripe event and return its event id."""
    response = await client.post(
        URL,
        content=body,
        headers={"Content-Type": "application/json", "Stripe-Signature": sign(body)},
    )
    assert response.status_code == 200, response.text
    event_id: str = json.loads(body)["id"]
    return event_id


async def stored_event(session: AsyncSession, event_id: str) -> ProviderEvent:
    row = await session.scalar(
        select(ProviderEvent)
        .where(ProviderEvent.event_id == event_id)
        .execution_options(populate_existing=True)
    )
    assert row is not None
    return row


async def count_payments(session: AsyncSession, workspace_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Payment)
        .where(Payment.workspace_id == workspace_id)
    )
    return int(count or 0)


async def take_out_invoice(
    session: AsyncSession, invoice_id: uuid.UUID
) -> tuple[Row[Any], list[Row[Any]]]:
    """Delete an invoice and its lines; return their rows for ``put_back_invoice``."""
    invoices, lines = (
        Base.metadata.tables["invoices"],
        Base.metadata.tables["invoice_lines"],
    )
    invoice = (
        await session.execute(select(invoices).where(invoices.c.id == invoice_id))
    ).one()
    invoice_lines = list(
        await session.execute(select(lines).where(lines.c.invoice_id == invoice_id))
    )
    await session.execute(delete(invoices).where(invoices.c.id == invoice_id))
    await session.commit()
    return invoice, invoice_lines


async def put_back_invoice(
    session: AsyncSession, invoice: Row[Any], lines: list[Row[Any]]
) -> None:
    await session.execute(
        insert(Base.metadata.tables["invoices"]).values(**invoice._mapping)
    )
    for line in lines:
        await session.execute(
            insert(Base.metadata.tables["invoice_lines"]).values(**line._mapping)
        )
    await session.commit()


class TestRetryFailed:
    async def test_applied_once_invoice_exists(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        redis_client: aioredis.Redis,
        workspace: Workspace,
        open_invoice: dict[str, Any],
    ) -> None:
        invoice_id = ids.decode("invoice", open_invoice["id"])
        # The payment arrives before the invoice is in this database.
        invoice, lines = await take_out_invoice(session, invoice_id)
        event_id = await deliver(
            client,
            stripe_body(
                "payment_intent.succeeded",
                payment_intent(open_invoice["id"], open_invoice["amount_due"]),
            ),
        )
        await tasks.drain_provider_events(worker_ctx)
        failed = await stored_event(session, event_id)
        failed_status, failed_error = failed.status, failed.error
        await put_back_invoice(session, invoice, lines)
        await redis_client.flushdb()

        retried = await inbox_admin.retry_failed(session, "stripe", event_id)
        await session.commit()
        notified = await inbox_admin.notify_worker(worker_ctx["queue"])
        queued = await redis_client.keys(f"arq:job:{DRAIN_JOB}:*")
        drained = await tasks.drain_provider_events(worker_ctx)

        assert failed_status == "failed"
        assert failed_error == f"no invoice {open_invoice['id']} exists"
        assert retried.status == "received"
        assert retried.attempts == 0
        assert retried.error is None
        assert retried.claimed_until is None
        assert retried.processed_at is None
        assert notified is True
        assert len(queued) == 1
        assert drained == 1
        row = await stored_event(session, event_id)
        assert row.status == "processed"
        assert row.error is None
        assert row.attempts == 1
        assert row.workspace_id == workspace.id
        assert await count_payments(session, workspace.id) == 1
        state = (
            await client.get(f"/v1/invoices/{open_invoice['id']}", headers=auth)
        ).json()
        assert state["status"] == "paid"

    async def test_other_statuses_rejected(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
    ) -> None:
        event_id = await deliver(
            client,
            stripe_body("payment_intent.succeeded", payment_intent(None, 100)),
        )
        cases = {
            "received": "already waiting for the worker",
            "processed": "already applied",
            "ignored": "needed no change",
            "needs_review": "could record the payment twice",
            "held": "waits for the payment",
        }

        for status, reason in cases.items():
            await session.execute(
                update(ProviderEvent)
                .where(ProviderEvent.event_id == event_id)
                .values(status=status, attempts=1, error="kept")
            )
            await session.commit()

            with pytest.raises(Conflict) as raised:
                await inbox_admin.retry_failed(session, "stripe", event_id)
            await session.rollback()

            assert f"is {status}" in raised.value.detail
            assert reason in raised.value.detail
            row = await stored_event(session, event_id)
            assert row.status == status
            assert row.attempts == 1
            assert row.error == "kept"

    async def test_unknown_event_not_found(self, session: AsyncSession) -> None:
        with pytest.raises(NotFound) as raised:
            await inbox_admin.retry_failed(session, "stripe", "evt_unknown")

        assert "not found" in raised.value.detail
        assert "stripe" in raised.value.detail

    async def test_other_provider_not_found(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        event_id = await deliver(
            client,
            stripe_body("payment_intent.succeeded", payment_intent(None, 100)),
        )
        await session.execute(
            update(ProviderEvent)
            .where(ProviderEvent.event_id == event_id)
            .values(status="failed")
        )
        await session.commit()

        with pytest.raises(NotFound):
            await inbox_admin.retry_failed(session, "paypal", event_id)


class TestConcurrentRetries:
    async def test_payment_applied_once(
        self, committed: Committed, settings: Settings
    ) -> None:
        client, database = committed.client, committed.database
        invoice = await create_open_invoice(client, committed.auth, committed.customer)
        event_id = await deliver(
            client,
            stripe_body(
                "payment_intent.succeeded",
                payment_intent(invoice["id"], invoice["amount_due"]),
                event_id=f"evt_retry_{uuid.uuid4().hex[:12]}",
            ),
        )
        async with database.session() as session:
            await session.execute(
                update(ProviderEvent)
                .where(ProviderEvent.event_id == event_id)
                .values(
                    status="failed",
                    attempts=1,
                    error="no invoice",
                    processed_at=utcnow(),
                )
            )
            await session.commit()
        queue = JobQueue(settings.redis_url)
        ctx: dict[str, Any] = {"db": database, "queue": queue, "settings": settings}
        await tasks.start_provider_drain(ctx)

        async def retry() -> ProviderEvent:
            async with database.session() as session:
                event = await inbox_admin.retry_failed(session, "stripe", event_id)
                await session.commit()
                return event

        try:
            async with database.session() as first:
                await inbox_admin.retry_failed(first, "stripe", event_id)
                # The second retry starts while the first has the row locked.
                second = asyncio.create_task(retry())
                await asyncio.sleep(LOCK_WAIT_SECONDS)
                waited = not second.done()
                await first.commit()
            with pytest.raises(Conflict) as raised:
                await asyncio.wait_for(second, timeout=30)
            leased = await asyncio.gather(
                tasks.drain_provider_events({**ctx, "job_id": "drain-1"}),
                tasks.drain_provider_events({**ctx, "job_id": "drain-2"}),
            )
        finally:
            await queue.close()
            async with database.session() as session:
                row = await stored_event(session, event_id)
                payments = await count_payments(session, committed.workspace_id)
                await session.execute(
                    delete(ProviderEvent).where(ProviderEvent.event_id == event_id)
                )
                await session.commit()

        assert waited is True
        assert "is received" in raised.value.detail
        assert sum(leased) == 1
        assert row.status == "processed"
        assert row.attempts == 1
        assert payments == 1
