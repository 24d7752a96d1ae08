from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.providers.amounts import from_stripe_amount
from app.billing.providers.inbox import DRAIN_JOB, MAX_ATTEMPTS
from app.core.clock import utcnow
from app.core.db import Database
from app.core.ids import encode, new_uuid
from app.core.jobs import JobQueue
from app.main import create_app
from app.models import Event, Payment, ProviderEvent, Workspace
from app.settings import Settings
from tests.billing.factories import (
    STRIPE_SECRET,
    create_customer,
    create_open_invoice,
    payment_intent,
    sign,
    signature_header,
    stripe_body,
)
from workers import tasks

URL = "/v1/provider-webhooks/stripe"


async def deliver(
    client: httpx.AsyncClient, body: bytes, **headers: str
) -> httpx.Response:
    return await client.post(
        URL,
        content=body,
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": sign(body),
            **headers,
        },
    )


async def stored_events(session: AsyncSession) -> list[ProviderEvent]:
    session.expire_all()
    return list(await session.scalars(select(ProviderEvent).order_by(ProviderEvent.id)))


async def receive_and_process(
    client: httpx.AsyncClient,
    session: AsyncSession,
    worker_ctx: dict[str, Any],
    body: bytes,
) -> ProviderEvent:
    response = await deliver(client, body)
    assert response.status_code == 200, response.text
    event_id = json.loads(body)["id"]
    row = await session.scalar(
        select(ProviderEvent).where(ProviderEvent.event_id == event_id)
    )
    assert row is not None
    await tasks.process_provider_event(worker_ctx, str(row.id))
    await session.refresh(row)
    return row


async def invoice_state(
    client: httpx.AsyncClient, auth: dict[str, str], invoice_id: str
) -> dict[str, Any]:
    response = await client.get(f"/v1/invoices/{invoice_id}", headers=auth)
    data: dict[str, Any] = response.json()
    return data


class TestReceiveStripeEvent:
    async def test_stored_and_drain_enqueued(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        redis_client: aioredis.Redis,
    ) -> None:
        body = stripe_body("payment_intent.succeeded", payment_intent(None, 100))

        response = await deliver(client, body)

        assert response.status_code == 200, response.text
        assert response.json() == {"received": True, "duplicate": False}
        [row] = await stored_events(session)
        assert row.provider == "stripe"
        assert row.event_id == json.loads(body)["id"]
        assert row.type == "payment_intent.succeeded"
        assert row.status == "received"
        assert row.payload == json.loads(body)
        assert row.provider_created_at is not None
        assert len(await redis_client.keys(f"arq:job:{DRAIN_JOB}:*")) == 1

    async def test_duplicate_stored_once(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        body = stripe_body("payment_intent.succeeded", payment_intent(None, 100))

        first = await deliver(client, body)
        second = await deliver(client, body)

        assert first.json()["duplicate"] is False
        assert second.status_code == 200
        assert second.json() == {"received": True, "duplicate": True}
        assert len(await stored_events(session)) == 1

    async def test_idempotency_key_header_ignored(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        body = stripe_body("payment_intent.succeeded", payment_intent(None, 100))

        response = await deliver(client, body, **{"Idempotency-Key": "stripe-retry"})

        assert response.status_code == 200, response.text
        assert len(await stored_events(session)) == 1

    async def test_handmade_header_accepted(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        body = stripe_body("charge.succeeded", {"id": "ch_1"})
        header = signature_header(
            body, secret=STRIPE_SECRET, timestamp=int(time.time())
        )

        response = await deliver(client, body, **{"Stripe-Signature": header})

        assert response.status_code == 200, response.text

    async def test_wrong_signature(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        body = stripe_body("payment_intent.succeeded", payment_intent(None, 100))
        header = sign(body, secret="whsec_someone_else")

        response = await deliver(client, body, **{"Stripe-Signature": header})

        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "invalid_signature"
        assert await stored_events(session) == []

    async def test_tampered_body(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        body = stripe_body("payment_intent.succeeded", payment_intent(None, 100))
        header = sign(body)
        tampered = body.replace(b'"amount": 100', b'"amount": 900')

        response = await deliver(client, tampered, **{"Stripe-Signature": header})

        assert response.status_code == 400
        assert response.json()["code"] == "invalid_signature"
        assert await stored_events(session) == []

    async def test_missing_signature(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        body = stripe_body("payment_intent.succeeded", payment_intent(None, 100))

        response = await client.post(URL, content=body)

        assert response.status_code == 400
        assert response.json()["code"] == "invalid_signature"
        assert await stored_events(session) == []

    async def test_malformed_header(self, client: httpx.AsyncClient) -> None:
        body = stripe_body("payment_intent.succeeded", payment_intent(None, 100))

        response = await deliver(client, body, **{"Stripe-Signature": "t=abc,v1"})

        assert response.status_code == 400
        assert response.json()["code"] == "invalid_signature"

    async def test_non_ascii_header(self, client: httpx.AsyncClient) -> None:
        body = stripe_body("payment_intent.succeeded", payment_intent(None, 100))

        response = await client.post(
            URL,
            content=body,
            headers=[(b"Stripe-Signature", "t=1,v1=\u00e9".encode("latin-1"))],
        )

        assert response.status_code == 400
        assert response.json()["code"] == "invalid_signature"

    async def test_stale_timestamp(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        body = stripe_body("payment_intent.succeeded", payment_intent(None, 100))
        header = sign(body, timestamp=int(time.time()) - 301)

        response = await deliver(client, body, **{"Stripe-Signature": header})

        assert response.status_code == 400
        problem = response.json()
        assert problem["code"] == "signature_expired"
        assert problem["tolerance_seconds"] == 300
        assert await stored_events(session) == []

    async def test_within_tolerance(self, client: httpx.AsyncClient) -> None:
        body = stripe_body("payment_intent.succeeded", payment_intent(None, 100))
        header = sign(body, timestamp=int(time.time()) - 240)

        response = await deliver(client, body, **{"Stripe-Signature": header})

        assert response.status_code == 200

    async def test_signed_body_not_an_event(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        base = json.loads(stripe_body("charge.succeeded", {"id": "ch_1"}))
        cases = [
            b"[1, 2]",
            b"not json",
            json.dumps({"type": "x"}).encode(),
            json.dumps({**base, "created": 10**20}).encode(),
            json.dumps({**base, "created": "yesterday"}).encode(),
            json.dumps({**base, "data": {"object": {"id": "\u0000"}}}).encode(),
            json.dumps({**base, "id": "x" * 256}).encode(),
            json.dumps({**base, "data": {"object": {"x": float("nan")}}}).encode(),
            json.dumps({**base, "data": {"object": {"x": "\ud800"}}}).encode(),
            json.dumps(base)
            .encode()
            .replace(
                b'"livemode"', b'"deep": ' + b"[" * 3000 + b"]" * 3000 + b', "livemode"'
            ),
            json.dumps(base)
            .encode()
            .replace(b'"livemode"', b'"big": 1e400, "livemode"'),
        ]

        for body in cases:
            response = await deliver(client, body)

            assert response.status_code == 400, body
            assert response.json()["code"] == "invalid_payload", body
        assert await stored_events(session) == []

    async def test_future_timestamp_rejected(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        body = stripe_body("charge.succeeded", {"id": "ch_1"})
        header = sign(body, timestamp=int(time.time()) + 3600)

        response = await deliver(client, body, **{"Stripe-Signature": header})

        assert response.status_code == 400
        assert response.json()["code"] == "invalid_signature"
        assert await stored_events(session) == []

    async def test_escaped_backslash_accepted(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        body = stripe_body("charge.succeeded", {"id": "ch_1", "note": "\\u0000"})

        response = await deliver(client, body)

        assert response.status_code == 200, response.text

    async def test_body_not_utf8(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            URL, content=b"\xff\xfe", headers={"Stripe-Signature": "t=1,v1=00"}
        )

        assert response.status_code == 400
        assert response.json()["code"] == "invalid_signature"

    async def test_not_configured(
        self, settings: Settings, database: Database, queue: JobQueue
    ) -> None:
        unconfigured = settings.model_copy(update={"stripe_webhook_secret": None})
        app = create_app(unconfigured, database=database, queue=queue)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        body = stripe_body("payment_intent.succeeded", payment_intent(None, 100))

        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await deliver(http, body)

        assert response.status_code == 503
        assert response.json()["code"] == "provider_not_configured"
        assert response.headers["retry-after"] == "300"

    async def test_documented_without_security(self, client: httpx.AsyncClient) -> None:
        schema = (await client.get("/openapi.json")).json()

        operation = schema["paths"][URL]["post"]
        assert operation["operationId"] == "provider_webhooks_stripe"
        assert operation["security"] == []


class TestProcessStripeEvent:
    async def test_payment_intent_pays_invoice(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        workspace: Workspace,
        open_invoice: dict[str, Any],
    ) -> None:
        body = stripe_body(
            "payment_intent.succeeded", payment_intent(open_invoice["id"], 10000)
        )

        row = await receive_and_process(client, session, worker_ctx, body)

        assert row.status == "processed"
        assert row.error is None
        assert row.workspace_id == workspace.id
        assert row.processed_at is not None
        invoice = await invoice_state(client, auth, open_invoice["id"])
        assert invoice["status"] == "paid"
        assert invoice["payment_status"] == "paid"
        assert invoice["amount_paid"] == 10000
        [payment] = (await client.get("/v1/payments", headers=auth)).json()["data"]
        assert payment["provider"] == "stripe"
        assert payment["provider_payment_id"] == "pi_3Test0001"
        assert payment["method"] == "card"
        assert payment["allocations"] == [
            {"invoice_id": open_invoice["id"], "amount": 10000}
        ]
        events = list(await session.scalars(select(Event.type).order_by(Event.id)))
        assert events[-2:] == ["invoice.paid", "payment.succeeded"]

    async def test_replay_changes_nothing(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        open_invoice: dict[str, Any],
    ) -> None:
        body = stripe_body(
            "payment_intent.succeeded", payment_intent(open_invoice["id"], 10000)
        )
        row = await receive_and_process(client, session, worker_ctx, body)
        events_before = await session.scalar(select(func.count()).select_from(Event))

        replay = await deliver(client, body)
        again = await tasks.process_provider_event(worker_ctx, str(row.id))
        swept = await tasks.sweep_provider_events(worker_ctx)

        assert replay.json()["duplicate"] is True
        assert again is None
        assert swept == 0
        assert await session.scalar(select(func.count()).select_from(Payment)) == 1
        assert (
            await session.scalar(select(func.count()).select_from(Event))
            == events_before
        )
        invoice = await invoice_state(client, auth, open_invoice["id"])
        assert invoice["amount_paid"] == 10000

    async def test_second_event_type_counts_once(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        open_invoice: dict[str, Any],
    ) -> None:
        intent = stripe_body(
            "payment_intent.succeeded", payment_intent(open_invoice["id"], 10000)
        )
        charge = stripe_body(
            "charge.succeeded",
            {
                "id": "ch_3Test0001",
                "object": "charge",
                "payment_intent": "pi_3Test0001",
                "amount": 10000,
                "amount_captured": 10000,
                "captured": True,
                "currency": "eur",
                "metadata": {"invoice_id": open_invoice["id"]},
                "payment_method_details": {"type": "card"},
            },
        )

        await receive_and_process(client, session, worker_ctx, intent)
        row = await receive_and_process(client, session, worker_ctx, charge)

        assert row.status == "ignored"
        assert row.error is not None
        assert row.error.startswith("duplicate")
        assert await session.scalar(select(func.count()).select_from(Payment)) == 1
        invoice = await invoice_state(client, auth, open_invoice["id"])
        assert invoice["amount_paid"] == 10000
        assert invoice["payment_status"] == "paid"

    async def test_late_older_event_does_not_regress(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        open_invoice: dict[str, Any],
    ) -> None:
        now = int(time.time())
        succeeded = stripe_body(
            "payment_intent.succeeded",
            payment_intent(open_invoice["id"], 10000),
            created=now,
        )
        older_failure = stripe_body(
            "payment_intent.payment_failed",
            payment_intent(open_invoice["id"], 10000, status="requires_payment_method"),
            created=now - 60,
        )
        older_processing = stripe_body(
            "payment_intent.processing",
            payment_intent(open_invoice["id"], 10000, status="processing"),
            created=now - 90,
        )

        await receive_and_process(client, session, worker_ctx, succeeded)
        failure = await receive_and_process(client, session, worker_ctx, older_failure)
        processing = await receive_and_process(
            client, session, worker_ctx, older_processing
        )

        assert failure.status == "ignored"
        assert failure.error is not None
        assert failure.error.startswith("stale")
        assert processing.status == "ignored"
        [payment] = (await client.get("/v1/payments", headers=auth)).json()["data"]
        assert payment["status"] == "succeeded"
        assert payment["amount_allocated"] == 10000
        invoice = await invoice_state(client, auth, open_invoice["id"])
        assert invoice["status"] == "paid"
        assert invoice["amount_paid"] == 10000

    async def test_processing_then_succeeded(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        open_invoice: dict[str, Any],
    ) -> None:
        now = int(time.time())
        processing = stripe_body(
            "payment_intent.processing",
            payment_intent(open_invoice["id"], 10000, status="processing"),
            created=now - 30,
        )
        succeeded = stripe_body(
            "payment_intent.succeeded",
            payment_intent(open_invoice["id"], 10000),
            created=now,
        )

        pending_row = await receive_and_process(client, session, worker_ctx, processing)
        [pending] = (await client.get("/v1/payments", headers=auth)).json()["data"]
        unpaid = await invoice_state(client, auth, open_invoice["id"])
        done_row = await receive_and_process(client, session, worker_ctx, succeeded)
        [done] = (await client.get("/v1/payments", headers=auth)).json()["data"]

        assert pending_row.status == "processed"
        assert pending["status"] == "pending"
        assert pending["allocations"] == []
        assert pending["amount_unallocated"] == 0
        assert unpaid["amount_paid"] == 0
        assert done_row.status == "processed"
        assert done["id"] == pending["id"]
        assert done["status"] == "succeeded"
        assert done["amount_allocated"] == 10000
        paid = await invoice_state(client, auth, open_invoice["id"])
        assert paid["status"] == "paid"
        events = list(await session.scalars(select(Event.type).order_by(Event.id)))
        assert "payment.pending" in events

    async def test_succeeded_for_other_customer(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        workspace: Workspace,
        open_invoice: dict[str, Any],
    ) -> None:
        other_customer = await create_customer(session, workspace.id, name="Initech")
        other_invoice = await create_open_invoice(client, auth, other_customer)
        now = int(time.time())
        processing = stripe_body(
            "payment_intent.processing",
            payment_intent(open_invoice["id"], 10000, status="processing"),
            created=now - 30,
        )
        succeeded = stripe_body(
            "payment_intent.succeeded",
            payment_intent(other_invoice["id"], 10000),
            created=now,
        )

        await receive_and_process(client, session, worker_ctx, processing)
        row = await receive_and_process(client, session, worker_ctx, succeeded)

        assert row.status == "needs_review"
        assert row.error is not None
        assert "customer mismatch" in row.error
        [payment] = (await client.get("/v1/payments", headers=auth)).json()["data"]
        assert payment["status"] == "succeeded"
        assert payment["customer_id"] == open_invoice["customer_id"]
        assert payment["allocations"] == []
        assert payment["amount_unallocated"] == 10000
        other = await invoice_state(client, auth, other_invoice["id"])
        assert other["amount_paid"] == 0
        assert other["status"] == "open"

    async def test_newer_failure_after_processing(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        open_invoice: dict[str, Any],
    ) -> None:
        now = int(time.time())
        processing = stripe_body(
            "payment_intent.processing",
            payment_intent(open_invoice["id"], 10000, status="processing"),
            created=now - 30,
        )
        failed = stripe_body(
            "payment_intent.payment_failed",
            payment_intent(open_invoice["id"], 10000, status="requires_payment_method"),
            created=now,
        )

        await receive_and_process(client, session, worker_ctx, processing)
        row = await receive_and_process(client, session, worker_ctx, failed)

        assert row.status == "processed"
        [payment] = (await client.get("/v1/payments", headers=auth)).json()["data"]
        assert payment["status"] == "failed"
        invoice = await invoice_state(client, auth, open_invoice["id"])
        assert invoice["amount_paid"] == 0

    async def test_checkout_session_completed(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        open_invoice: dict[str, Any],
    ) -> None:
        completed = {
            "id": "cs_test_1",
            "object": "checkout.session",
            "payment_intent": "pi_3Checkout",
            "payment_status": "paid",
            "amount_total": 10000,
            "currency": "eur",
            "metadata": {"invoice_id": open_invoice["id"]},
        }

        unpaid = await receive_and_process(
            client,
            session,
            worker_ctx,
            stripe_body(
                "checkout.session.completed", {**completed, "payment_status": "unpaid"}
            ),
        )
        paid = await receive_and_process(
            client,
            session,
            worker_ctx,
            stripe_body("checkout.session.completed", completed),
        )

        assert unpaid.status == "ignored"
        assert paid.status == "processed"
        invoice = await invoice_state(client, auth, open_invoice["id"])
        assert invoice["status"] == "paid"

    async def test_unknown_invoice_fails_once(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        worker_ctx: dict[str, Any],
    ) -> None:
        missing = encode("invoice", new_uuid())
        body = stripe_body("payment_intent.succeeded", payment_intent(missing, 100))

        row = await receive_and_process(client, session, worker_ctx, body)
        again = await tasks.process_provider_event(worker_ctx, str(row.id))

        assert row.status == "failed"
        assert row.error == f"no invoice {missing} exists"
        assert row.attempts == 1
        assert again is None
        assert await session.scalar(select(func.count()).select_from(Payment)) == 0

    async def test_bad_invoice_reference(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        worker_ctx: dict[str, Any],
    ) -> None:
        cases = [
            (payment_intent(None, 100), "metadata.invoice_id is missing"),
            (payment_intent("cus_123", 100), "is not an invoice id"),
        ]

        for obj, message in cases:
            body = stripe_body("payment_intent.succeeded", obj)

            row = await receive_and_process(client, session, worker_ctx, body)

            assert row.status == "failed"
            assert row.error is not None
            assert message in row.error

    async def test_unstorable_payment_left_unrecorded(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        open_invoice: dict[str, Any],
    ) -> None:
        invoice_id = open_invoice["id"]
        cases = [
            (
                {**payment_intent(invoice_id, 10000), "amount_received": 9 * 10**18},
                "failed",
                "more than the largest amount billing stores",
            ),
            (
                payment_intent(invoice_id, 10000, intent_id="pi_" + "x" * 300),
                "failed",
                "longer than 200 characters",
            ),
            (
                {**payment_intent(invoice_id, 10000), "amount_received": 0},
                "ignored",
                "received no money",
            ),
        ]

        for obj, status, message in cases:
            body = stripe_body("payment_intent.succeeded", obj)

            row = await receive_and_process(client, session, worker_ctx, body)

            assert row.status == status
            assert row.error is not None
            assert message in row.error
        assert await session.scalar(select(func.count()).select_from(Payment)) == 0
        invoice = await invoice_state(client, auth, invoice_id)
        assert invoice["amount_paid"] == 0

    async def test_unknown_type_ignored(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        worker_ctx: dict[str, Any],
    ) -> None:
        body = stripe_body("customer.created", {"id": "cus_X", "object": "customer"})

        row = await receive_and_process(client, session, worker_ctx, body)

        assert row.status == "ignored"
        assert row.error == "event type customer.created is not handled"
        assert row.type == "customer.created"

    async def test_amount_mismatch_recorded(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        open_invoice: dict[str, Any],
    ) -> None:
        body = stripe_body(
            "payment_intent.succeeded", payment_intent(open_invoice["id"], 9000)
        )

        row = await receive_and_process(client, session, worker_ctx, body)

        assert row.status == "needs_review"
        assert row.error is not None
        assert "amount mismatch" in row.error
        assert "expected 10000" in row.error
        invoice = await invoice_state(client, auth, open_invoice["id"])
        assert invoice["status"] == "open"
        assert invoice["payment_status"] == "partially_paid"
        assert invoice["amount_paid"] == 9000

    async def test_currency_mismatch_not_allocated(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        open_invoice: dict[str, Any],
    ) -> None:
        body = stripe_body(
            "payment_intent.succeeded",
            payment_intent(open_invoice["id"], 10000, currency="usd"),
        )

        row = await receive_and_process(client, session, worker_ctx, body)

        assert row.status == "needs_review"
        assert row.error is not None
        assert "currency mismatch" in row.error
        [payment] = (await client.get("/v1/payments", headers=auth)).json()["data"]
        assert payment["currency"] == "USD"
        assert payment["allocations"] == []
        invoice = await invoice_state(client, auth, open_invoice["id"])
        assert invoice["amount_paid"] == 0

    async def test_sweep_processes_lost_job(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        worker_ctx: dict[str, Any],
        open_invoice: dict[str, Any],
    ) -> None:
        body = stripe_body(
            "payment_intent.succeeded", payment_intent(open_invoice["id"], 10000)
        )
        await deliver(client, body)
        fresh = await tasks.sweep_provider_events(worker_ctx)
        await session.execute(
            update(ProviderEvent).values(received_at=utcnow() - timedelta(minutes=1))
        )
        await session.commit()

        swept = await tasks.sweep_provider_events(worker_ctx)

        assert fresh == 0
        assert swept == 1
        [row] = await stored_events(session)
        assert row.status == "processed"
        invoice = await invoice_state(client, auth, open_invoice["id"])
        assert invoice["status"] == "paid"

    async def test_leased_event_skipped(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        worker_ctx: dict[str, Any],
    ) -> None:
        body = stripe_body("customer.created", {"id": "cus_X"})
        await deliver(client, body)
        [row] = await stored_events(session)
        await session.execute(
            update(ProviderEvent).values(claimed_until=utcnow() + timedelta(minutes=1))
        )
        await session.commit()

        result = await tasks.process_provider_event(worker_ctx, str(row.id))

        assert result is None
        [row] = await stored_events(session)
        assert row.status == "received"

    async def test_unexpected_error_retried_then_failed(
        self,
        session: AsyncSession,
        worker_ctx: dict[str, Any],
    ) -> None:
        row = ProviderEvent(
            id=new_uuid(),
            provider="stripe",
            event_id="evt_broken",
            type="payment_intent.succeeded",
            payload={"data": "not an object"},
            status="received",
            attempts=0,
            received_at=utcnow() - timedelta(minutes=1),
        )
        session.add(row)
        await session.commit()

        first = await tasks.process_provider_event(worker_ctx, str(row.id))
        await session.execute(
            update(ProviderEvent).values(claimed_until=None, attempts=MAX_ATTEMPTS - 1)
        )
        await session.commit()
        last = await tasks.sweep_provider_events(worker_ctx)

        assert first == "received"
        assert last == 1
        [stored] = await stored_events(session)
        assert stored.status == "failed"
        assert stored.attempts == MAX_ATTEMPTS
        assert stored.error is not None
        assert "TypeError" in stored.error


class TestStripeAmounts:
    def test_same_scale(self) -> None:
        assert from_stripe_amount(1999, "USD") == 1999
        assert from_stripe_amount(500, "JPY") == 500
        assert from_stripe_amount(5120, "KWD") == 5120

    def test_isk_two_decimal_in_stripe(self) -> None:
        assert from_stripe_amount(50000, "ISK") == 500

    def test_isk_fraction_rejected(self) -> None:
        with pytest.raises(ValueError, match="multiple of 100"):
            from_stripe_amount(50050, "ISK")

    def test_mga_zero_decimal_in_stripe(self) -> None:
        assert from_stripe_amount(1500, "MGA") == 150000
