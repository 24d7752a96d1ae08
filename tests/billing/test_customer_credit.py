"""The customer credit ledger: adjustments, applying credit, balances per currency."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.ids import encode
from app.models import Customer, CustomerCreditTransaction, Event, Workspace
from tests.billing.factories import create_customer, create_open_invoice
from tests.billing.test_credit_notes import (
    credited,
    customer_balance,
    fetch_invoice,
    pay,
)


async def adjust(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    customer: Customer,
    amount: int,
    **body: Any,
) -> httpx.Response:
    return await client.post(
        f"/v1/customers/{encode('customer', customer.id)}/credit-transactions",
        json={"amount": amount, "description": "Goodwill", **body},
        headers=auth,
    )


async def apply_credit(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    invoice: dict[str, Any],
    **body: Any,
) -> httpx.Response:
    return await client.post(
        f"/v1/invoices/{invoice['id']}/apply-credit", json=body, headers=auth
    )


async def ledger_count(session: AsyncSession) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(CustomerCreditTransaction)
        )
        or 0
    )


class TestApplyCredit:
    async def test_credit_note_pays_later_invoice(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        first = await create_open_invoice(client, auth, customer)
        await pay(client, auth, first, 10000)
        note = await credited(client, auth, first, amount=4000, amount_to_credit=4000)
        later = await create_open_invoice(client, auth, customer)

        response = await apply_credit(client, auth, later)

        assert response.status_code == 200, response.text
        invoice = response.json()
        assert invoice["customer_credit_applied"] == 4000
        assert invoice["amount_due"] == 6000
        assert invoice["amount_remaining"] == 6000
        assert invoice["payment_status"] == "partially_paid"
        assert invoice["status"] == "open"
        assert await customer_balance(client, auth, first["customer_id"]) == 0
        listed = await client.get(
            f"/v1/customers/{first['customer_id']}/credit-transactions", headers=auth
        )
        rows = listed.json()["data"]
        assert [(row["source"], row["amount"]) for row in rows] == [
            ("applied_to_invoice", -4000),
            ("credit_note", 4000),
        ]
        assert rows[0]["invoice_id"] == later["id"]
        assert rows[1]["credit_note_id"] == note["id"]
        assert rows[0]["id"].startswith("cct_")

    async def test_full_application_marks_paid(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        assert (await adjust(client, auth, customer, 15000)).status_code == 201
        invoice = await create_open_invoice(client, auth, customer)

        # No body at all: apply as much as the balance and the invoice allow.
        response = await client.post(
            f"/v1/invoices/{invoice['id']}/apply-credit", headers=auth
        )

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "paid"
        assert response.json()["payment_status"] == "paid"
        assert response.json()["customer_credit_applied"] == 10000
        assert await customer_balance(client, auth, invoice["customer_id"]) == 5000
        events = list(await session.scalars(select(Event.type).order_by(Event.id)))
        assert events[-2:] == ["customer_credit_transaction.created", "invoice.paid"]

    async def test_credit_alone_in_parts_paid(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        assert (await adjust(client, auth, customer, 10000)).status_code == 201
        invoice = await create_open_invoice(client, auth, customer)

        partial = await apply_credit(client, auth, invoice, amount=4000)
        rest = await apply_credit(client, auth, invoice, amount=6000)

        assert partial.json()["payment_status"] == "partially_paid"
        assert rest.status_code == 200, rest.text
        settled = await fetch_invoice(client, auth, invoice)
        assert settled["amount_paid"] == 0
        assert settled["amount_remaining"] == 0
        assert settled["payment_status"] == "paid"
        assert settled["status"] == "paid"

    async def test_credit_and_credit_note_paid(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        assert (await adjust(client, auth, customer, 6000)).status_code == 201
        invoice = await create_open_invoice(client, auth, customer)
        await apply_credit(client, auth, invoice, amount=6000)

        await credited(client, auth, invoice, amount=4000)

        settled = await fetch_invoice(client, auth, invoice)
        assert settled["amount_remaining"] == 0
        assert settled["payment_status"] == "paid"
        assert settled["status"] == "paid"

    async def test_payment_and_credit_paid(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        assert (await adjust(client, auth, customer, 6000)).status_code == 201
        invoice = await create_open_invoice(client, auth, customer)
        await pay(client, auth, invoice, 4000)

        response = await apply_credit(client, auth, invoice)

        assert response.status_code == 200, response.text
        assert response.json()["amount_remaining"] == 0
        assert response.json()["payment_status"] == "paid"

    async def test_payment_after_credit_keeps_balance_exact(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        await adjust(client, auth, customer, 3000)
        invoice = await create_open_invoice(client, auth, customer)
        await apply_credit(client, auth, invoice, amount=3000)

        # The customer pays the full total anyway: the 3000 comes back as credit.
        await pay(client, auth, invoice, 10000)

        after = await fetch_invoice(client, auth, invoice)
        assert after["payment_status"] == "overpaid"
        assert after["amount_overpaid"] == 3000
        assert await customer_balance(client, auth, invoice["customer_id"]) == 3000

    async def test_more_than_balance_refused(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        await adjust(client, auth, customer, 1000)
        invoice = await create_open_invoice(client, auth, customer)

        response = await apply_credit(client, auth, invoice, amount=1001)

        assert response.status_code == 409, response.text
        assert response.json()["code"] == "insufficient_credit"
        assert response.json()["available"] == 1000
        assert (await fetch_invoice(client, auth, invoice))["amount_due"] == 10000
        assert await ledger_count(session) == 1

    async def test_no_credit_to_apply(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)

        response = await apply_credit(client, auth, invoice)

        assert response.status_code == 409, response.text
        problem = response.json()
        assert problem["code"] == "insufficient_credit"
        assert problem["available"] == 0
        assert problem["detail"] == (
            f"Customer {encode('customer', customer.id)} has no EUR credit to apply. Add "
            "credit first."
        )

    async def test_more_than_remaining_refused(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        await adjust(client, auth, customer, 50000)
        invoice = await create_open_invoice(client, auth, customer)
        await pay(client, auth, invoice, 9000)

        response = await apply_credit(client, auth, invoice, amount=1001)

        assert response.status_code == 409, response.text
        assert response.json()["amount_remaining"] == 1000
        assert await ledger_count(session) == 1

    async def test_null_amount_rejected(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        await adjust(client, auth, customer, 5000)
        invoice = await create_open_invoice(client, auth, customer)

        response = await apply_credit(client, auth, invoice, amount=None)

        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["errors"][0]["field"] == "amount"
        assert problem["errors"][0]["code"] == "null_not_allowed"
        assert (await fetch_invoice(client, auth, invoice))["amount_due"] == 10000
        assert await ledger_count(session) == 1

    async def test_currency_mismatch_changes_nothing(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        await adjust(client, auth, customer, 5000, currency="USD")
        invoice = await create_open_invoice(client, auth, customer)

        wrong = await apply_credit(client, auth, invoice, currency="USD")
        none_in_eur = await apply_credit(client, auth, invoice)

        assert wrong.status_code == 422, wrong.text
        assert wrong.json()["errors"][0]["field"] == "currency"
        assert none_in_eur.status_code == 409, none_in_eur.text
        assert none_in_eur.json()["currency"] == "EUR"
        assert (await fetch_invoice(client, auth, invoice))["amount_due"] == 10000
        assert await ledger_count(session) == 1

    async def test_paid_invoice_refused(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        await adjust(client, auth, customer, 5000)
        invoice = await create_open_invoice(client, auth, customer)
        await pay(client, auth, invoice, 10000)

        response = await apply_credit(client, auth, invoice)

        assert response.status_code == 409, response.text
        assert response.json()["current_status"] == "paid"


class TestAdjustments:
    async def test_add_and_remove(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)

        added = await adjust(client, auth, customer, 2500)
        removed = await adjust(client, auth, customer, -500, description="Typo")

        assert added.status_code == 201, added.text
        assert removed.status_code == 201, removed.text
        row = removed.json()
        assert row["object"] == "customer_credit_transaction"
        assert row["source"] == "adjustment"
        assert row["currency"] == "EUR"
        assert row["description"] == "Typo"
        assert (
            await customer_balance(client, auth, encode("customer", customer.id))
            == 2000
        )

    async def test_overdraw_refused(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        await adjust(client, auth, customer, 100)

        response = await adjust(client, auth, customer, -101)

        assert response.status_code == 409, response.text
        assert response.json()["available"] == 100
        assert await ledger_count(session) == 1

    async def test_zero_and_missing_reason_refused(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)

        zero = await adjust(client, auth, customer, 0)
        no_reason = await client.post(
            f"/v1/customers/{encode('customer', customer.id)}/credit-transactions",
            json={"amount": 100},
            headers=auth,
        )

        assert zero.status_code == 422, zero.text
        assert zero.json()["errors"][0]["field"] == "amount"
        assert no_reason.status_code == 422
        assert no_reason.json()["errors"][0]["field"] == "description"
        assert await ledger_count(session) == 0


class TestBalances:
    async def test_void_takes_credit_back(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        await pay(client, auth, invoice, 10000)
        note = await credited(client, auth, invoice, amount=2500)
        assert note["amount_credited"] == 2500

        response = await client.post(
            f"/v1/credit-notes/{note['id']}/void", headers=auth
        )

        assert response.status_code == 200, response.text
        assert await customer_balance(client, auth, invoice["customer_id"]) == 0
        listed = await client.get(
            f"/v1/customers/{invoice['customer_id']}/credit-transactions",
            params={"source": "credit_note"},
            headers=auth,
        )
        assert [row["amount"] for row in listed.json()["data"]] == [-2500, 2500]
        after = await fetch_invoice(client, auth, invoice)
        assert after["post_payment_credit_notes_amount"] == 0

    async def test_customer_list_includes_ledger(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        await adjust(client, auth, customer, 1234)

        response = await client.get("/v1/customers", headers=auth)

        assert response.status_code == 200, response.text
        balances = {row["id"]: row["credit_balance"] for row in response.json()["data"]}
        assert balances[encode("customer", customer.id)] == 1234

    async def test_per_currency_own_first(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        await adjust(client, auth, customer, 700, currency="USD")
        invoice = await create_open_invoice(client, auth, customer)
        await pay(client, auth, invoice, 10250)

        response = await client.get(
            f"/v1/customers/{encode('customer', customer.id)}/credit-balances",
            headers=auth,
        )

        assert response.status_code == 200, response.text
        assert response.json()["data"] == [
            {"currency": "EUR", "amount": 250},
            {"currency": "USD", "amount": 700},
        ]

    async def test_transactions_filter(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        await adjust(client, auth, customer, 700, currency="USD")
        await adjust(client, auth, customer, 300)

        response = await client.get(
            f"/v1/customers/{encode('customer', customer.id)}/credit-transactions",
            params={"currency": "USD"},
            headers=auth,
        )

        assert [row["amount"] for row in response.json()["data"]] == [700]
