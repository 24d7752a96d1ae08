"""Races between committed transactions on separate connections."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from sqlalchemy import func, select

from app.models import InvoiceNumberSeries, Payment, ProviderEvent
from tests.billing.conftest import Committed
from tests.billing.factories import (
    create_invoice,
    create_open_invoice,
    payment_intent,
    sign,
    stripe_body,
)

# Below the test engine's 15 connections (pool 5 + overflow 10), so every request
# holds its own connection while it waits for the series lock.
CONCURRENCY = 12


class TestConcurrentFinalize:
    async def test_numbers_gapless(self, committed: Committed) -> None:
        client, auth = committed.client, committed.auth
        drafts = [
            await create_invoice(client, auth, committed.customer)
            for _ in range(CONCURRENCY)
        ]

        responses = await asyncio.gather(
            *(
                client.post(f"/v1/invoices/{draft['id']}/finalize", headers=auth)
                for draft in drafts
            )
        )

        assert [response.status_code for response in responses] == [200] * CONCURRENCY
        numbers = sorted(response.json()["number"] for response in responses)
        year = datetime.now(UTC).year
        assert numbers == [
            f"INV-{year}-{sequence:06d}" for sequence in range(1, CONCURRENCY + 1)
        ]
        async with committed.database.session() as session:
            next_number = await session.scalar(
                select(InvoiceNumberSeries.next_number).where(
                    InvoiceNumberSeries.workspace_id == committed.workspace_id
                )
            )
        assert next_number == CONCURRENCY + 1

    async def test_same_invoice_finalized_once(self, committed: Committed) -> None:
        client, auth = committed.client, committed.auth
        draft = await create_invoice(client, auth, committed.customer)

        responses = await asyncio.gather(
            *(
                client.post(f"/v1/invoices/{draft['id']}/finalize", headers=auth)
                for _ in range(4)
            )
        )

        statuses = sorted(response.status_code for response in responses)
        assert statuses == [200, 409, 409, 409]
        async with committed.database.session() as session:
            next_number = await session.scalar(
                select(InvoiceNumberSeries.next_number).where(
                    InvoiceNumberSeries.workspace_id == committed.workspace_id
                )
            )
        assert next_number == 2


class TestConcurrentPayments:
    async def test_every_payment_counted_once(self, committed: Committed) -> None:
        client, auth = committed.client, committed.auth
        invoice = await create_open_invoice(client, auth, committed.customer)
        body = {
            "customer_id": invoice["customer_id"],
            "amount": 1250,
            "currency": "EUR",
            "method": "bank_transfer",
            "invoice_id": invoice["id"],
        }

        responses = await asyncio.gather(
            *(client.post("/v1/payments", json=body, headers=auth) for _ in range(8))
        )

        assert [response.status_code for response in responses] == [201] * 8
        stored = (
            await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
        ).json()
        assert stored["amount_paid"] == 10000
        assert stored["status"] == "paid"
        assert stored["payment_status"] == "paid"

    async def test_duplicate_webhooks_stored_once(self, committed: Committed) -> None:
        client, auth = committed.client, committed.auth
        invoice = await create_open_invoice(client, auth, committed.customer)
        body = stripe_body(
            "payment_intent.succeeded", payment_intent(invoice["id"], 10000)
        )
        headers = {"Stripe-Signature": sign(body), "Content-Type": "application/json"}

        responses = await asyncio.gather(
            *(
                client.post(
                    "/v1/provider-webhooks/stripe", content=body, headers=headers
                )
                for _ in range(6)
            )
        )

        assert [response.status_code for response in responses] == [200] * 6
        duplicates = sorted(response.json()["duplicate"] for response in responses)
        assert duplicates == [False, True, True, True, True, True]
        event_id = stripe_event_id(body)
        async with committed.database.session() as session:
            stored = await session.scalar(
                select(func.count())
                .select_from(ProviderEvent)
                .where(ProviderEvent.event_id == event_id)
            )
            payments = await session.scalar(
                select(func.count())
                .select_from(Payment)
                .where(Payment.workspace_id == committed.workspace_id)
            )
            # Not processed yet, so no workspace is known; remove it here.
            row = await session.scalar(
                select(ProviderEvent).where(ProviderEvent.event_id == event_id)
            )
            assert row is not None
            await session.delete(row)
            await session.commit()
        assert stored == 1
        assert payments == 0


def stripe_event_id(body: bytes) -> str:
    event_id: str = json.loads(body)["id"]
    return event_id
