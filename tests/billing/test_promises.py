"""Pending promises to pay closed when their invoice stops collecting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Workspace
from tests.billing.debt_helpers import event_types, record_payment
from tests.billing.factories import create_customer, create_open_invoice
from tests.users.factories import create_user


@pytest.fixture
async def promised(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    session: AsyncSession,
    workspace: Workspace,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An open invoice of 10000 EUR and a pending promise to pay 4000 of it."""
    customer = await create_customer(session, workspace.id)
    invoice = await create_open_invoice(client, auth, customer)
    promised_date = datetime.now(UTC).date() + timedelta(days=5)
    response = await client.post(
        f"/v1/invoices/{invoice['id']}/promises-to-pay",
        json={"promised_date": promised_date.isoformat(), "amount": 4000},
        headers=auth,
    )
    assert response.status_code == 201, response.text
    return invoice, response.json()


async def promise_statuses(
    client: httpx.AsyncClient, auth: dict[str, str], invoice_id: str
) -> list[str]:
    response = await client.get(f"/v1/invoices/{invoice_id}/dunning", headers=auth)
    assert response.status_code == 200, response.text
    return [promise["status"] for promise in response.json()["promises_to_pay"]]


class TestClosePromise:
    async def test_void_cancels(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        promised: tuple[dict[str, Any], dict[str, Any]],
    ) -> None:
        invoice, promise = promised

        response = await client.post(f"/v1/invoices/{invoice['id']}/void", headers=auth)

        assert response.status_code == 200, response.text
        assert await promise_statuses(client, auth, invoice["id"]) == ["canceled"]
        assert await event_types(session, promise["id"], "promise_to_pay") == [
            "promise_to_pay.created",
            "promise_to_pay.canceled",
        ]
        state = await client.get(f"/v1/invoices/{invoice['id']}/dunning", headers=auth)
        assert state.json()["promises_to_pay"][0]["resolved_at"] is not None

    async def test_payment_keeps(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        promised: tuple[dict[str, Any], dict[str, Any]],
    ) -> None:
        invoice, promise = promised

        await record_payment(client, auth, invoice, invoice["total"])

        assert await promise_statuses(client, auth, invoice["id"]) == ["kept"]
        assert await event_types(session, promise["id"], "promise_to_pay") == [
            "promise_to_pay.created",
            "promise_to_pay.kept",
        ]

    async def test_partial_payment_leaves_pending(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        promised: tuple[dict[str, Any], dict[str, Any]],
    ) -> None:
        invoice, _ = promised

        await record_payment(client, auth, invoice, 1000)

        assert await promise_statuses(client, auth, invoice["id"]) == ["pending"]

    async def test_write_off_cancels(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        promised: tuple[dict[str, Any], dict[str, Any]],
    ) -> None:
        invoice, promise = promised
        requester = await create_user(client, auth)
        approver = await create_user(client, auth, role="manager")

        response = await client.post(
            f"/v1/invoices/{invoice['id']}/write-off",
            json={"reason": "Customer insolvent", "approver_id": approver["id"]},
            headers={**auth, "On-Behalf-Of": requester["id"]},
        )

        assert response.status_code == 200, response.text
        assert await promise_statuses(client, auth, invoice["id"]) == ["canceled"]
        assert await event_types(session, promise["id"], "promise_to_pay") == [
            "promise_to_pay.created",
            "promise_to_pay.canceled",
        ]
