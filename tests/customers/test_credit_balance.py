"""The read-only credit balance, computed from invoices and payments."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.ids import encode
from app.models import Customer, Workspace
from tests.billing.factories import create_customer, create_open_invoice


async def pay(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    customer: Customer,
    amount: int,
    currency: str = "EUR",
    **fields: Any,
) -> None:
    response = await client.post(
        "/v1/payments",
        json={
            "customer_id": encode("customer", customer.id),
            "amount": amount,
            "currency": currency,
            "method": "bank_transfer",
            **fields,
        },
        headers=auth,
    )
    assert response.status_code == 201, response.text


async def balance(
    client: httpx.AsyncClient, auth: dict[str, str], customer: Customer
) -> int:
    response = await client.get(
        f"/v1/customers/{encode('customer', customer.id)}", headers=auth
    )
    assert response.status_code == 200, response.text
    value: int = response.json()["credit_balance"]
    return value


class TestCreditBalance:
    async def test_zero_without_payments(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        await create_open_invoice(client, auth, customer)

        assert await balance(client, auth, customer) == 0

    async def test_partial_payment_is_no_credit(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)

        await pay(client, auth, customer, 4000, invoice_id=invoice["id"])

        assert await balance(client, auth, customer) == 0

    async def test_overpaid_invoice(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        assert invoice["total"] == 10000

        await pay(client, auth, customer, 12500, invoice_id=invoice["id"])

        assert await balance(client, auth, customer) == 2500

    async def test_unallocated_payment(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)

        await pay(client, auth, customer, 700)

        assert await balance(client, auth, customer) == 700

    async def test_adds_both_sources(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        first = await create_open_invoice(client, auth, customer)
        second = await create_open_invoice(client, auth, customer)

        await pay(client, auth, customer, 10300, invoice_id=first["id"])
        await pay(client, auth, customer, 10001, invoice_id=second["id"])
        await pay(client, auth, customer, 50)

        assert await balance(client, auth, customer) == 351

    async def test_other_currency_not_counted(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)

        await pay(client, auth, customer, 900, currency="USD")
        await pay(client, auth, customer, 100)

        assert await balance(client, auth, customer) == 100

    async def test_other_customer_not_counted(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        other = await create_customer(session, workspace.id, name="Initech")

        await pay(client, auth, other, 900)

        assert await balance(client, auth, customer) == 0
        assert await balance(client, auth, other) == 900

    async def test_in_list(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        paid = await create_customer(session, workspace.id, name="Paid")
        unpaid = await create_customer(session, workspace.id, name="Unpaid")
        await pay(client, auth, paid, 321)

        response = await client.get("/v1/customers", headers=auth)

        balances = {
            row["name"]: row["credit_balance"] for row in response.json()["data"]
        }
        assert balances == {"Paid": 321, "Unpaid": 0}
        assert encode("customer", unpaid.id) in {
            row["id"] for row in response.json()["data"]
        }
