"""Refunding a Stripe payment through the API, which refunds it in Stripe too."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import Database
from app.core.jobs import JobQueue
from app.models import Refund, Workspace
from app.settings import Settings
from tests.billing.factories import create_customer, create_open_invoice, stripe_body
from tests.billing.stripe_standin import StripeStandIn
from tests.billing.test_stripe import receive_and_process
from tests.billing.test_stripe_charges import INTENT, charge, pay_by_stripe


@pytest.fixture
def stripe_ctx(
    database: Database, queue: JobQueue, stripe_settings: Settings
) -> dict[str, Any]:
    return {"db": database, "queue": queue, "settings": stripe_settings}


async def stripe_payment(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    session: AsyncSession,
    workspace: Workspace,
    ctx: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    customer = await create_customer(session, workspace.id)
    invoice = await create_open_invoice(client, auth, customer)
    await pay_by_stripe(client, session, ctx, invoice)
    [payment] = (await client.get("/v1/payments", headers=auth)).json()["data"]
    return invoice, payment


class TestRefundStripePayment:
    async def test_refunded_in_stripe_once(
        self,
        stripe_client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        stripe_ctx: dict[str, Any],
        stripe_api: StripeStandIn,
    ) -> None:
        invoice, payment = await stripe_payment(
            stripe_client, auth, session, workspace, stripe_ctx
        )

        response = await stripe_client.post(
            f"/v1/payments/{payment['id']}/refunds", json={"amount": 3000}, headers=auth
        )
        webhook = await receive_and_process(
            stripe_client,
            session,
            stripe_ctx,
            stripe_body("charge.refunded", charge(3000, "re_standin_1")),
        )

        assert response.status_code == 201, response.text
        created = response.json()
        assert created["provider"] == "stripe"
        assert created["provider_refund_id"] == "re_standin_1"
        [sent] = [item for item in stripe_api.requests if item.path == "/v1/refunds"]
        assert sent.form["payment_intent"] == INTENT
        assert sent.form["amount"] == "3000"
        assert sent.form["metadata[refund_id]"] == created["id"]
        assert webhook.status == "ignored"
        stored = (
            await stripe_client.get(f"/v1/payments/{payment['id']}", headers=auth)
        ).json()
        assert stored["amount_refunded"] == 3000
        reopened = (
            await stripe_client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
        ).json()
        assert reopened["status"] == "open"
        assert reopened["amount_paid"] == 7000

    async def test_stripe_failure_changes_nothing(
        self,
        stripe_client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        stripe_ctx: dict[str, Any],
        stripe_api: StripeStandIn,
    ) -> None:
        invoice, payment = await stripe_payment(
            stripe_client, auth, session, workspace, stripe_ctx
        )
        stripe_api.fail_with = 400

        response = await stripe_client.post(
            f"/v1/payments/{payment['id']}/refunds", json={}, headers=auth
        )

        assert response.status_code == 503
        assert response.json()["code"] == "provider_api_failed"
        assert await session.scalar(select(func.count()).select_from(Refund)) == 0
        stored = (
            await stripe_client.get(f"/v1/payments/{payment['id']}", headers=auth)
        ).json()
        assert stored["amount_refunded"] == 0
        unchanged = (
            await stripe_client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
        ).json()
        assert unchanged["status"] == "paid"
