from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.ids import encode
from app.models import Customer, Event, Payment, PaymentAllocation, Workspace
from tests.billing.factories import create_customer, create_invoice, create_open_invoice
from tests.conftest import make_workspace_key


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


class TestManualPayment:
    async def test_partial(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)

        response = await pay(
            client, auth, customer, 4000, invoice_id=invoice["id"], reference="SEPA-1"
        )

        assert response.status_code == 201, response.text
        payment = response.json()
        assert payment["id"].startswith("pay_")
        assert response.headers["location"] == f"/v1/payments/{payment['id']}"
        assert payment["status"] == "succeeded"
        assert payment["reference"] == "SEPA-1"
        assert payment["allocations"] == [{"invoice_id": invoice["id"], "amount": 4000}]
        assert payment["amount_allocated"] == 4000
        assert payment["amount_unallocated"] == 0
        updated = (
            await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
        ).json()
        assert updated["status"] == "open"
        assert updated["payment_status"] == "partially_paid"
        assert updated["amount_paid"] == 4000
        assert updated["amount_remaining"] == 6000
        assert updated["paid_at"] is None
        events = list(await session.scalars(select(Event.type).order_by(Event.id)))
        assert events[-2:] == ["invoice.updated", "payment.succeeded"]

    async def test_full_marks_paid(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        await pay(client, auth, customer, 4000, invoice_id=invoice["id"])

        response = await pay(
            client, auth, customer, 6000, invoice_id=invoice["id"], method="check"
        )

        assert response.status_code == 201
        paid = (await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)).json()
        assert paid["status"] == "paid"
        assert paid["payment_status"] == "paid"
        assert paid["amount_paid"] == 10000
        assert paid["amount_remaining"] == 0
        assert paid["paid_at"] is not None
        assert paid["overdue"] is False
        events = list(await session.scalars(select(Event.type).order_by(Event.id)))
        assert events.count("invoice.paid") == 1

    async def test_overpayment_recorded(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)

        response = await pay(client, auth, customer, 12500, invoice_id=invoice["id"])

        assert response.status_code == 201
        paid = (await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)).json()
        assert paid["status"] == "paid"
        assert paid["payment_status"] == "overpaid"
        assert paid["amount_paid"] == 12500
        assert paid["amount_remaining"] == 0
        assert paid["amount_overpaid"] == 2500

    async def test_payment_after_paid_is_overpaid(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        await pay(client, auth, customer, 10000, invoice_id=invoice["id"])

        response = await pay(client, auth, customer, 1, invoice_id=invoice["id"])

        assert response.status_code == 201
        paid = (await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)).json()
        assert paid["payment_status"] == "overpaid"
        events = list(await session.scalars(select(Event.type).order_by(Event.id)))
        assert events.count("invoice.paid") == 1

    async def test_unallocated(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)

        response = await pay(client, auth, customer, 700, method="cash")

        payment = response.json()
        assert payment["allocations"] == []
        assert payment["amount_unallocated"] == 700

    async def test_idempotency_key_counts_once(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        headers = {**auth, "Idempotency-Key": "pay-once"}
        body = {
            "customer_id": encode("customer", customer.id),
            "amount": 4000,
            "currency": "EUR",
            "method": "bank_transfer",
            "invoice_id": invoice["id"],
        }

        first = await client.post("/v1/payments", json=body, headers=headers)
        second = await client.post("/v1/payments", json=body, headers=headers)

        assert first.status_code == 201
        assert second.status_code == 201
        assert second.headers["idempotent-replayed"] == "true"
        assert second.json()["id"] == first.json()["id"]
        assert await session.scalar(select(func.count()).select_from(Payment)) == 1
        stored = (
            await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
        ).json()
        assert stored["amount_paid"] == 4000

    async def test_draft_invoice_not_payable(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        draft = await create_invoice(client, auth, customer)

        response = await pay(client, auth, customer, 100, invoice_id=draft["id"])

        assert response.status_code == 409
        assert response.json()["code"] == "invoice_not_payable"
        assert await session.scalar(select(func.count()).select_from(Payment)) == 0

    async def test_void_invoice_not_payable(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        await client.post(f"/v1/invoices/{invoice['id']}/void", headers=auth)

        response = await pay(client, auth, customer, 100, invoice_id=invoice["id"])

        assert response.status_code == 409
        assert response.json()["current_status"] == "void"

    async def test_currency_mismatch(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)

        response = await pay(
            client, auth, customer, 100, invoice_id=invoice["id"], currency="USD"
        )

        assert response.status_code == 422
        problem = response.json()
        assert problem["code"] == "payment_mismatch"
        assert problem["errors"][0]["field"] == "currency"

    async def test_customer_mismatch(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        other = await create_customer(session, workspace.id, name="Initech")
        invoice = await create_open_invoice(client, auth, customer)

        response = await pay(client, auth, other, 100, invoice_id=invoice["id"])

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "invoice_id"

    async def test_validation(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        cases: list[tuple[dict[str, Any], str, str]] = [
            ({"amount": 19.99}, "amount", "int_type"),
            ({"amount": "1999"}, "amount", "int_type"),
            ({"amount": 0}, "amount", "greater_than"),
            ({"currency": "EURO"}, "currency", "unknown_currency"),
            ({"method": "bitcoin"}, "method", "literal_error"),
            ({"received_at": "2026-01-01T10:00:00"}, "received_at", "timezone_aware"),
            ({"tip": 5}, "tip", "extra_forbidden"),
        ]

        for fields, field, code in cases:
            body: dict[str, Any] = {
                "customer_id": encode("customer", customer.id),
                "amount": 100,
                "currency": "EUR",
                "method": "cash",
                **fields,
            }
            response = await client.post("/v1/payments", json=body, headers=auth)

            assert response.status_code == 422, fields
            error = response.json()["errors"][0]
            assert error["field"] == field, fields
            assert error["code"] == code, fields
        assert await session.scalar(select(func.count()).select_from(Payment)) == 0

    async def test_received_in_future(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        later = (datetime.now(UTC) + timedelta(days=1)).isoformat()

        response = await pay(client, auth, customer, 100, received_at=later)

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "in_future"

    async def test_unknown_invoice(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        other, other_auth = await make_workspace_key(session)
        foreign = await create_open_invoice(
            client, other_auth, await create_customer(session, other.id)
        )

        response = await pay(client, auth, customer, 100, invoice_id=foreign["id"])

        assert response.status_code == 404
        assert response.json()["code"] == "invoice_not_found"


class TestGetAndListPayments:
    async def test_get(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        created = (
            await pay(client, auth, customer, 10, invoice_id=invoice["id"])
        ).json()

        response = await client.get(f"/v1/payments/{created['id']}", headers=auth)

        assert response.status_code == 200
        assert response.json() == created

    async def test_other_workspace_is_404(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        created = (await pay(client, auth, customer, 10)).json()
        _, other = await make_workspace_key(session)

        response = await client.get(f"/v1/payments/{created['id']}", headers=other)

        assert response.status_code == 404
        assert response.json()["code"] == "payment_not_found"

    async def test_list_filters(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        other = await create_customer(session, workspace.id, name="Initech")
        invoice = await create_open_invoice(client, auth, customer)
        allocated = (
            await pay(client, auth, customer, 10, invoice_id=invoice["id"])
        ).json()
        loose = (await pay(client, auth, customer, 20)).json()
        foreign = (await pay(client, auth, other, 30)).json()

        everything = (await client.get("/v1/payments", headers=auth)).json()
        mine = (
            await client.get(
                "/v1/payments",
                params={"customer_id": encode("customer", customer.id)},
                headers=auth,
            )
        ).json()
        for_invoice = (
            await client.get(
                "/v1/payments", params={"invoice_id": invoice["id"]}, headers=auth
            )
        ).json()

        assert [item["id"] for item in everything["data"]] == [
            foreign["id"],
            loose["id"],
            allocated["id"],
        ]
        assert [item["id"] for item in mine["data"]] == [loose["id"], allocated["id"]]
        assert [item["id"] for item in for_invoice["data"]] == [allocated["id"]]
        assert for_invoice["data"][0]["allocations"][0]["amount"] == 10
        assert (
            await session.scalar(select(func.count()).select_from(PaymentAllocation))
            == 1
        )
