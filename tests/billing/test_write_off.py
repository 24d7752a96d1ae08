"""Marking invoices uncollectible and writing them off, and paying them after."""

from __future__ import annotations

import importlib.util
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.models import CreditNote, Invoice, Workspace
from tests.billing.debt_helpers import event_types, record_payment
from tests.billing.factories import create_customer, create_invoice, create_open_invoice
from tests.users.factories import create_user

BACKFILL_MIGRATION = (
    Path(__file__).parents[2]
    / "migrations/versions/2026-12-05-2341_backfill_amount_paid_at_write_off.py"
)


@pytest.fixture
async def invoice(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    session: AsyncSession,
    workspace: Workspace,
) -> dict[str, Any]:
    customer = await create_customer(session, workspace.id)
    return await create_open_invoice(client, auth, customer)


@pytest.fixture
async def requester(client: httpx.AsyncClient, auth: dict[str, str]) -> str:
    user = await create_user(client, auth)
    user_id: str = user["id"]
    return user_id


@pytest.fixture
async def approver(client: httpx.AsyncClient, auth: dict[str, str]) -> dict[str, Any]:
    return await create_user(client, auth, role="manager")


async def write_off(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    invoice_id: str,
    body: dict[str, Any],
    **headers: str,
) -> httpx.Response:
    return await client.post(
        f"/v1/invoices/{invoice_id}/write-off", json=body, headers={**auth, **headers}
    )


def on_behalf_of(user_id: str) -> dict[str, str]:
    return {"On-Behalf-Of": user_id}


class TestMarkUncollectible:
    async def test_open_invoice(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        invoice: dict[str, Any],
    ) -> None:
        response = await client.post(
            f"/v1/invoices/{invoice['id']}/mark-uncollectible",
            json={"reason": "Customer went bankrupt"},
            headers=auth,
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "uncollectible"
        assert body["uncollectible_reason"] == "Customer went bankrupt"
        assert body["uncollectible_at"] is not None
        assert body["write_off"] is None
        types = await event_types(session, invoice["id"], "invoice")
        assert types[-1] == "invoice.marked_uncollectible"

    async def test_without_body(
        self, client: httpx.AsyncClient, auth: dict[str, str], invoice: dict[str, Any]
    ) -> None:
        response = await client.post(
            f"/v1/invoices/{invoice['id']}/mark-uncollectible", headers=auth
        )

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "uncollectible"
        assert response.json()["uncollectible_reason"] is None

    async def test_twice_conflicts(
        self, client: httpx.AsyncClient, auth: dict[str, str], invoice: dict[str, Any]
    ) -> None:
        url = f"/v1/invoices/{invoice['id']}/mark-uncollectible"
        await client.post(url, json={}, headers=auth)

        response = await client.post(url, json={}, headers=auth)

        assert response.status_code == 409
        assert response.json()["code"] == "invalid_transition"

    async def test_draft_conflicts(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        draft = await create_invoice(client, auth, customer)

        response = await client.post(
            f"/v1/invoices/{draft['id']}/mark-uncollectible", json={}, headers=auth
        )

        assert response.status_code == 409
        assert response.json()["current_status"] == "draft"

    async def test_stale_if_match(
        self, client: httpx.AsyncClient, auth: dict[str, str], invoice: dict[str, Any]
    ) -> None:
        response = await client.post(
            f"/v1/invoices/{invoice['id']}/mark-uncollectible",
            json={},
            headers={**auth, "If-Match": f'"{invoice["version"] + 5}"'},
        )

        assert response.status_code == 412


class TestWriteOff:
    async def test_records_amount_and_approver(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        invoice: dict[str, Any],
        requester: str,
        approver: dict[str, Any],
    ) -> None:
        await record_payment(client, auth, invoice, 2500, "cash")

        response = await write_off(
            client,
            auth,
            invoice["id"],
            {"reason": "Uneconomic to pursue", "approver_id": approver["id"]},
            **on_behalf_of(requester),
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "uncollectible"
        assert body["write_off"]["amount"] == invoice["total"] - 2500
        assert body["write_off"]["amount_recovered"] == 0
        assert body["write_off"]["reason"] == "Uneconomic to pursue"
        assert body["write_off"]["approved_by"] == approver["id"]
        assert body["write_off"]["requested_by"] == requester
        types = await event_types(session, invoice["id"], "invoice")
        assert types[-1] == "invoice.written_off"

    async def test_payment_after_pays(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        invoice: dict[str, Any],
        requester: str,
        approver: dict[str, Any],
    ) -> None:
        await write_off(
            client,
            auth,
            invoice["id"],
            {"reason": "Gone quiet", "approver_id": approver["id"]},
            **on_behalf_of(requester),
        )

        paid = await client.post(
            "/v1/payments",
            json={
                "customer_id": invoice["customer_id"],
                "amount": invoice["total"],
                "currency": invoice["currency"],
                "method": "bank_transfer",
                "invoice_id": invoice["id"],
            },
            headers=auth,
        )

        assert paid.status_code == 201, paid.text
        after = await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
        body = after.json()
        assert body["status"] == "paid"
        assert body["write_off"]["amount"] == invoice["total"]
        assert body["write_off"]["amount_recovered"] == invoice["total"]

    async def test_approver_is_requester(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        invoice: dict[str, Any],
    ) -> None:
        user = await create_user(client, auth, role="manager")

        response = await write_off(
            client,
            auth,
            invoice["id"],
            {"reason": "Gone quiet", "approver_id": user["id"]},
            **on_behalf_of(user["id"]),
        )

        assert response.status_code == 422
        problem = response.json()
        assert problem["code"] == "approver_is_requester"
        assert problem["errors"][0]["field"] == "approver_id"
        current = await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
        assert current.json()["status"] == "open"
        assert "invoice.written_off" not in await event_types(
            session, invoice["id"], "invoice"
        )

    @pytest.mark.parametrize(
        "headers", [{}, {"On-Behalf-Of": "Jane from accounts"}], ids=["none", "text"]
    )
    async def test_requester_required(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        invoice: dict[str, Any],
        approver: dict[str, Any],
        headers: dict[str, str],
    ) -> None:
        response = await write_off(
            client,
            auth,
            invoice["id"],
            {"reason": "Gone quiet", "approver_id": approver["id"]},
            **headers,
        )

        assert response.status_code == 422
        problem = response.json()
        assert problem["code"] == "requester_required"
        assert problem["errors"][0]["field"] == "header.On-Behalf-Of"
        assert "On-Behalf-Of" in problem["detail"]
        current = await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
        assert current.json()["status"] == "open"
        assert current.json()["write_off"] is None
        assert "invoice.written_off" not in await event_types(
            session, invoice["id"], "invoice"
        )

    async def test_rep_cannot_approve(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        invoice: dict[str, Any],
        requester: str,
    ) -> None:
        rep = await create_user(client, auth, role="rep")

        response = await write_off(
            client,
            auth,
            invoice["id"],
            {"reason": "Gone quiet", "approver_id": rep["id"]},
            **on_behalf_of(requester),
        )

        assert response.status_code == 422
        problem = response.json()
        assert problem["code"] == "approver_not_permitted"
        assert problem["errors"][0]["field"] == "approver_id"
        assert problem["approver_role"] == "rep"
        assert problem["allowed_roles"] == ["manager", "admin"]
        current = await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
        assert current.json()["write_off"] is None

    async def test_admin_approves(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        invoice: dict[str, Any],
        requester: str,
    ) -> None:
        admin = await create_user(client, auth, role="admin")

        response = await write_off(
            client,
            auth,
            invoice["id"],
            {"reason": "Gone quiet", "approver_id": admin["id"]},
            **on_behalf_of(requester),
        )

        assert response.status_code == 200, response.text
        assert response.json()["write_off"]["approved_by"] == admin["id"]

    async def test_inactive_approver(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        invoice: dict[str, Any],
        requester: str,
        approver: dict[str, Any],
    ) -> None:
        deactivated = await client.patch(
            f"/v1/users/{approver['id']}", json={"active": False}, headers=auth
        )
        assert deactivated.status_code == 200, deactivated.text

        response = await write_off(
            client,
            auth,
            invoice["id"],
            {"reason": "Gone quiet", "approver_id": approver["id"]},
            **on_behalf_of(requester),
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "approver_id"

    async def test_unknown_approver(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        invoice: dict[str, Any],
        requester: str,
    ) -> None:
        response = await write_off(
            client,
            auth,
            invoice["id"],
            {"reason": "Gone quiet", "approver_id": "usr_" + "0" * 26},
            **on_behalf_of(requester),
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "user_not_found"

    async def test_reason_required(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        invoice: dict[str, Any],
        requester: str,
        approver: dict[str, Any],
    ) -> None:
        response = await write_off(
            client,
            auth,
            invoice["id"],
            {"approver_id": approver["id"]},
            **on_behalf_of(requester),
        )

        assert response.status_code == 422
        assert "reason" in response.text

    async def test_twice_conflicts(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        invoice: dict[str, Any],
        requester: str,
        approver: dict[str, Any],
    ) -> None:
        body = {"reason": "Gone quiet", "approver_id": approver["id"]}
        headers = on_behalf_of(requester)
        first = await write_off(client, auth, invoice["id"], body, **headers)
        assert first.status_code == 200, first.text

        second = await write_off(client, auth, invoice["id"], body, **headers)

        assert second.status_code == 409
        assert second.json()["code"] == "invoice_already_written_off"

    async def test_paid_invoice_conflicts(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        invoice: dict[str, Any],
        requester: str,
        approver: dict[str, Any],
    ) -> None:
        await record_payment(client, auth, invoice, invoice["total"], "cash")

        response = await write_off(
            client,
            auth,
            invoice["id"],
            {"reason": "Gone quiet", "approver_id": approver["id"]},
            **on_behalf_of(requester),
        )

        assert response.status_code == 409
        assert response.json()["code"] == "invalid_transition"


class TestUnpaidAgain:
    async def test_refund_after_write_off(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        invoice: dict[str, Any],
        requester: str,
        approver: dict[str, Any],
    ) -> None:
        written_off = await write_off(
            client,
            auth,
            invoice["id"],
            {"reason": "Gone quiet", "approver_id": approver["id"]},
            **on_behalf_of(requester),
        )
        assert written_off.status_code == 200, written_off.text
        payment = await record_payment(client, auth, invoice, invoice["total"])

        refunded = await client.post(
            f"/v1/payments/{payment['id']}/refunds", json={}, headers=auth
        )

        assert refunded.status_code == 201, refunded.text
        body = (await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)).json()
        assert body["status"] == "uncollectible"
        assert body["payment_status"] == "unpaid"
        assert body["paid_at"] is None
        assert body["uncollectible_at"] is not None
        assert body["write_off"]["amount"] == invoice["total"]
        assert body["write_off"]["amount_recovered"] == 0

    async def test_allocation_removed_after_mark(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        invoice: dict[str, Any],
    ) -> None:
        marked = await client.post(
            f"/v1/invoices/{invoice['id']}/mark-uncollectible", json={}, headers=auth
        )
        assert marked.status_code == 200, marked.text
        payment = await record_payment(client, auth, invoice, invoice["total"])
        paid = (await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)).json()
        assert paid["status"] == "paid"

        removed = await client.delete(
            f"/v1/payments/{payment['id']}/allocations/{invoice['id']}", headers=auth
        )

        assert removed.status_code == 200, removed.text
        body = (await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)).json()
        assert body["status"] == "uncollectible"
        assert body["payment_status"] == "unpaid"
        assert body["write_off"] is None

    async def test_refund_of_open_invoice(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        invoice: dict[str, Any],
    ) -> None:
        payment = await record_payment(client, auth, invoice, invoice["total"])

        refunded = await client.post(
            f"/v1/payments/{payment['id']}/refunds", json={}, headers=auth
        )

        assert refunded.status_code == 201, refunded.text
        body = (await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)).json()
        assert body["status"] == "open"
        assert body["uncollectible_at"] is None


async def reduce_by_credit_note(
    client: httpx.AsyncClient, auth: dict[str, str], invoice_id: str, amount: int
) -> dict[str, Any]:
    response = await client.post(
        f"/v1/invoices/{invoice_id}/credit-notes",
        json={"reason": "other", "amount": amount, "amount_to_reduce": amount},
        headers=auth,
    )
    assert response.status_code == 201, response.text
    note: dict[str, Any] = response.json()
    return note


async def apply_credit(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    invoice: dict[str, Any],
    amount: int,
) -> dict[str, Any]:
    """Give the customer ``amount`` of credit and apply it to the invoice."""
    adjusted = await client.post(
        f"/v1/customers/{invoice['customer_id']}/credit-transactions",
        json={"amount": amount, "description": "Goodwill"},
        headers=auth,
    )
    assert adjusted.status_code == 201, adjusted.text
    applied = await client.post(
        f"/v1/invoices/{invoice['id']}/apply-credit",
        json={"amount": amount},
        headers=auth,
    )
    assert applied.status_code == 200, applied.text
    body: dict[str, Any] = applied.json()
    return body


class TestAmountRecovered:
    async def test_credit_recovers_nothing(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        invoice: dict[str, Any],
        requester: str,
        approver: dict[str, Any],
    ) -> None:
        await record_payment(client, auth, invoice, 2000)
        written_off = await write_off(
            client,
            auth,
            invoice["id"],
            {"reason": "Gone quiet", "approver_id": approver["id"]},
            **on_behalf_of(requester),
        )
        assert written_off.status_code == 200, written_off.text
        assert written_off.json()["write_off"]["amount"] == invoice["total"] - 2000

        await reduce_by_credit_note(client, auth, invoice["id"], 5000)
        after_note = await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
        await record_payment(client, auth, invoice, 1000)
        after_payment = await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
        after_credit = await apply_credit(client, auth, invoice, 2000)

        assert after_note.json()["write_off"]["amount_recovered"] == 0
        assert after_payment.json()["write_off"]["amount_recovered"] == 1000
        assert after_credit["status"] == "paid"
        assert after_credit["write_off"]["amount_recovered"] == 1000

    async def test_refund_of_earlier_payment(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        invoice: dict[str, Any],
        requester: str,
        approver: dict[str, Any],
    ) -> None:
        payment = await record_payment(client, auth, invoice, 2000)
        await write_off(
            client,
            auth,
            invoice["id"],
            {"reason": "Gone quiet", "approver_id": approver["id"]},
            **on_behalf_of(requester),
        )

        refunded = await client.post(
            f"/v1/payments/{payment['id']}/refunds", json={}, headers=auth
        )
        await record_payment(client, auth, invoice, 3000)

        assert refunded.status_code == 201, refunded.text
        body = (await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)).json()
        assert body["amount_paid"] == 3000
        assert body["write_off"]["amount_recovered"] == 1000

    async def test_backfill_of_existing_rows(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        invoice: dict[str, Any],
        requester: str,
        approver: dict[str, Any],
    ) -> None:
        await record_payment(client, auth, invoice, 2000)
        await reduce_by_credit_note(client, auth, invoice["id"], 1000)
        await apply_credit(client, auth, invoice, 500)
        written_off = await write_off(
            client,
            auth,
            invoice["id"],
            {"reason": "Gone quiet", "approver_id": approver["id"]},
            **on_behalf_of(requester),
        )
        assert written_off.json()["write_off"]["amount"] == 6500
        later_note = await reduce_by_credit_note(client, auth, invoice["id"], 3000)
        await apply_credit(client, auth, invoice, 500)
        await record_payment(client, auth, invoice, 1000)
        invoice_id = ids.decode("invoice", invoice["id"])
        written_off_at = await session.scalar(
            text("SELECT written_off_at FROM invoices WHERE id = :id"),
            {"id": invoice_id},
        )
        # The test's rows share one transaction, and a credit note's created_at is
        # that transaction's start, so the later note is moved past the write-off.
        await session.execute(
            update(CreditNote)
            .where(CreditNote.id == ids.decode("credit_note", later_note["id"]))
            .values(created_at=written_off_at + timedelta(seconds=1))
        )
        await session.execute(
            update(Invoice)
            .where(Invoice.id == invoice_id)
            .values(amount_paid_at_write_off=None)
        )

        await session.execute(text(backfill_statement()))
        await session.commit()

        stored = await session.scalar(
            text("SELECT amount_paid_at_write_off FROM invoices WHERE id = :id"),
            {"id": invoice_id},
        )
        assert stored == 2000
        body = (await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)).json()
        assert body["write_off"]["amount_recovered"] == 1000


def backfill_statement() -> str:
    """Load the UPDATE that the backfill migration runs."""
    spec = importlib.util.spec_from_file_location("backfill", BACKFILL_MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    statement: str = module.BACKFILL
    return statement
