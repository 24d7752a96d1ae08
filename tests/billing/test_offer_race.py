"""Concurrent redemptions of one offer code, on separate committed connections."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import httpx
from sqlalchemy import func, select, update

from app.core import ids
from app.models import Customer, Invoice, Offer, OfferCode, OfferRedemption
from tests.billing.conftest import Committed
from tests.billing.factories import create_invoice

CONCURRENCY = 6


async def issue_code(
    committed: Committed, *, single_use: bool = True, **offer_fields: object
) -> str:
    """Give the committed customer a source lead holding a code; return the code."""
    response = await committed.client.post(
        "/v1/leads", json={"email": "ada@example.com"}, headers=committed.auth
    )
    assert response.status_code == 201, response.text
    lead_id = ids.decode("lead", response.json()["id"])
    async with committed.database.session() as session:
        offer = Offer(
            id=ids.new_uuid(),
            workspace_id=committed.workspace_id,
            name="Race",
            status="active",
            discount_kind="percent",
            percent_off=Decimal(10),
            single_use=single_use,
            code_prefix="",
            **offer_fields,
        )
        session.add(offer)
        await session.flush()
        session.add(
            OfferCode(
                id=ids.new_uuid(),
                workspace_id=committed.workspace_id,
                offer_id=offer.id,
                lead_id=lead_id,
                code="RACE2345",
                status="issued",
                issued_at=datetime.now(UTC),
            )
        )
        await session.execute(
            update(Customer)
            .where(Customer.id == committed.customer.id)
            .values(source_lead_id=lead_id)
        )
        await session.commit()
    return "RACE2345"


async def redeem_at_once(committed: Committed, code: str) -> list[httpx.Response]:
    """Create CONCURRENCY drafts, then redeem ``code`` on all of them at once."""
    client, auth = committed.client, committed.auth
    drafts = [
        await create_invoice(client, auth, committed.customer)
        for _ in range(CONCURRENCY)
    ]
    return await asyncio.gather(
        *(
            client.post(
                f"/v1/invoices/{draft['id']}/redeem-offer",
                json={"code": code},
                headers=auth,
            )
            for draft in drafts
        )
    )


async def count_discounts(committed: Committed) -> tuple[int, int]:
    """Return the applied redemptions and the invoices with a discount."""
    async with committed.database.session() as session:
        applied = await session.scalar(
            select(func.count()).where(
                OfferRedemption.workspace_id == committed.workspace_id,
                OfferRedemption.status == "applied",
            )
        )
        discounted = await session.scalar(
            select(func.count()).where(
                Invoice.workspace_id == committed.workspace_id,
                Invoice.total_discount > 0,
            )
        )
    return int(applied or 0), int(discounted or 0)


class TestConcurrentRedeem:
    async def test_single_use_code_once(self, committed: Committed) -> None:
        code = await issue_code(committed)

        responses = await redeem_at_once(committed, code)

        statuses = sorted(response.status_code for response in responses)
        assert statuses == [200] + [409] * (CONCURRENCY - 1)
        conflicts = {
            response.json()["code"]
            for response in responses
            if response.status_code == 409
        }
        assert conflicts == {"offer_already_redeemed"}
        assert await count_discounts(committed) == (1, 1)

    async def test_max_redemptions_not_exceeded(self, committed: Committed) -> None:
        code = await issue_code(committed, single_use=False, max_redemptions=2)

        responses = await redeem_at_once(committed, code)

        statuses = sorted(response.status_code for response in responses)
        assert statuses == [200, 200] + [409] * (CONCURRENCY - 2)
        conflicts = {
            response.json()["code"]
            for response in responses
            if response.status_code == 409
        }
        assert conflicts == {"offer_redemption_limit"}
        assert await count_discounts(committed) == (2, 2)
