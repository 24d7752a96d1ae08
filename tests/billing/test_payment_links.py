"""Payment links: Stripe Checkout Sessions created through a local Stripe stand-in."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.ids import encode
from app.models import Event, Workspace
from tests.billing.factories import create_customer, create_invoice, create_open_invoice
from tests.billing.stripe_standin import StripeStandIn
from tests.billing.test_allocations import pay


async def create_link(
    client: httpx.AsyncClient, auth: dict[str, str], invoice_id: str, **body: Any
) -> httpx.Response:
    return await client.post(
        f"/v1/invoices/{invoice_id}/payment-link", json=body or None, headers=auth
    )


class TestPaymentLink:
    async def test_checkout_session_stored(
        self,
        stripe_client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        stripe_api: StripeStandIn,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(stripe_client, auth, customer)
        await pay(
            stripe_client,
            auth,
            customer,
            2500,
            allocations=[{"invoice_id": invoice["id"], "amount": 2500}],
        )

        response = await create_link(
            stripe_client, auth, invoice["id"], success_url="https://shop.test/thanks"
        )

        assert response.status_code == 200, response.text
        link = response.json()
        assert link["url"] == "https://checkout.stripe.test/c/pay/cs_test_1"
        assert link["provider_session_id"] == "cs_test_1"
        assert link["amount"] == 7500
        assert link["currency"] == "EUR"
        [sent] = stripe_api.requests
        assert sent.headers["Authorization"] == "Bearer sk_test_standin"
        assert sent.form["mode"] == "payment"
        assert sent.form["line_items[0][price_data][unit_amount]"] == "7500"
        assert sent.form["line_items[0][price_data][currency]"] == "eur"
        assert sent.form["success_url"] == "https://shop.test/thanks"
        assert sent.form["metadata[invoice_id]"] == invoice["id"]
        assert sent.form["payment_intent_data[metadata][invoice_id]"] == invoice["id"]
        assert sent.form["payment_intent_data[metadata][workspace_id]"] == encode(
            "workspace", workspace.id
        )
        assert sent.headers["Idempotency-Key"].startswith(
            f"payment-link:{invoice['id']}:7500:"
        )
        stored = (
            await stripe_client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
        ).json()
        assert stored["payment_link_url"] == link["url"]
        types = list(await session.scalars(select(Event.type).order_by(Event.id)))
        assert types[-1] == "invoice.updated"

    async def test_repeat_returns_same_session(
        self,
        stripe_client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(stripe_client, auth, customer)
        first = (await create_link(stripe_client, auth, invoice["id"])).json()
        events_before = list(await session.scalars(select(Event.id)))

        second = await create_link(stripe_client, auth, invoice["id"])

        assert second.status_code == 200
        assert second.json() == first
        events_after = list(await session.scalars(select(Event.id)))
        assert events_after == events_before

    async def test_new_session_after_refund(
        self,
        stripe_client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        stripe_api: StripeStandIn,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(stripe_client, auth, customer)
        first = await create_link(stripe_client, auth, invoice["id"])
        paid = await pay(stripe_client, auth, customer, 10000, invoice_id=invoice["id"])
        refunded = await stripe_client.post(
            f"/v1/payments/{paid.json()['id']}/refunds", headers=auth
        )

        second = await create_link(stripe_client, auth, invoice["id"])
        repeated = await create_link(stripe_client, auth, invoice["id"])

        assert first.status_code == 200, first.text
        assert paid.status_code == 201, paid.text
        assert refunded.status_code == 201, refunded.text
        assert second.status_code == 200, second.text
        assert second.json()["amount"] == first.json()["amount"]
        assert (
            second.json()["provider_session_id"] != first.json()["provider_session_id"]
        )
        assert repeated.status_code == 200, repeated.text
        assert repeated.json() == second.json()
        keys = [item.headers["Idempotency-Key"] for item in stripe_api.requests]
        assert keys[0] != keys[1]
        assert keys[1] == keys[2]
        stored = (
            await stripe_client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
        ).json()
        assert stored["payment_link_url"] == second.json()["url"]

    async def test_new_session_after_removed_allocation(
        self,
        stripe_client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(stripe_client, auth, customer)
        first = await create_link(stripe_client, auth, invoice["id"])
        paid = await pay(stripe_client, auth, customer, 4000, invoice_id=invoice["id"])
        removed = await stripe_client.delete(
            f"/v1/payments/{paid.json()['id']}/allocations/{invoice['id']}",
            headers=auth,
        )

        second = await create_link(stripe_client, auth, invoice["id"])

        assert paid.status_code == 201, paid.text
        assert removed.status_code == 200, removed.text
        assert second.status_code == 200, second.text
        assert second.json()["amount"] == first.json()["amount"]
        assert (
            second.json()["provider_session_id"] != first.json()["provider_session_id"]
        )

    async def test_other_redirect_urls(
        self,
        stripe_client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        stripe_api: StripeStandIn,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(stripe_client, auth, customer)
        first = await create_link(
            stripe_client, auth, invoice["id"], success_url="https://shop.test/a"
        )

        second = await create_link(
            stripe_client, auth, invoice["id"], success_url="https://shop.test/b"
        )

        assert first.status_code == 200, first.text
        assert second.status_code == 200, second.text
        assert (
            second.json()["provider_session_id"] != first.json()["provider_session_id"]
        )
        assert stripe_api.requests[-1].form["success_url"] == "https://shop.test/b"
        stored = (
            await stripe_client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
        ).json()
        assert stored["payment_link_url"] == second.json()["url"]

    async def test_not_collectable(
        self,
        stripe_client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        stripe_api: StripeStandIn,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        draft = await create_invoice(stripe_client, auth, customer)
        paid = await create_open_invoice(stripe_client, auth, customer)
        await pay(stripe_client, auth, customer, 10000, invoice_id=paid["id"])

        for invoice in (draft, paid):
            response = await create_link(stripe_client, auth, invoice["id"])

            assert response.status_code == 409
            assert response.json()["code"] == "invoice_not_collectable"
        assert stripe_api.requests == []

    async def test_stripe_failure_is_503(
        self,
        stripe_client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        stripe_api: StripeStandIn,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(stripe_client, auth, customer)
        stripe_api.fail_with = 400

        response = await create_link(stripe_client, auth, invoice["id"])

        assert response.status_code == 503
        assert response.json()["code"] == "provider_api_failed"
        stored = (
            await stripe_client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
        ).json()
        assert stored["payment_link_url"] is None

    async def test_not_configured(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)

        response = await create_link(client, auth, invoice["id"])

        assert response.status_code == 503
        assert response.json()["code"] == "provider_api_not_configured"

    async def test_invalid_redirect_url(
        self,
        stripe_client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(stripe_client, auth, customer)

        response = await create_link(
            stripe_client, auth, invoice["id"], success_url="javascript:alert(1)"
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "success_url"
