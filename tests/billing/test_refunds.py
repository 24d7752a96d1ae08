"""Refunds of manual payments and what they take back from invoices."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Event, Payment, Refund, Workspace
from tests.billing.conftest import Committed
from tests.billing.factories import LINE, create_customer, create_open_invoice
from tests.billing.test_allocations import allocate, event_types, get, pay


async def refund(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    payment_id: str,
    **body: Any,
) -> httpx.Response:
    return await client.post(
        f"/v1/payments/{payment_id}/refunds", json=body, headers=auth
    )


async def paid_invoice(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    session: AsyncSession,
    workspace: Workspace,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Create an invoice of 10000 EUR and a payment of 10000 that pays it."""
    customer = await create_customer(session, workspace.id)
    invoice = await create_open_invoice(client, auth, customer)
    payment = (
        await pay(
            client,
            auth,
            customer,
            10000,
            allocations=[{"invoice_id": invoice["id"], "amount": 10000}],
        )
    ).json()
    return invoice, payment


class TestRefundPayment:
    async def test_full_refund_reopens_invoice(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        invoice, payment = await paid_invoice(client, auth, session, workspace)

        response = await refund(client, auth, payment["id"], reason="Cancelled order")

        assert response.status_code == 201, response.text
        created = response.json()
        assert created["id"].startswith("re_")
        assert created["amount"] == 10000
        assert created["currency"] == "EUR"
        assert created["reason"] == "Cancelled order"
        assert created["reversals"] == [
            {"invoice_id": invoice["id"], "amount": 10000, "restored": False}
        ]
        stored = await get(client, auth, f"/v1/payments/{payment['id']}")
        assert stored["amount_refunded"] == 10000
        assert stored["allocations"] == []
        assert stored["amount_unallocated"] == 0
        reopened = await get(client, auth, f"/v1/invoices/{invoice['id']}")
        assert reopened["status"] == "open"
        assert reopened["payment_status"] == "unpaid"
        assert reopened["paid_at"] is None
        types = await event_types(session)
        assert types[-2:] == ["invoice.updated", "payment.refunded"]

    async def test_no_body_refunds_all(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        invoice, payment = await paid_invoice(client, auth, session, workspace)

        response = await client.post(
            f"/v1/payments/{payment['id']}/refunds", headers=auth
        )

        assert response.status_code == 201, response.text
        assert response.json()["amount"] == 10000
        stored = await get(client, auth, f"/v1/payments/{payment['id']}")
        assert stored["amount_refunded"] == 10000
        reopened = await get(client, auth, f"/v1/invoices/{invoice['id']}")
        assert reopened["payment_status"] == "unpaid"

    async def test_empty_body_refunds_all(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        _, payment = await paid_invoice(client, auth, session, workspace)

        response = await client.post(
            f"/v1/payments/{payment['id']}/refunds",
            content=b"",
            headers={**auth, "Content-Type": "application/json"},
        )

        assert response.status_code == 201, response.text
        assert response.json()["amount"] == 10000

    async def test_null_amount_rejected(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        invoice, payment = await paid_invoice(client, auth, session, workspace)

        response = await refund(client, auth, payment["id"], amount=None)

        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["errors"][0]["field"] == "amount"
        assert problem["errors"][0]["code"] == "null_not_allowed"
        assert await session.scalar(select(func.count()).select_from(Refund)) == 0
        stored = await get(client, auth, f"/v1/payments/{payment['id']}")
        assert stored["amount_refunded"] == 0
        after = await get(client, auth, f"/v1/invoices/{invoice['id']}")
        assert after["amount_paid"] == 10000

    async def test_partial_refund_partially_paid(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        invoice, payment = await paid_invoice(client, auth, session, workspace)

        response = await refund(client, auth, payment["id"], amount=2500)

        assert response.status_code == 201
        reopened = await get(client, auth, f"/v1/invoices/{invoice['id']}")
        assert reopened["status"] == "open"
        assert reopened["payment_status"] == "partially_paid"
        assert reopened["amount_paid"] == 7500
        assert reopened["amount_remaining"] == 2500
        stored = await get(client, auth, f"/v1/payments/{payment['id']}")
        assert stored["allocations"] == [{"invoice_id": invoice["id"], "amount": 7500}]

    async def test_unallocated_first_then_newest(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        older = await create_open_invoice(client, auth, customer)
        newer = await create_open_invoice(client, auth, customer)
        payment = (await pay(client, auth, customer, 20000)).json()
        await allocate(client, auth, payment["id"], (older["id"], 6000))
        await allocate(client, auth, payment["id"], (newer["id"], 9000))

        response = await refund(client, auth, payment["id"], amount=12000)

        assert response.status_code == 201
        assert response.json()["reversals"] == [
            {"invoice_id": newer["id"], "amount": 7000, "restored": False}
        ]
        newer_after = await get(client, auth, f"/v1/invoices/{newer['id']}")
        assert newer_after["amount_paid"] == 2000
        older_after = await get(client, auth, f"/v1/invoices/{older['id']}")
        assert older_after["amount_paid"] == 6000
        stored = await get(client, auth, f"/v1/payments/{payment['id']}")
        assert stored["amount_unallocated"] == 0
        assert stored["amount_refunded"] == 12000

    async def test_named_allocations(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        older = await create_open_invoice(client, auth, customer)
        newer = await create_open_invoice(client, auth, customer)
        payment = (
            await pay(
                client,
                auth,
                customer,
                16000,
                allocations=[
                    {"invoice_id": older["id"], "amount": 10000},
                    {"invoice_id": newer["id"], "amount": 5000},
                ],
            )
        ).json()

        response = await refund(
            client,
            auth,
            payment["id"],
            amount=4000,
            allocations=[{"invoice_id": older["id"], "amount": 3000}],
        )

        assert response.status_code == 201, response.text
        assert response.json()["reversals"] == [
            {"invoice_id": older["id"], "amount": 3000, "restored": False}
        ]
        older_after = await get(client, auth, f"/v1/invoices/{older['id']}")
        assert older_after["status"] == "open"
        assert older_after["amount_paid"] == 7000
        newer_after = await get(client, auth, f"/v1/invoices/{newer['id']}")
        assert newer_after["amount_paid"] == 5000
        stored = await get(client, auth, f"/v1/payments/{payment['id']}")
        assert stored["amount_unallocated"] == 0

    async def test_named_allocations_leave_too_much(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        invoice, payment = await paid_invoice(client, auth, session, workspace)

        response = await refund(
            client,
            auth,
            payment["id"],
            amount=5000,
            allocations=[{"invoice_id": invoice["id"], "amount": 1000}],
        )

        assert response.status_code == 409
        assert response.json()["code"] == "refund_exceeds_unallocated"
        unchanged = await get(client, auth, f"/v1/invoices/{invoice['id']}")
        assert unchanged["amount_paid"] == 10000

    async def test_named_allocation_too_large(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        invoice, payment = await paid_invoice(client, auth, session, workspace)
        other = await create_open_invoice(
            client, auth, await create_customer(session, workspace.id)
        )

        too_large = await refund(
            client,
            auth,
            payment["id"],
            amount=5000,
            allocations=[{"invoice_id": invoice["id"], "amount": 10001}],
        )
        not_allocated = await refund(
            client,
            auth,
            payment["id"],
            amount=5000,
            allocations=[{"invoice_id": other["id"], "amount": 5000}],
        )

        assert too_large.status_code == 422
        assert too_large.json()["errors"][0]["field"] == "allocations.0.amount"
        assert not_allocated.status_code == 422
        assert not_allocated.json()["errors"][0]["code"] == "not_allocated"

    async def test_more_than_refundable(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        invoice, payment = await paid_invoice(client, auth, session, workspace)
        await refund(client, auth, payment["id"], amount=4000)
        events_before = await session.scalar(select(func.count()).select_from(Event))

        response = await refund(client, auth, payment["id"], amount=6001)

        assert response.status_code == 409
        problem = response.json()
        assert problem["code"] == "refund_exceeds_refundable"
        assert problem["amount_refundable"] == 6000
        assert await session.scalar(select(func.count()).select_from(Refund)) == 1
        events_after = await session.scalar(select(func.count()).select_from(Event))
        assert events_after == events_before
        unchanged = await get(client, auth, f"/v1/invoices/{invoice['id']}")
        assert unchanged["amount_paid"] == 6000

    async def test_nothing_left(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        _, payment = await paid_invoice(client, auth, session, workspace)
        await refund(client, auth, payment["id"])

        response = await refund(client, auth, payment["id"])

        assert response.status_code == 409
        assert response.json()["amount_refundable"] == 0

    async def test_provider_payment_rejected(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        _, payment = await paid_invoice(client, auth, session, workspace)
        await session.execute(
            update(Payment).values(provider="paypal", provider_payment_id="PAY-1")
        )
        await session.commit()

        response = await refund(client, auth, payment["id"], amount=100)

        assert response.status_code == 409
        assert response.json()["code"] == "refund_through_provider"

    async def test_idempotency_key_refunds_once(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        _, payment = await paid_invoice(client, auth, session, workspace)
        headers = {**auth, "Idempotency-Key": "refund-once"}
        path = f"/v1/payments/{payment['id']}/refunds"

        first = await client.post(path, json={"amount": 1000}, headers=headers)
        second = await client.post(path, json={"amount": 1000}, headers=headers)

        assert first.status_code == 201
        assert second.status_code == 201
        assert second.headers["idempotent-replayed"] == "true"
        assert second.json()["id"] == first.json()["id"]
        stored = await get(client, auth, f"/v1/payments/{payment['id']}")
        assert stored["amount_refunded"] == 1000

    async def test_listed_on_payment(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        _, payment = await paid_invoice(client, auth, session, workspace)
        first = (await refund(client, auth, payment["id"], amount=1000)).json()
        second = (await refund(client, auth, payment["id"], amount=2000)).json()

        listed = await get(client, auth, f"/v1/payments/{payment['id']}/refunds")

        assert [item["id"] for item in listed["data"]] == [first["id"], second["id"]]
        assert listed["data"][1]["reversals"][0]["amount"] == 2000
        assert listed["has_more"] is False

    async def test_credit_balance_excludes_refund(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        payment = (await pay(client, auth, customer, 5000)).json()

        await refund(client, auth, payment["id"], amount=2000)

        customer_view = await get(
            client, auth, f"/v1/customers/{payment['customer_id']}"
        )
        assert customer_view["credit_balance"] == 3000


async def credit_note(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    invoice_id: str,
    **body: Any,
) -> dict[str, Any]:
    response = await client.post(
        f"/v1/invoices/{invoice_id}/credit-notes",
        json={"reason": "other", **body},
        headers=auth,
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


class TestRefundAfterCredit:
    async def test_full_refund_after_credit_note(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        invoice, payment = await paid_invoice(client, auth, session, workspace)
        await credit_note(
            client, auth, invoice["id"], amount=3000, amount_to_credit=3000
        )
        events_before = await session.scalar(select(func.count()).select_from(Event))

        response = await refund(client, auth, payment["id"])

        assert response.status_code == 409, response.text
        problem = response.json()
        assert problem["code"] == "refund_exceeds_refundable"
        assert problem["amount_refundable"] == 7000
        assert problem["amount_credited_back"] == 3000
        assert problem["errors"][0]["field"] == "amount"
        assert "void those credit notes" in problem["detail"]
        assert await session.scalar(select(func.count()).select_from(Refund)) == 0
        events_after = await session.scalar(select(func.count()).select_from(Event))
        assert events_after == events_before

    async def test_refund_up_to_what_is_left(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        invoice, payment = await paid_invoice(client, auth, session, workspace)
        await credit_note(
            client, auth, invoice["id"], amount=3000, amount_to_credit=3000
        )

        refunded = await refund(client, auth, payment["id"], amount=7000)
        again = await refund(client, auth, payment["id"], amount=1)

        assert refunded.status_code == 201, refunded.text
        assert again.status_code == 409
        assert again.json()["amount_refundable"] == 0
        after = await get(client, auth, f"/v1/invoices/{invoice['id']}")
        assert after["amount_paid"] == 3000
        assert after["post_payment_credit_notes_amount"] == 3000
        # 10000 paid, 7000 refunded and 3000 of credit: never more than was paid.
        assert await customer_credit(client, auth, payment["customer_id"]) == 3000

    async def test_credit_note_refund_counts(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        invoice, payment = await paid_invoice(client, auth, session, workspace)
        await credit_note(client, auth, invoice["id"], amount=2500, refund_amount=2500)

        response = await refund(client, auth, payment["id"], amount=8000)

        assert response.status_code == 409, response.text
        assert response.json()["amount_refundable"] == 7500

    async def test_credit_note_refund_through_payment(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        payments = []
        for _ in range(2):
            response = await pay(
                client,
                auth,
                customer,
                5000,
                allocations=[{"invoice_id": invoice["id"], "amount": 5000}],
            )
            assert response.status_code == 201, response.text
            payments.append(response.json())
        first, second = payments
        # The note refunds all of the first payment's 5000 through that payment.
        note = await credit_note(
            client,
            auth,
            invoice["id"],
            amount=5000,
            refund_amount=5000,
            refund_payment_id=first["id"],
        )
        assert note["refund_payment_id"] == first["id"]

        rejected = await refund(client, auth, first["id"], amount=1)
        allowed = await refund(client, auth, second["id"], amount=5000)

        assert rejected.status_code == 409, rejected.text
        problem = rejected.json()
        assert problem["code"] == "refund_exceeds_refundable"
        assert problem["amount_refundable"] == 0
        stored = await get(client, auth, f"/v1/payments/{first['id']}")
        assert stored["amount_refunded"] == 0
        assert stored["amount_allocated"] == 5000
        assert allowed.status_code == 201, allowed.text
        after = await get(client, auth, f"/v1/invoices/{invoice['id']}")
        assert after["amount_paid"] == 5000

    async def test_named_allocation_after_credit_note(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(
            client, auth, customer, lines=[{**LINE, "quantity": "1"}]
        )
        payment = (
            await pay(
                client,
                auth,
                customer,
                10000,
                allocations=[{"invoice_id": invoice["id"], "amount": 5000}],
            )
        ).json()
        await credit_note(
            client, auth, invoice["id"], amount=3000, amount_to_credit=3000
        )

        response = await refund(
            client,
            auth,
            payment["id"],
            amount=4000,
            allocations=[{"invoice_id": invoice["id"], "amount": 4000}],
        )

        assert response.status_code == 409, response.text
        problem = response.json()
        assert problem["code"] == "refund_exceeds_refundable"
        assert problem["amount_refundable"] == 2000
        assert problem["errors"][0]["field"] == "allocations.0.amount"

    async def test_used_credit_not_refunded(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        payment = (await pay(client, auth, customer, 10000)).json()
        invoice = await create_open_invoice(client, auth, customer)
        applied = await client.post(
            f"/v1/invoices/{invoice['id']}/apply-credit",
            json={"amount": 6000},
            headers=auth,
        )
        assert applied.status_code == 200, applied.text

        response = await refund(client, auth, payment["id"])
        allowed = await refund(client, auth, payment["id"], amount=4000)

        assert response.status_code == 409, response.text
        problem = response.json()
        assert problem["code"] == "refund_exceeds_credit"
        assert problem["credit_available"] == 4000
        assert problem["errors"][0]["field"] == "amount"
        assert "invoices that are not overpaid" in problem["detail"]
        assert allowed.status_code == 201, allowed.text
        assert await customer_credit(client, auth, payment["customer_id"]) == 0
        stored = await get(client, auth, f"/v1/payments/{payment['id']}")
        assert stored["amount_refunded"] == 4000


async def customer_credit(
    client: httpx.AsyncClient, auth: dict[str, str], customer_id: str
) -> int:
    customer = await get(client, auth, f"/v1/customers/{customer_id}")
    value: int = customer["credit_balance"]
    return value


class TestConcurrentRefunds:
    async def test_never_exceeds_payment(self, committed: Committed) -> None:
        client, auth = committed.client, committed.auth
        invoice = await create_open_invoice(client, auth, committed.customer)
        payment = (
            await pay(
                client,
                auth,
                committed.customer,
                10000,
                allocations=[{"invoice_id": invoice["id"], "amount": 10000}],
            )
        ).json()

        responses = await asyncio.gather(
            *(refund(client, auth, payment["id"], amount=3000) for _ in range(6))
        )

        statuses = sorted(response.status_code for response in responses)
        assert statuses == [201, 201, 201, 409, 409, 409]
        stored = await get(client, auth, f"/v1/payments/{payment['id']}")
        assert stored["amount_refunded"] == 9000
        assert stored["amount_allocated"] == 1000
        reopened = await get(client, auth, f"/v1/invoices/{invoice['id']}")
        assert reopened["amount_paid"] == 1000
        assert reopened["payment_status"] == "partially_paid"
