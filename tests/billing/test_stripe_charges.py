"""Stripe refunds and disputes, signed by the stripe library and run by the worker job."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import redis.asyncio as aioredis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.providers.inbox import job_id
from app.core.ids import encode
from app.core.jobs import JobQueue
from app.models import Event, Payment, ProviderEvent, Refund
from app.settings import Settings
from tests.billing.conftest import Committed
from tests.billing.factories import (
    create_open_invoice,
    payment_intent,
    sign,
    stripe_body,
)
from tests.billing.test_stripe import invoice_state, receive_and_process
from workers import tasks

INTENT = "pi_3Test0001"


def charge(refunded: int, *refund_ids: str, amount: int = 10000) -> dict[str, Any]:
    return {
        "id": "ch_3Test0001",
        "object": "charge",
        "payment_intent": INTENT,
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": refunded,
        "currency": "eur",
        "refunded": refunded == amount,
        "refunds": {
            "object": "list",
            "data": [{"id": refund_id, "object": "refund"} for refund_id in refund_ids],
        },
    }


def dispute(
    status: str = "needs_response", amount: int = 10000, dispute_id: str = "dp_1Test"
) -> dict[str, Any]:
    return {
        "id": dispute_id,
        "object": "dispute",
        "amount": amount,
        "charge": "ch_3Test0001",
        "payment_intent": INTENT,
        "currency": "eur",
        "reason": "fraudulent",
        "status": status,
        "created": int(time.time()) - 60,
    }


async def pay_by_stripe(
    client: httpx.AsyncClient,
    session: AsyncSession,
    ctx: dict[str, Any],
    invoice: dict[str, Any],
    *,
    created: int | None = None,
) -> ProviderEvent:
    body = stripe_body(
        "payment_intent.succeeded",
        payment_intent(invoice["id"], 10000, intent_id=INTENT),
        created=created,
    )
    return await receive_and_process(client, session, ctx, body)


async def the_payment(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> dict[str, Any]:
    [payment] = (await client.get("/v1/payments", headers=auth)).json()["data"]
    data: dict[str, Any] = payment
    return data


class TestStripeRefund:
    async def test_partial_refund_reopens_invoice(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        open_invoice: dict[str, Any],
    ) -> None:
        await pay_by_stripe(client, session, worker_ctx, open_invoice)

        row = await receive_and_process(
            client,
            session,
            worker_ctx,
            stripe_body("charge.refunded", charge(3000, "re_1")),
        )

        assert row.status == "processed", row.error
        invoice = await invoice_state(client, auth, open_invoice["id"])
        assert invoice["status"] == "open"
        assert invoice["payment_status"] == "partially_paid"
        assert invoice["amount_paid"] == 7000
        payment = await the_payment(client, auth)
        assert payment["amount_refunded"] == 3000
        refunds = (
            await client.get(f"/v1/payments/{payment['id']}/refunds", headers=auth)
        ).json()["data"]
        assert [item["provider_refund_id"] for item in refunds] == ["re_1"]
        assert refunds[0]["provider"] == "stripe"
        types = list(await session.scalars(select(Event.type).order_by(Event.id)))
        assert types[-2:] == ["invoice.updated", "payment.refunded"]

    async def test_running_total_counts_once(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        open_invoice: dict[str, Any],
    ) -> None:
        await pay_by_stripe(client, session, worker_ctx, open_invoice)
        first = stripe_body("charge.refunded", charge(3000, "re_1"))
        second = stripe_body("charge.refunded", charge(5000, "re_2", "re_1"))
        older = stripe_body("charge.refunded", charge(3000, "re_1"))

        await receive_and_process(client, session, worker_ctx, first)
        await receive_and_process(client, session, worker_ctx, second)
        late = await receive_and_process(client, session, worker_ctx, older)

        assert late.status == "ignored"
        assert late.error is not None
        assert late.error.startswith("duplicate")
        payment = await the_payment(client, auth)
        assert payment["amount_refunded"] == 5000
        amounts = list(await session.scalars(select(Refund.amount).order_by(Refund.id)))
        assert amounts == [3000, 2000]
        invoice = await invoice_state(client, auth, open_invoice["id"])
        assert invoice["amount_paid"] == 5000

    async def test_refund_before_payment_held(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        redis_client: aioredis.Redis,
        open_invoice: dict[str, Any],
    ) -> None:
        now = int(time.time())
        early = stripe_body("charge.refunded", charge(4000, "re_1"), created=now)

        held = await receive_and_process(client, session, worker_ctx, early)
        held_payments = await session.scalar(select(func.count()).select_from(Payment))
        await pay_by_stripe(client, session, worker_ctx, open_invoice, created=now - 5)
        await session.refresh(held)
        released_status = held.status
        queued = await redis_client.exists(f"arq:job:{job_id(held.id)}")
        await tasks.process_provider_event(worker_ctx, str(held.id))
        await session.refresh(held)

        assert held_payments == 0
        assert released_status == "received"
        assert queued == 1
        assert held.status == "processed", held.error
        payment = await the_payment(client, auth)
        assert payment["amount_refunded"] == 4000
        invoice = await invoice_state(client, auth, open_invoice["id"])
        assert invoice["amount_paid"] == 6000
        assert invoice["status"] == "open"

    async def test_failure_after_success_ignored(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        open_invoice: dict[str, Any],
    ) -> None:
        now = int(time.time())
        await pay_by_stripe(client, session, worker_ctx, open_invoice, created=now - 10)
        failed = stripe_body(
            "payment_intent.payment_failed",
            payment_intent(open_invoice["id"], 10000, intent_id=INTENT, status="x"),
            created=now,
        )

        row = await receive_and_process(client, session, worker_ctx, failed)

        assert row.status == "ignored"
        assert (await the_payment(client, auth))["status"] == "succeeded"
        invoice = await invoice_state(client, auth, open_invoice["id"])
        assert invoice["status"] == "paid"


class TestStripeDispute:
    async def test_opened_takes_money_back(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        open_invoice: dict[str, Any],
    ) -> None:
        await pay_by_stripe(client, session, worker_ctx, open_invoice)

        row = await receive_and_process(
            client,
            session,
            worker_ctx,
            stripe_body("charge.dispute.created", dispute()),
        )

        assert row.status == "processed", row.error
        invoice = await invoice_state(client, auth, open_invoice["id"])
        assert invoice["status"] == "open"
        assert invoice["payment_status"] == "unpaid"
        payment = await the_payment(client, auth)
        assert payment["amount_disputed"] == 10000
        assert payment["amount_unallocated"] == 0
        [listed] = (await client.get("/v1/disputes", headers=auth)).json()["data"]
        assert listed["id"].startswith("dp_")
        assert listed["status"] == "open"
        assert listed["provider_dispute_id"] == "dp_1Test"
        assert listed["reason"] == "fraudulent"
        assert listed["reversals"] == [
            {"invoice_id": open_invoice["id"], "amount": 10000, "restored": False}
        ]
        one = (await client.get(f"/v1/disputes/{listed['id']}", headers=auth)).json()
        assert one == listed
        types = list(await session.scalars(select(Event.type).order_by(Event.id)))
        assert types[-3:] == ["invoice.updated", "dispute.created", "payment.disputed"]

    async def test_refund_after_full_dispute_flagged(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        open_invoice: dict[str, Any],
    ) -> None:
        await pay_by_stripe(client, session, worker_ctx, open_invoice)
        await receive_and_process(
            client, session, worker_ctx, stripe_body("charge.refunded", charge(3000))
        )
        await receive_and_process(
            client,
            session,
            worker_ctx,
            stripe_body("charge.dispute.created", dispute(amount=7000)),
        )

        row = await receive_and_process(
            client,
            session,
            worker_ctx,
            stripe_body("charge.refunded", charge(5000, "re_2")),
        )

        assert row.status == "needs_review"
        assert row.error is not None
        assert "nothing left to refund" in row.error
        assert "duplicate" not in row.error
        payment = await the_payment(client, auth)
        assert payment["amount_refunded"] == 3000
        assert payment["amount_disputed"] == 7000

    async def test_won_restores_invoice(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        open_invoice: dict[str, Any],
    ) -> None:
        await pay_by_stripe(client, session, worker_ctx, open_invoice)
        await receive_and_process(
            client,
            session,
            worker_ctx,
            stripe_body("charge.dispute.created", dispute()),
        )

        row = await receive_and_process(
            client,
            session,
            worker_ctx,
            stripe_body("charge.dispute.closed", dispute("won")),
        )

        assert row.status == "processed", row.error
        invoice = await invoice_state(client, auth, open_invoice["id"])
        assert invoice["status"] == "paid"
        assert invoice["amount_paid"] == 10000
        payment = await the_payment(client, auth)
        assert payment["amount_disputed"] == 0
        assert payment["amount_allocated"] == 10000
        [closed] = (await client.get("/v1/disputes", headers=auth)).json()["data"]
        assert closed["status"] == "won"
        assert closed["closed_at"] is not None
        assert closed["reversals"][0]["restored"] is True
        types = list(await session.scalars(select(Event.type).order_by(Event.id)))
        assert types[-3:] == ["invoice.paid", "dispute.closed", "payment.updated"]

    async def test_lost_keeps_reversal(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        open_invoice: dict[str, Any],
    ) -> None:
        await pay_by_stripe(client, session, worker_ctx, open_invoice)
        await receive_and_process(
            client,
            session,
            worker_ctx,
            stripe_body("charge.dispute.created", dispute(amount=4000)),
        )

        await receive_and_process(
            client,
            session,
            worker_ctx,
            stripe_body("charge.dispute.closed", dispute("lost", amount=4000)),
        )

        invoice = await invoice_state(client, auth, open_invoice["id"])
        assert invoice["status"] == "open"
        assert invoice["amount_paid"] == 6000
        payment = await the_payment(client, auth)
        assert payment["amount_disputed"] == 4000
        [closed] = (
            await client.get("/v1/disputes", params={"status": "lost"}, headers=auth)
        ).json()["data"]
        assert closed["reversals"][0]["restored"] is False

    async def test_closed_before_opened(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        open_invoice: dict[str, Any],
    ) -> None:
        await pay_by_stripe(client, session, worker_ctx, open_invoice)

        closed = await receive_and_process(
            client,
            session,
            worker_ctx,
            stripe_body("charge.dispute.closed", dispute("won")),
        )
        opened = await receive_and_process(
            client,
            session,
            worker_ctx,
            stripe_body("charge.dispute.created", dispute()),
        )

        assert closed.status == "processed", closed.error
        assert opened.status == "ignored"
        [stored] = (await client.get("/v1/disputes", headers=auth)).json()["data"]
        assert stored["status"] == "won"
        invoice = await invoice_state(client, auth, open_invoice["id"])
        assert invoice["status"] == "paid"
        assert (await the_payment(client, auth))["amount_disputed"] == 0

    async def test_dispute_before_payment_held(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        open_invoice: dict[str, Any],
    ) -> None:
        held = await receive_and_process(
            client,
            session,
            worker_ctx,
            stripe_body("charge.dispute.created", dispute()),
        )

        await pay_by_stripe(client, session, worker_ctx, open_invoice)
        await tasks.process_provider_event(worker_ctx, str(held.id))
        await session.refresh(held)

        assert held.status == "processed", held.error
        assert (await the_payment(client, auth))["amount_disputed"] == 10000

    async def test_other_workspace_metadata(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        open_invoice: dict[str, Any],
    ) -> None:
        obj = payment_intent(open_invoice["id"], 10000)
        obj["metadata"]["workspace_id"] = "ws_01jd0000000000000000000000"

        row = await receive_and_process(
            client, session, worker_ctx, stripe_body("payment_intent.succeeded", obj)
        )

        assert row.status == "failed"
        assert row.error is not None
        assert "is not the workspace of invoice" in row.error
        assert await session.scalar(select(func.count()).select_from(Payment)) == 0


class TestConcurrentStripeEvents:
    async def test_two_event_types_one_payment(
        self,
        committed: Committed,
        settings: Settings,
        queue: JobQueue,
    ) -> None:
        client, auth = committed.client, committed.auth
        invoice = await create_open_invoice(client, auth, committed.customer)
        workspace = encode("workspace", committed.workspace_id)
        intent = payment_intent(invoice["id"], 10000, intent_id="pi_3Race")
        intent["metadata"]["workspace_id"] = workspace
        checkout = {
            "id": "cs_test_race",
            "object": "checkout.session",
            "payment_intent": "pi_3Race",
            "payment_status": "paid",
            "amount_total": 10000,
            "currency": "eur",
            "metadata": {"invoice_id": invoice["id"], "workspace_id": workspace},
        }
        bodies = [
            stripe_body(event_type, obj)
            for _ in range(3)
            for event_type, obj in (
                ("payment_intent.succeeded", intent),
                ("checkout.session.completed", checkout),
            )
        ]
        ctx = {"db": committed.database, "queue": queue, "settings": settings}

        responses = await asyncio.gather(
            *(
                client.post(
                    "/v1/provider-webhooks/stripe",
                    content=body,
                    headers={
                        "Stripe-Signature": sign(body),
                        "Content-Type": "application/json",
                    },
                )
                for body in bodies
            )
        )
        async with committed.database.session() as session:
            rows = list(
                await session.scalars(
                    select(ProviderEvent.id).where(
                        ProviderEvent.event_id.in_(
                            [json.loads(body)["id"] for body in bodies]
                        )
                    )
                )
            )
        outcomes = await asyncio.gather(
            *(tasks.process_provider_event(ctx, str(row)) for row in rows)
        )

        assert [response.status_code for response in responses] == [200] * 6
        assert len(rows) == 6
        assert sorted(str(outcome) for outcome in outcomes).count("processed") == 1
        async with committed.database.session() as session:
            payments = await session.scalar(
                select(func.count())
                .select_from(Payment)
                .where(Payment.workspace_id == committed.workspace_id)
            )
        assert payments == 1
        stored = (
            await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
        ).json()
        assert stored["amount_paid"] == 10000
        assert stored["status"] == "paid"
