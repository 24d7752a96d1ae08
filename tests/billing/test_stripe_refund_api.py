"""Refunding a Stripe payment through the API, which refunds it in Stripe too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.providers.stripe_api import MAX_NETWORK_RETRIES
from app.core import ids
from app.core.db import Database
from app.core.jobs import JobQueue
from app.models import ProviderEvent, Refund, Workspace
from app.settings import Settings
from tests.billing.factories import (
    create_customer,
    create_open_invoice,
    payment_intent,
    stripe_body,
)
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
        assert sent.form["metadata[payment_id]"] == payment["id"]
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
        stripe_api.fail_with = 500

        response = await stripe_client.post(
            f"/v1/payments/{payment['id']}/refunds", json={}, headers=auth
        )

        assert response.status_code == 503
        assert response.json()["code"] == "provider_api_failed"
        assert response.headers["Retry-After"] == "30"
        assert await session.scalar(select(func.count()).select_from(Refund)) == 0
        stored = (
            await stripe_client.get(f"/v1/payments/{payment['id']}", headers=auth)
        ).json()
        assert stored["amount_refunded"] == 0
        unchanged = (
            await stripe_client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
        ).json()
        assert unchanged["status"] == "paid"

    async def test_retry_after_lost_response(
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
        # Every attempt of the first request, the library's retries included, is
        # carried out by Stripe but its response is lost.
        stripe_api.drop_refund_responses = 1 + MAX_NETWORK_RETRIES
        url = f"/v1/payments/{payment['id']}/refunds"

        lost = await stripe_client.post(url, json={"amount": 3000}, headers=auth)
        retried = await stripe_client.post(url, json={"amount": 3000}, headers=auth)
        webhook = await receive_and_process(
            stripe_client,
            session,
            stripe_ctx,
            stripe_body("charge.refunded", charge(3000, "re_standin_1")),
        )

        assert lost.status_code == 503, lost.text
        assert retried.status_code == 201, retried.text
        assert retried.json()["provider_refund_id"] == "re_standin_1"
        assert webhook.status == "ignored"
        stored = (await stripe_client.get(url, headers=auth)).json()["data"]
        assert [item["provider_refund_id"] for item in stored] == ["re_standin_1"]
        reopened = (
            await stripe_client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
        ).json()
        assert reopened["amount_paid"] == 7000

    async def test_retry_after_webhook_recorded(
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
        stripe_api.drop_refund_responses = 1 + MAX_NETWORK_RETRIES
        url = f"/v1/payments/{payment['id']}/refunds"
        headers = {**auth, "Idempotency-Key": "refund-3000"}

        lost = await stripe_client.post(url, json={"amount": 3000}, headers=headers)
        webhook = await receive_and_process(
            stripe_client,
            session,
            stripe_ctx,
            stripe_body("charge.refunded", charge(3000, "re_standin_1")),
        )
        retried = await stripe_client.post(url, json={"amount": 3000}, headers=headers)
        replayed = await stripe_client.post(url, json={"amount": 3000}, headers=headers)

        assert lost.status_code == 503, lost.text
        assert webhook.status == "processed", webhook.error
        assert retried.status_code == 201, retried.text
        assert retried.json()["provider_refund_id"] == "re_standin_1"
        assert retried.json()["amount"] == 3000
        assert replayed.status_code == 201, replayed.text
        assert replayed.headers["Idempotent-Replayed"] == "true"
        assert replayed.json() == retried.json()
        sent = [item for item in stripe_api.requests if item.path == "/v1/refunds"]
        assert len({item.headers["Idempotency-Key"] for item in sent}) == 1
        stored = (await stripe_client.get(url, headers=auth)).json()["data"]
        assert [item["provider_refund_id"] for item in stored] == ["re_standin_1"]
        assert stored[0]["id"] == retried.json()["id"]
        refunded = (
            await stripe_client.get(f"/v1/payments/{payment['id']}", headers=auth)
        ).json()
        assert refunded["amount_refunded"] == 3000
        reopened = (
            await stripe_client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
        ).json()
        assert reopened["amount_paid"] == 7000

    async def test_same_key_other_amount(
        self,
        stripe_client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        stripe_ctx: dict[str, Any],
        stripe_api: StripeStandIn,
    ) -> None:
        _, payment = await stripe_payment(
            stripe_client, auth, session, workspace, stripe_ctx
        )
        stripe_api.drop_refund_responses = 1 + MAX_NETWORK_RETRIES
        url = f"/v1/payments/{payment['id']}/refunds"
        headers = {**auth, "Idempotency-Key": "refund-once"}

        lost = await stripe_client.post(url, json={"amount": 3000}, headers=headers)
        other = await stripe_client.post(url, json={"amount": 2000}, headers=headers)

        assert lost.status_code == 503, lost.text
        assert other.status_code == 422, other.text
        assert other.json()["code"] == "idempotency_key_reused"
        created = {
            item.form["amount"]
            for item in stripe_api.requests
            if item.path == "/v1/refunds"
        }
        assert created == {"3000", "2000"}
        assert await session.scalar(select(func.count()).select_from(Refund)) == 0

    async def test_retry_of_full_refund(
        self,
        stripe_client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        stripe_ctx: dict[str, Any],
        stripe_api: StripeStandIn,
    ) -> None:
        _, payment = await stripe_payment(
            stripe_client, auth, session, workspace, stripe_ctx
        )
        stripe_api.drop_refund_responses = 1 + MAX_NETWORK_RETRIES
        url = f"/v1/payments/{payment['id']}/refunds"
        headers = {**auth, "Idempotency-Key": "refund-all"}

        lost = await stripe_client.post(url, headers=headers)
        webhook = await receive_and_process(
            stripe_client,
            session,
            stripe_ctx,
            stripe_body("charge.refunded", charge(10000, "re_standin_1")),
        )
        retried = await stripe_client.post(url, headers=headers)

        assert lost.status_code == 503, lost.text
        assert webhook.status == "processed", webhook.error
        assert retried.status_code == 409, retried.text
        assert retried.json()["code"] == "refund_exceeds_refundable"
        sent = [item for item in stripe_api.requests if item.path == "/v1/refunds"]
        assert len(sent) == 1 + MAX_NETWORK_RETRIES
        stored = (await stripe_client.get(url, headers=auth)).json()["data"]
        assert [item["provider_refund_id"] for item in stored] == ["re_standin_1"]

    async def test_keys_scoped_to_payment(
        self,
        stripe_client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        stripe_ctx: dict[str, Any],
        stripe_api: StripeStandIn,
    ) -> None:
        _, payment = await stripe_payment(
            stripe_client, auth, session, workspace, stripe_ctx
        )
        url = f"/v1/payments/{payment['id']}/refunds"

        first = await stripe_client.post(
            url, json={"amount": 500}, headers={**auth, "Idempotency-Key": "a"}
        )
        second = await stripe_client.post(
            url, json={"amount": 500}, headers={**auth, "Idempotency-Key": "b"}
        )
        unkeyed = await stripe_client.post(url, json={"amount": 500}, headers=auth)

        assert first.status_code == 201, first.text
        assert second.status_code == 201, second.text
        assert unkeyed.status_code == 201, unkeyed.text
        provider_ids = {
            first.json()["provider_refund_id"],
            second.json()["provider_refund_id"],
            unkeyed.json()["provider_refund_id"],
        }
        assert len(provider_ids) == 3
        sent = [item for item in stripe_api.requests if item.path == "/v1/refunds"]
        keys = [item.headers["Idempotency-Key"] for item in sent]
        assert len(set(keys)) == 3
        payment_uuid = ids.decode("payment", payment["id"])
        for key in keys[:2]:
            assert key.startswith(f"refund-request:{workspace.id}:{payment_uuid}:")

    async def test_below_minimum_charge(
        self,
        stripe_client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        stripe_ctx: dict[str, Any],
        stripe_api: StripeStandIn,
    ) -> None:
        customer = await create_customer(session, workspace.id, currency="USD")
        invoice = await create_open_invoice(
            stripe_client, auth, customer, currency="USD"
        )
        body = stripe_body(
            "payment_intent.succeeded",
            payment_intent(invoice["id"], 10000, currency="usd", intent_id=INTENT),
        )
        await receive_and_process(stripe_client, session, stripe_ctx, body)
        [payment] = (await stripe_client.get("/v1/payments", headers=auth)).json()[
            "data"
        ]

        # Stripe's refund API takes any positive amount up to what the charge has
        # left; the minimum of 0.50 USD is for charges.
        response = await stripe_client.post(
            f"/v1/payments/{payment['id']}/refunds", json={"amount": 30}, headers=auth
        )

        assert response.status_code == 201, response.text
        [sent] = [item for item in stripe_api.requests if item.path == "/v1/refunds"]
        assert sent.form["amount"] == "30"
        stored = (
            await stripe_client.get(f"/v1/payments/{payment['id']}", headers=auth)
        ).json()
        assert stored["amount_refunded"] == 30

    async def test_stripe_rejection_is_409(
        self,
        stripe_client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        stripe_ctx: dict[str, Any],
        stripe_api: StripeStandIn,
    ) -> None:
        _, payment = await stripe_payment(
            stripe_client, auth, session, workspace, stripe_ctx
        )
        stripe_api.fail_with = 400

        response = await stripe_client.post(
            f"/v1/payments/{payment['id']}/refunds", json={}, headers=auth
        )

        assert response.status_code == 409
        body = response.json()
        assert body["code"] == "provider_rejected"
        assert "stand-in failure" in body["detail"]
        assert "Retry-After" not in response.headers
        assert await session.scalar(select(func.count()).select_from(Refund)) == 0


def charge_with_amounts(refunded: int, *refunds: tuple[str, int]) -> dict[str, Any]:
    listed = charge(refunded)
    listed["refunds"]["data"] = [
        {"id": refund_id, "object": "refund", "amount": amount}
        for refund_id, amount in refunds
    ]
    return listed


@dataclass
class ApiRefunded:
    """A Stripe payment of 10000 with a refund of 500 made through the API."""

    client: httpx.AsyncClient
    auth: dict[str, str]
    session: AsyncSession
    ctx: dict[str, Any]
    payment: dict[str, Any]
    refund_id: str

    async def receive_refunded(self, charge_object: dict[str, Any]) -> ProviderEvent:
        body = stripe_body("charge.refunded", charge_object)
        return await receive_and_process(self.client, self.session, self.ctx, body)

    async def amount_refunded(self) -> int:
        path = f"/v1/payments/{self.payment['id']}"
        response = await self.client.get(path, headers=self.auth)
        assert response.status_code == 200, response.text
        amount: int = response.json()["amount_refunded"]
        return amount

    async def refunds(self) -> dict[str, int]:
        path = f"/v1/payments/{self.payment['id']}/refunds"
        response = await self.client.get(path, headers=self.auth)
        assert response.status_code == 200, response.text
        return {
            refund["provider_refund_id"]: refund["amount"]
            for refund in response.json()["data"]
        }


@pytest.fixture
async def api_refunded(
    stripe_client: httpx.AsyncClient,
    auth: dict[str, str],
    session: AsyncSession,
    workspace: Workspace,
    stripe_ctx: dict[str, Any],
    stripe_api: StripeStandIn,
) -> ApiRefunded:
    _, payment = await stripe_payment(
        stripe_client, auth, session, workspace, stripe_ctx
    )
    response = await stripe_client.post(
        f"/v1/payments/{payment['id']}/refunds", json={"amount": 500}, headers=auth
    )
    assert response.status_code == 201, response.text
    return ApiRefunded(
        client=stripe_client,
        auth=auth,
        session=session,
        ctx=stripe_ctx,
        payment=payment,
        refund_id=response.json()["provider_refund_id"],
    )


class TestRefundOutsideSalescycle:
    async def test_dashboard_refund_recorded(self, api_refunded: ApiRefunded) -> None:
        refunded = api_refunded

        before_api_refund = await refunded.receive_refunded(charge(300, "re_dashboard"))
        both = await refunded.receive_refunded(
            charge(800, refunded.refund_id, "re_dashboard")
        )

        assert refunded.refund_id == "re_standin_1"
        assert before_api_refund.status == "ignored"
        assert both.status == "processed", both.error
        assert await refunded.amount_refunded() == 800
        assert await refunded.refunds() == {"re_standin_1": 500, "re_dashboard": 300}

    async def test_listed_refunds_all_recorded(self, api_refunded: ApiRefunded) -> None:
        refunded = api_refunded

        row = await refunded.receive_refunded(charge(800, refunded.refund_id))

        assert row.status == "needs_review"
        assert row.error is not None
        assert "nothing was recorded" in row.error
        assert await refunded.amount_refunded() == 500

    async def test_two_refunds_split_by_amount(self, api_refunded: ApiRefunded) -> None:
        refunded = api_refunded
        body = charge_with_amounts(
            1000, ("re_second", 200), (refunded.refund_id, 500), ("re_first", 300)
        )

        row = await refunded.receive_refunded(body)

        assert row.status == "processed", row.error
        assert await refunded.refunds() == {
            "re_standin_1": 500,
            "re_first": 300,
            "re_second": 200,
        }
        assert await refunded.amount_refunded() == 1000

    async def test_two_refunds_without_amounts(self, api_refunded: ApiRefunded) -> None:
        refunded = api_refunded

        row = await refunded.receive_refunded(
            charge(1000, "re_second", refunded.refund_id, "re_first")
        )

        assert row.status == "needs_review"
        assert row.error is not None
        assert "re_first, re_second" in row.error
        assert await refunded.refunds() == {"re_standin_1": 500}

    async def test_refund_amount_differs(self, api_refunded: ApiRefunded) -> None:
        refunded = api_refunded
        body = charge_with_amounts(
            800, ("re_dashboard", 200), (refunded.refund_id, 500)
        )

        row = await refunded.receive_refunded(body)

        assert row.status == "needs_review"
        assert await refunded.refunds() == {"re_standin_1": 500}

    async def test_one_set_of_refunds_matches(self, api_refunded: ApiRefunded) -> None:
        refunded = api_refunded
        # Without a refund list, the first growth is stored under the charge's total.
        unlisted = await refunded.receive_refunded(charge(800))
        body = charge_with_amounts(
            1000, ("re_second", 200), (refunded.refund_id, 500), ("re_first", 300)
        )

        row = await refunded.receive_refunded(body)

        assert unlisted.status == "processed", unlisted.error
        assert row.status == "processed", row.error
        assert await refunded.refunds() == {
            "re_standin_1": 500,
            "ch_3Test0001:800": 300,
            "re_second": 200,
        }
        assert await refunded.amount_refunded() == 1000

    async def test_two_sets_of_refunds_match(self, api_refunded: ApiRefunded) -> None:
        refunded = api_refunded
        body = charge_with_amounts(
            800,
            ("re_third", 300),
            ("re_second", 150),
            ("re_first", 150),
            (refunded.refund_id, 500),
        )

        row = await refunded.receive_refunded(body)

        assert row.status == "needs_review"
        assert await refunded.refunds() == {"re_standin_1": 500}
