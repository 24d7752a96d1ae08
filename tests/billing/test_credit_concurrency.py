"""Credit notes and customer credit raced on committed, separate connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete

from app.models import (
    CreditNote,
    CreditNoteLine,
    CreditNoteNumberSeries,
    CustomerCreditTransaction,
)
from tests.billing.conftest import Committed
from tests.billing.factories import create_open_invoice
from tests.billing.test_concurrency import CONCURRENCY


@pytest.fixture
async def credit_committed(committed: Committed) -> AsyncIterator[Committed]:
    """The committed app, with its credit rows deleted before the workspace's."""
    yield committed
    async with committed.database.session() as session:
        for model in (
            CustomerCreditTransaction,
            CreditNoteLine,
            CreditNote,
            CreditNoteNumberSeries,
        ):
            await session.execute(
                delete(model).where(model.workspace_id == committed.workspace_id)
            )
        await session.commit()


class TestConcurrentCreditNotes:
    async def test_never_exceed_invoice_total(
        self, credit_committed: Committed
    ) -> None:
        client, auth = credit_committed.client, credit_committed.auth
        invoice = await create_open_invoice(client, auth, credit_committed.customer)

        responses = await asyncio.gather(
            *(
                client.post(
                    f"/v1/invoices/{invoice['id']}/credit-notes",
                    json={"reason": "other", "amount": 3000},
                    headers=auth,
                )
                for _ in range(CONCURRENCY)
            )
        )

        statuses = sorted(response.status_code for response in responses)
        assert statuses == [201] * 3 + [409] * (CONCURRENCY - 3)
        refused = [
            response.json() for response in responses if response.status_code == 409
        ]
        assert {problem["creditable"] for problem in refused} == {1000}
        stored = (
            await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
        ).json()
        assert stored["credited_amount"] == 9000
        assert stored["amount_due"] == 1000

    async def test_numbers_gapless(self, credit_committed: Committed) -> None:
        client, auth = credit_committed.client, credit_committed.auth
        invoices = [
            await create_open_invoice(client, auth, credit_committed.customer)
            for _ in range(CONCURRENCY)
        ]

        responses = await asyncio.gather(
            *(
                client.post(
                    f"/v1/invoices/{invoice['id']}/credit-notes",
                    json={"reason": "other", "amount": 100},
                    headers=auth,
                )
                for invoice in invoices
            )
        )

        assert [response.status_code for response in responses] == [201] * CONCURRENCY
        numbers = sorted(response.json()["number"] for response in responses)
        year = datetime.now(UTC).year
        assert numbers == [
            f"CN-{year}-{sequence:06d}" for sequence in range(1, CONCURRENCY + 1)
        ]


class TestConcurrentApplyCredit:
    async def test_never_overdraw(self, credit_committed: Committed) -> None:
        client, auth = credit_committed.client, credit_committed.auth
        customer_id = (
            await create_open_invoice(client, auth, credit_committed.customer)
        )["customer_id"]
        adjusted = await client.post(
            f"/v1/customers/{customer_id}/credit-transactions",
            json={"amount": 5000, "description": "Goodwill"},
            headers=auth,
        )
        assert adjusted.status_code == 201, adjusted.text
        invoices = [
            await create_open_invoice(client, auth, credit_committed.customer)
            for _ in range(CONCURRENCY)
        ]

        responses = await asyncio.gather(
            *(
                client.post(
                    f"/v1/invoices/{invoice['id']}/apply-credit",
                    json={"amount": 2000},
                    headers=auth,
                )
                for invoice in invoices
            )
        )

        statuses = sorted(response.status_code for response in responses)
        assert statuses == [200] * 2 + [409] * (CONCURRENCY - 2)
        customer = (
            await client.get(f"/v1/customers/{customer_id}", headers=auth)
        ).json()
        assert customer["credit_balance"] == 1000


class TestRefundRacesCreditNote:
    async def test_money_returned_once(self, credit_committed: Committed) -> None:
        client, auth = credit_committed.client, credit_committed.auth
        invoice = await create_open_invoice(client, auth, credit_committed.customer)
        paid = await client.post(
            "/v1/payments",
            json={
                "customer_id": invoice["customer_id"],
                "amount": 10000,
                "currency": "EUR",
                "method": "bank_transfer",
                "allocations": [{"invoice_id": invoice["id"], "amount": 10000}],
            },
            headers=auth,
        )
        assert paid.status_code == 201, paid.text
        payment = paid.json()

        refund, note = await asyncio.gather(
            client.post(f"/v1/payments/{payment['id']}/refunds", json={}, headers=auth),
            client.post(
                f"/v1/invoices/{invoice['id']}/credit-notes",
                json={"reason": "other", "amount": 3000, "amount_to_credit": 3000},
                headers=auth,
            ),
        )

        statuses = sorted([refund.status_code, note.status_code])
        assert statuses == [201, 409]
        stored = (
            await client.get(f"/v1/payments/{payment['id']}", headers=auth)
        ).json()
        customer = (
            await client.get(f"/v1/customers/{invoice['customer_id']}", headers=auth)
        ).json()
        # Refunded money plus credit never exceeds the 10000 the customer paid.
        assert stored["amount_refunded"] + customer["credit_balance"] <= 10000
