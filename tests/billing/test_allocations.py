"""Allocating manual payments to invoices, partially, across several, and back."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.ids import encode, new_uuid
from app.models import Customer, Event, PaymentAllocation, Workspace
from tests.billing.conftest import Committed
from tests.billing.factories import (
    LINE,
    create_customer,
    create_invoice,
    create_open_invoice,
)


async def pay(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    customer: Customer,
    amount: int,
    **fields: Any,
) -> httpx.Response:
    body: dict[str, Any] = {
        "customer_id": encode("customer", customer.id),
        "amount": amount,
        "currency": "EUR",
        "method": "bank_transfer",
        **fields,
    }
    return await client.post("/v1/payments", json=body, headers=auth)


async def get(
    client: httpx.AsyncClient, auth: dict[str, str], path: str
) -> dict[str, Any]:
    response = await client.get(path, headers=auth)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def allocate(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    payment_id: str,
    *items: tuple[str, int],
) -> httpx.Response:
    return await client.post(
        f"/v1/payments/{payment_id}/allocations",
        json={
            "allocations": [
                {"invoice_id": invoice_id, "amount": amount}
                for invoice_id, amount in items
            ]
        },
        headers=auth,
    )


async def event_types(session: AsyncSession) -> list[str]:
    return list(await session.scalars(select(Event.type).order_by(Event.id)))


class TestAllocateAtCreation:
    async def test_several_invoices_rest_unallocated(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        first = await create_open_invoice(client, auth, customer)
        second = await create_open_invoice(client, auth, customer)

        response = await pay(
            client,
            auth,
            customer,
            25000,
            allocations=[
                {"invoice_id": first["id"], "amount": 10000},
                {"invoice_id": second["id"], "amount": 4000},
            ],
        )

        assert response.status_code == 201, response.text
        payment = response.json()
        assert payment["allocations"] == [
            {"invoice_id": first["id"], "amount": 10000},
            {"invoice_id": second["id"], "amount": 4000},
        ]
        assert payment["amount_allocated"] == 14000
        assert payment["amount_unallocated"] == 11000
        paid = await get(client, auth, f"/v1/invoices/{first['id']}")
        assert paid["status"] == "paid"
        assert paid["payment_status"] == "paid"
        partial = await get(client, auth, f"/v1/invoices/{second['id']}")
        assert partial["status"] == "open"
        assert partial["payment_status"] == "partially_paid"
        assert partial["amount_remaining"] == 6000
        customer_view = await get(
            client, auth, f"/v1/customers/{encode('customer', customer.id)}"
        )
        assert customer_view["credit_balance"] == 11000
        types = await event_types(session)
        assert types[-3:] == ["invoice.paid", "invoice.updated", "payment.succeeded"]

    async def test_more_than_invoice_owes(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)

        response = await pay(
            client,
            auth,
            customer,
            20000,
            allocations=[{"invoice_id": invoice["id"], "amount": 10001}],
        )

        assert response.status_code == 409
        problem = response.json()
        assert problem["code"] == "allocation_exceeds_invoice"
        assert problem["amount_remaining"] == 10000
        assert problem["errors"][0]["field"] == "allocations.0.amount"
        assert (await client.get("/v1/payments", headers=auth)).json()["data"] == []
        unchanged = await get(client, auth, f"/v1/invoices/{invoice['id']}")
        assert unchanged["amount_paid"] == 0

    async def test_allocations_above_payment(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        first = await create_open_invoice(client, auth, customer)
        second = await create_open_invoice(client, auth, customer)

        response = await pay(
            client,
            auth,
            customer,
            15000,
            allocations=[
                {"invoice_id": first["id"], "amount": 10000},
                {"invoice_id": second["id"], "amount": 6000},
            ],
        )

        assert response.status_code == 409
        assert response.json()["code"] == "allocation_exceeds_unallocated"
        assert response.json()["amount_unallocated"] == 15000
        assert (await client.get("/v1/payments", headers=auth)).json()["data"] == []

    async def test_invalid_allocation_forms(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        item = {"invoice_id": invoice["id"], "amount": 100}
        cases: list[tuple[dict[str, Any], str, str]] = [
            (
                {"allocations": [item], "invoice_id": invoice["id"]},
                "body",
                "allocation_conflict",
            ),
            ({"allocations": []}, "allocations", "too_short"),
            (
                {"allocations": [{**item, "amount": 0}]},
                "allocations.0.amount",
                "greater_than",
            ),
            (
                {"allocations": [{**item, "amount": 1.5}]},
                "allocations.0.amount",
                "int_type",
            ),
        ]

        for fields, field, code in cases:
            response = await pay(client, auth, customer, 1000, **fields)

            assert response.status_code == 422, fields
            error = response.json()["errors"][0]
            assert error["field"] == field, fields
            assert error["code"] == code, fields

        duplicate = await pay(client, auth, customer, 1000, allocations=[item, item])
        assert duplicate.status_code == 422
        assert duplicate.json()["errors"][0]["field"] == "allocations.1.invoice_id"
        assert (await client.get("/v1/payments", headers=auth)).json()["data"] == []

    async def test_currency_mismatch(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        dollars = await create_open_invoice(client, auth, customer, currency="USD")

        response = await pay(
            client,
            auth,
            customer,
            1000,
            allocations=[{"invoice_id": dollars["id"], "amount": 1000}],
        )

        assert response.status_code == 422
        assert response.json()["code"] == "payment_mismatch"
        assert response.json()["errors"][0]["field"] == "currency"
        assert (await client.get("/v1/payments", headers=auth)).json()["data"] == []


class TestAllocateLater:
    async def test_credit_pays_later_invoice(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        payment = (await pay(client, auth, customer, 15000)).json()
        invoice = await create_open_invoice(client, auth, customer)

        response = await allocate(client, auth, payment["id"], (invoice["id"], 10000))

        assert response.status_code == 200, response.text
        updated = response.json()
        assert updated["allocations"] == [
            {"invoice_id": invoice["id"], "amount": 10000}
        ]
        assert updated["amount_unallocated"] == 5000
        paid = await get(client, auth, f"/v1/invoices/{invoice['id']}")
        assert paid["status"] == "paid"
        types = await event_types(session)
        assert types[-2:] == ["invoice.paid", "payment.updated"]

    async def test_same_invoice_twice_adds_up(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        payment = (await pay(client, auth, customer, 8000)).json()

        await allocate(client, auth, payment["id"], (invoice["id"], 3000))
        response = await allocate(client, auth, payment["id"], (invoice["id"], 2000))

        assert response.status_code == 200
        assert response.json()["allocations"] == [
            {"invoice_id": invoice["id"], "amount": 5000}
        ]
        stored = await get(client, auth, f"/v1/invoices/{invoice['id']}")
        assert stored["amount_paid"] == 5000

    async def test_beyond_unallocated_changes_nothing(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        payment = (await pay(client, auth, customer, 5000)).json()
        events_before = await session.scalar(select(func.count()).select_from(Event))

        response = await allocate(client, auth, payment["id"], (invoice["id"], 5001))

        assert response.status_code == 409
        assert response.json()["code"] == "allocation_exceeds_unallocated"
        stored = await get(client, auth, f"/v1/payments/{payment['id']}")
        assert stored["amount_unallocated"] == 5000
        invoice_after = await get(client, auth, f"/v1/invoices/{invoice['id']}")
        assert invoice_after["amount_paid"] == 0
        events_after = await session.scalar(select(func.count()).select_from(Event))
        assert events_after == events_before

    async def test_credit_applied_elsewhere_is_spent(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        payment = (await pay(client, auth, customer, 10000)).json()
        first = await create_open_invoice(
            client, auth, customer, lines=[{**LINE, "quantity": "1.6"}]
        )
        second = await create_open_invoice(client, auth, customer)
        applied = await client.post(
            f"/v1/invoices/{first['id']}/apply-credit", json={}, headers=auth
        )
        assert applied.status_code == 200, applied.text
        assert applied.json()["customer_credit_applied"] == 8000

        response = await allocate(client, auth, payment["id"], (second["id"], 10000))
        allowed = await allocate(client, auth, payment["id"], (second["id"], 2000))

        assert response.status_code == 409, response.text
        problem = response.json()
        assert problem["code"] == "allocation_exceeds_credit"
        assert problem["credit_available"] == 2000
        assert problem["amount_requested"] == 10000
        assert problem["errors"][0]["field"] == "allocations"
        assert allowed.status_code == 200, allowed.text
        stored = await get(client, auth, f"/v1/invoices/{second['id']}")
        assert stored["amount_paid"] == 2000
        owner = await get(client, auth, f"/v1/customers/{payment['customer_id']}")
        assert owner["credit_balance"] == 0

    async def test_other_customers_invoice(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        other = await create_customer(session, workspace.id, name="Initech")
        invoice = await create_open_invoice(client, auth, other)
        payment = (await pay(client, auth, customer, 5000)).json()

        response = await allocate(client, auth, payment["id"], (invoice["id"], 100))

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "allocations.0.invoice_id"

    async def test_draft_invoice(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        draft = await create_invoice(client, auth, customer)
        payment = (await pay(client, auth, customer, 5000)).json()

        response = await allocate(client, auth, payment["id"], (draft["id"], 100))

        assert response.status_code == 409
        assert response.json()["code"] == "invoice_not_payable"

    async def test_unknown_payment(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await allocate(
            client,
            auth,
            encode("payment", new_uuid()),
            (encode("invoice", new_uuid()), 1),
        )

        assert response.status_code == 404
        assert response.json()["code"] == "payment_not_found"


class TestRemoveAllocation:
    async def test_paid_invoice_reopens(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
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

        response = await client.delete(
            f"/v1/payments/{payment['id']}/allocations/{invoice['id']}", headers=auth
        )

        assert response.status_code == 200, response.text
        assert response.json()["allocations"] == []
        assert response.json()["amount_unallocated"] == 10000
        reopened = await get(client, auth, f"/v1/invoices/{invoice['id']}")
        assert reopened["status"] == "open"
        assert reopened["payment_status"] == "unpaid"
        assert reopened["paid_at"] is None
        assert reopened["amount_remaining"] == 10000
        types = await event_types(session)
        assert types[-2:] == ["invoice.updated", "payment.updated"]
        assert (
            await session.scalar(select(func.count()).select_from(PaymentAllocation))
            == 0
        )

    async def test_credited_invoice_keeps_allocation(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
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
        noted = await client.post(
            f"/v1/invoices/{invoice['id']}/credit-notes",
            json={"reason": "other", "amount": 3000, "amount_to_credit": 3000},
            headers=auth,
        )
        assert noted.status_code == 201, noted.text

        response = await client.delete(
            f"/v1/payments/{payment['id']}/allocations/{invoice['id']}", headers=auth
        )

        assert response.status_code == 409, response.text
        problem = response.json()
        assert problem["code"] == "allocation_not_removable"
        assert problem["amount_returnable"] == 7000
        stored = await get(client, auth, f"/v1/payments/{payment['id']}")
        assert stored["amount_allocated"] == 10000
        customer_view = await get(
            client, auth, f"/v1/customers/{encode('customer', customer.id)}"
        )
        assert customer_view["credit_balance"] == 3000

    async def test_credit_note_refund_keeps_allocation(
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
        first = payments[0]
        # The note refunds all of the first payment's 5000 through that payment,
        # so none of it may also become customer credit.
        noted = await client.post(
            f"/v1/invoices/{invoice['id']}/credit-notes",
            json={
                "reason": "other",
                "amount": 5000,
                "refund_amount": 5000,
                "refund_payment_id": first["id"],
            },
            headers=auth,
        )
        assert noted.status_code == 201, noted.text

        response = await client.delete(
            f"/v1/payments/{first['id']}/allocations/{invoice['id']}", headers=auth
        )

        assert response.status_code == 409, response.text
        problem = response.json()
        assert problem["code"] == "allocation_not_removable"
        assert problem["amount_returnable"] == 0
        stored = await get(client, auth, f"/v1/payments/{first['id']}")
        assert stored["amount_allocated"] == 5000
        customer_view = await get(
            client, auth, f"/v1/customers/{encode('customer', customer.id)}"
        )
        assert customer_view["credit_balance"] == 0

    async def test_missing_allocation(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        payment = (await pay(client, auth, customer, 100)).json()

        response = await client.delete(
            f"/v1/payments/{payment['id']}/allocations/{invoice['id']}", headers=auth
        )

        assert response.status_code == 404
        assert response.json()["code"] == "allocation_not_found"


class TestConcurrentAllocations:
    async def test_never_over_allocates(self, committed: Committed) -> None:
        client, auth = committed.client, committed.auth
        invoices = [
            await create_open_invoice(client, auth, committed.customer)
            for _ in range(6)
        ]
        payment = (await pay(client, auth, committed.customer, 10000)).json()

        responses = await asyncio.gather(
            *(
                allocate(client, auth, payment["id"], (invoice["id"], 3000))
                for invoice in invoices
            )
        )

        statuses = sorted(response.status_code for response in responses)
        assert statuses == [200, 200, 200, 409, 409, 409]
        stored = await get(client, auth, f"/v1/payments/{payment['id']}")
        assert stored["amount_allocated"] == 9000
        assert stored["amount_unallocated"] == 1000
        paid_total = 0
        for invoice in invoices:
            paid_total += (await get(client, auth, f"/v1/invoices/{invoice['id']}"))[
                "amount_paid"
            ]
        assert paid_total == 9000
