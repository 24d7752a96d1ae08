"""Requests that lock one payment and one invoice, raced on committed connections.

A refund, an allocation or its removal locks the payment and then its invoices. A
credit note that refunds through a payment locks the same two rows. Each pair below
deadlocks when the credit note locks the invoice first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import delete

from app.models import CreditNote, CreditNoteNumberSeries, Refund
from tests.billing.conftest import Committed
from tests.billing.factories import create_open_invoice
from tests.billing.test_allocations import allocate, get, pay

# Each race runs this many times on fresh rows. With the invoice locked first, a
# single run deadlocked every time, so a few runs make a pass by luck unlikely.
ROUNDS = 3


@pytest.fixture
async def lock_committed(committed: Committed) -> AsyncIterator[Committed]:
    """The committed app, with its refunds and credit notes deleted first."""
    yield committed
    async with committed.database.session() as session:
        for model in (Refund, CreditNote, CreditNoteNumberSeries):
            await session.execute(
                delete(model).where(model.workspace_id == committed.workspace_id)
            )
        await session.commit()


async def credit_note_refund(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    invoice_id: str,
    payment_id: str,
) -> httpx.Response:
    """Credit 1000 of an invoice as a refund owed through ``payment_id``."""
    return await client.post(
        f"/v1/invoices/{invoice_id}/credit-notes",
        json={
            "reason": "other",
            "amount": 1000,
            "refund_amount": 1000,
            "refund_payment_id": payment_id,
        },
        headers=auth,
    )


async def paid_in_full(committed: Committed) -> tuple[dict[str, Any], dict[str, Any]]:
    """Create an invoice of 10000 EUR and a payment of 10000 that pays it."""
    client, auth = committed.client, committed.auth
    invoice = await create_open_invoice(client, auth, committed.customer)
    response = await pay(
        client, auth, committed.customer, 10000, invoice_id=invoice["id"]
    )
    assert response.status_code == 201, response.text
    return invoice, response.json()


class TestCreditNoteRace:
    async def test_with_refund(self, lock_committed: Committed) -> None:
        client, auth = lock_committed.client, lock_committed.auth
        for _ in range(ROUNDS):
            invoice, payment = await paid_in_full(lock_committed)

            refunded, credited = await asyncio.gather(
                client.post(
                    f"/v1/payments/{payment['id']}/refunds",
                    json={"amount": 1000},
                    headers=auth,
                ),
                credit_note_refund(client, auth, invoice["id"], payment["id"]),
            )

            assert refunded.status_code == 201, refunded.text
            assert credited.status_code == 201, credited.text
            stored = await get(client, auth, f"/v1/payments/{payment['id']}")
            assert stored["amount_refunded"] == 1000
            assert stored["amount_allocated"] == 9000
            after = await get(client, auth, f"/v1/invoices/{invoice['id']}")
            assert after["amount_paid"] == 9000
            assert after["credited_amount"] == 1000

    async def test_with_allocation(self, lock_committed: Committed) -> None:
        client, auth = lock_committed.client, lock_committed.auth
        for _ in range(ROUNDS):
            invoice = await create_open_invoice(client, auth, lock_committed.customer)
            created = await pay(
                client,
                auth,
                lock_committed.customer,
                15000,
                allocations=[{"invoice_id": invoice["id"], "amount": 5000}],
            )
            assert created.status_code == 201, created.text
            payment = created.json()

            allocated, credited = await asyncio.gather(
                allocate(client, auth, payment["id"], (invoice["id"], 1000)),
                credit_note_refund(client, auth, invoice["id"], payment["id"]),
            )

            assert allocated.status_code == 200, allocated.text
            assert credited.status_code == 201, credited.text
            after = await get(client, auth, f"/v1/invoices/{invoice['id']}")
            assert after["amount_paid"] == 6000
            assert after["credited_amount"] == 1000

    async def test_with_allocation_removal(self, lock_committed: Committed) -> None:
        client, auth = lock_committed.client, lock_committed.auth
        for _ in range(ROUNDS):
            invoice, payment = await paid_in_full(lock_committed)

            removed, credited = await asyncio.gather(
                client.delete(
                    f"/v1/payments/{payment['id']}/allocations/{invoice['id']}",
                    headers=auth,
                ),
                credit_note_refund(client, auth, invoice["id"], payment["id"]),
            )

            # The two do not fit together: a credited invoice can no longer return
            # all of the allocation, and an invoice without payments has nothing to
            # refund. So whichever runs second is rejected, and neither is a 500.
            outcome = (removed.status_code, credited.status_code)
            assert outcome in {(200, 409), (409, 201)}, (removed.text, credited.text)
            if outcome == (200, 409):
                assert credited.json()["code"] == "credit_exceeds_invoice"
            else:
                assert removed.json()["code"] == "allocation_not_removable"
