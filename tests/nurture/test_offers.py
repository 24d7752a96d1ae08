"""Offers: validation, codes issued by special-offer steps, redemption on invoices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.models import Event, Offer, OfferCode
from app.nurture.offer_invoices import split_by_rate
from app.nurture.offer_steps import CODE_ALPHABET, new_code
from app.nurture.offer_views import format_discount
from app.settings import Settings
from tests.nurture.conftest import (
    JsonObject,
    SmtpServer,
    create_lead,
    create_sequence,
    enroll,
)
from tests.nurture.test_runner import body_of, enrollment_uuid, make_due
from workers.tasks import run_enrollment_step

PERCENT = {"name": "Spring", "discount_kind": "percent", "percent_off": "15"}
OFFER_BODY = (
    "Hi {{ first_name }}, use {{ offer.code }} for {{ offer.discount }} off "
    "until {{ offer.expires_at | the end of the month }}."
)


async def create_offer(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: Any
) -> JsonObject:
    response = await client.post("/v1/offers", json={**PERCENT, **fields}, headers=auth)
    assert response.status_code == 201, response.text
    data: JsonObject = response.json()
    return data


def offer_step(offer_id: object, **fields: Any) -> JsonObject:
    return {
        "purpose": "special_offer",
        "subject": "A gift for you",
        "body_text": OFFER_BODY,
        "offer_id": offer_id,
        **fields,
    }


async def list_codes(
    client: httpx.AsyncClient, auth: dict[str, str], offer: JsonObject
) -> list[JsonObject]:
    response = await client.get(f"/v1/offers/{offer['id']}/codes", headers=auth)
    assert response.status_code == 200, response.text
    data: list[JsonObject] = response.json()["data"]
    return data


async def issue(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    job_context: dict[str, Any],
    offer: JsonObject,
    email: str = "ada@example.com",
) -> tuple[JsonObject, JsonObject]:
    """Email a new lead the offer through a real step run; return the lead and code."""
    sequence = await create_sequence(client, auth, steps=[offer_step(offer["id"])])
    lead = await create_lead(client, auth, email=email)
    enrollment = await enroll(client, auth, sequence["id"], lead["id"])
    outcome = await run_enrollment_step(job_context, enrollment_uuid(enrollment))
    assert outcome in ("sent", "completed")
    codes = [
        code
        for code in await list_codes(client, auth, offer)
        if code["lead_id"] == lead["id"]
    ]
    assert len(codes) == 1
    return lead, codes[0]


async def convert(
    client: httpx.AsyncClient, auth: dict[str, str], lead: JsonObject
) -> str:
    response = await client.post(
        f"/v1/leads/{lead['id']}/convert",
        json={"create_opportunity": False},
        headers=auth,
    )
    assert response.status_code == 200, response.text
    return cast(str, response.json()["customer_id"])


async def draft(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    customer_id: str,
    lines: list[JsonObject],
    currency: str = "EUR",
) -> JsonObject:
    response = await client.post(
        "/v1/invoices",
        json={"customer_id": customer_id, "currency": currency, "lines": lines},
        headers=auth,
    )
    assert response.status_code == 201, response.text
    data: JsonObject = response.json()
    return data


async def redeem(
    client: httpx.AsyncClient, auth: dict[str, str], invoice: JsonObject, code: str
) -> httpx.Response:
    return await client.post(
        f"/v1/invoices/{invoice['id']}/redeem-offer",
        json={"code": code},
        headers=auth,
    )


async def customer_with_code(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    job_context: dict[str, Any],
    **offer_fields: Any,
) -> tuple[JsonObject, JsonObject, str]:
    """Issue a code of a new offer to a lead and convert it; return offer, code, customer."""
    offer = await create_offer(client, auth, **offer_fields)
    lead, code = await issue(client, auth, job_context, offer)
    return offer, code, await convert(client, auth, lead)


def line(
    quantity: str, unit_amount: int, tax_rate: str = "0", description: str = "Item"
) -> JsonObject:
    return {
        "description": description,
        "quantity": quantity,
        "unit_amount": unit_amount,
        "tax_rate": tax_rate,
    }


class TestCreateOffer:
    async def test_percent(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        offer = await create_offer(
            client,
            auth,
            percent_off="12.50",
            valid_for_days=14,
            code_prefix="SPRING",
        )

        assert offer["id"].startswith("ofr_")
        assert offer["percent_off"] == "12.5"
        assert offer["amount_off"] is None
        assert offer["single_use"] is True
        assert offer["status"] == "active"
        types = await session.scalars(
            select(Event.type).where(
                Event.object_id == ids.decode("offer", offer["id"])
            )
        )
        assert list(types) == ["offer.created"]

    async def test_amount(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        offer = await create_offer(
            client,
            auth,
            discount_kind="amount",
            percent_off=None,
            amount_off=2500,
            currency="EUR",
            expires_at="2030-01-01T00:00:00Z",
            single_use=False,
            max_redemptions=100,
        )

        assert offer["amount_off"] == 2500
        assert offer["currency"] == "EUR"
        assert offer["expires_at"] == "2030-01-01T00:00:00Z"
        assert offer["max_redemptions"] == 100

    @pytest.mark.parametrize(
        "fields",
        [
            {"percent_off": "0"},
            {"percent_off": "100.01"},
            {"percent_off": "12.345"},
            {"percent_off": 15},
            {"percent_off": None},
            {"currency": "EUR"},
            {"discount_kind": "amount", "percent_off": None, "amount_off": 100},
            {
                "discount_kind": "amount",
                "percent_off": None,
                "amount_off": 100,
                "currency": "ABC",
            },
            {
                "discount_kind": "amount",
                "percent_off": None,
                "amount_off": 0,
                "currency": "EUR",
            },
            {"code_prefix": "spring"},
            {"code_prefix": "ABCDEFGHJKLMN"},
            {"expires_at": "2030-01-01T00:00:00"},
            {"valid_for_days": 0},
            {"max_redemptions": 0},
            {"single_use": "yes"},
        ],
    )
    async def test_invalid(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        fields: JsonObject,
    ) -> None:
        response = await client.post(
            "/v1/offers", json={**PERCENT, **fields}, headers=auth
        )

        assert response.status_code == 422, response.text
        assert response.json()["errors"]
        assert list(await session.scalars(select(Offer.id))) == []

    @pytest.mark.parametrize(
        ("fields", "field", "code"),
        [
            ({"percent_off": None}, "percent_off", "percent_off_missing"),
            ({"currency": "EUR"}, "currency", "amount_not_allowed"),
            ({"amount_off": 100}, "amount_off", "amount_not_allowed"),
            (
                {"discount_kind": "amount", "percent_off": None, "currency": "EUR"},
                "amount_off",
                "amount_missing",
            ),
            (
                {"discount_kind": "amount", "percent_off": None, "amount_off": 100},
                "currency",
                "amount_missing",
            ),
            (
                {"discount_kind": "amount", "amount_off": 100, "currency": "EUR"},
                "percent_off",
                "percent_not_allowed",
            ),
            ({"expires_at": "2020-01-01T00:00:00Z"}, "expires_at", "expires_at_past"),
        ],
    )
    async def test_cross_field_errors_name_field(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        fields: JsonObject,
        field: str,
        code: str,
    ) -> None:
        response = await client.post(
            "/v1/offers", json={**PERCENT, **fields}, headers=auth
        )

        assert response.status_code == 422, response.text
        [error] = response.json()["errors"]
        assert error["field"] == field
        assert error["code"] == code

    async def test_percent_hundred_allowed(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        offer = await create_offer(client, auth, percent_off="100")

        assert offer["percent_off"] == "100"


class TestArchiveOffer:
    async def test_voids_issued_codes(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        offer = await create_offer(client, auth)
        _, code = await issue(client, auth, job_context, offer)

        response = await client.post(f"/v1/offers/{offer['id']}/archive", headers=auth)
        again = await client.post(f"/v1/offers/{offer['id']}/archive", headers=auth)

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "archived"
        assert again.status_code == 409
        [after] = await list_codes(client, auth, offer)
        assert after["status"] == "void"
        listed = await client.get("/v1/offers?status=archived", headers=auth)
        assert [item["id"] for item in listed.json()["data"]] == [offer["id"]]


class TestStepOffer:
    async def post(
        self, client: httpx.AsyncClient, auth: dict[str, str], step: JsonObject
    ) -> httpx.Response:
        return await client.post(
            "/v1/sequences",
            json={
                "name": "Offers",
                "steps": [{"subject": "Hi", "body_text": "Hi"}, step],
            },
            headers=auth,
        )

    async def test_stores_offer_id(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        offer = await create_offer(client, auth)

        sequence = await create_sequence(client, auth, steps=[offer_step(offer["id"])])

        assert sequence["steps"][0]["offer_id"] == offer["id"]

    async def test_only_special_offer(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        offer = await create_offer(client, auth)

        response = await self.post(
            client,
            auth,
            offer_step(offer["id"], purpose="newsletter", body_text="News for you."),
        )

        assert response.status_code == 422
        [error] = response.json()["errors"]
        assert error["field"] == "steps.1.offer_id"
        assert error["code"] == "offer_not_allowed"

    async def test_unknown_offer(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        missing = ids.encode("offer", ids.new_uuid())

        response = await self.post(client, auth, offer_step(missing))

        assert response.status_code == 422
        [error] = response.json()["errors"]
        assert error["field"] == "steps.1.offer_id"
        assert error["code"] == "offer_not_found"

    async def test_archived_offer(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        offer = await create_offer(client, auth)
        await client.post(f"/v1/offers/{offer['id']}/archive", headers=auth)

        response = await self.post(client, auth, offer_step(offer["id"]))

        assert response.status_code == 422
        [error] = response.json()["errors"]
        assert error["field"] == "steps.1.offer_id"
        assert error["code"] == "offer_not_active"

    async def test_offer_fields_need_offer(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await self.post(client, auth, offer_step(None))

        assert response.status_code == 422
        [error] = response.json()["errors"]
        assert error["field"] == "steps.1.body_text"
        assert error["code"] == "offer_required"


class TestIssueCode:
    async def test_email_contains_code(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        offer = await create_offer(client, auth, code_prefix="SPRING", valid_for_days=7)

        lead, code = await issue(client, auth, job_context, offer)

        assert code["id"].startswith("ofc_")
        assert code["status"] == "issued"
        assert code["code"].startswith("SPRING-")
        random_part = code["code"].removeprefix("SPRING-")
        assert len(random_part) == 10
        assert set(random_part) <= set(CODE_ALPHABET)
        issued_at = datetime.fromisoformat(code["issued_at"])
        expires_at = datetime.fromisoformat(code["expires_at"])
        assert expires_at - issued_at == timedelta(days=7)
        [message] = smtp_server.messages
        body = body_of(message)
        assert f"use {code['code']} for 15% off until " in body
        assert code["expires_at"].replace("+00:00", "Z") in body
        types = await session.scalars(
            select(Event.type).where(
                Event.object_id == ids.decode("offer_code", code["id"])
            )
        )
        assert list(types) == ["offer_code.issued"]

    async def test_retry_reuses_code(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        settings: Settings,
        smtp_server: SmtpServer,
    ) -> None:
        offer = await create_offer(client, auth)
        sequence = await create_sequence(client, auth, steps=[offer_step(offer["id"])])
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])
        unconfigured = {
            **job_context,
            "settings": settings.model_copy(update={"smtp_host": None}),
        }
        first = await run_enrollment_step(unconfigured, enrollment_uuid(enrollment))
        [code_after_failure] = await list_codes(client, auth, offer)
        await make_due(session)

        second = await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert first == "retry_scheduled"
        assert second in ("sent", "completed")
        [code] = await list_codes(client, auth, offer)
        assert code["code"] == code_after_failure["code"]
        [message] = smtp_server.messages
        assert code["code"] in body_of(message)
        rows = await session.scalars(select(OfferCode))
        assert len(list(rows)) == 1

    async def test_one_code_per_lead(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        offer = await create_offer(client, auth)
        lead, code = await issue(client, auth, job_context, offer)
        other = await create_sequence(
            client, auth, steps=[offer_step(offer["id"])], name="Second"
        )
        enrollment = await enroll(client, auth, other["id"], lead["id"])

        await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert [item["code"] for item in await list_codes(client, auth, offer)] == [
            code["code"]
        ]
        first, second = smtp_server.messages
        assert code["code"] in body_of(first)
        assert code["code"] in body_of(second)

    async def test_archived_offer_issues_nothing(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        offer = await create_offer(client, auth)
        sequence = await create_sequence(client, auth, steps=[offer_step(offer["id"])])
        await client.post(f"/v1/offers/{offer['id']}/archive", headers=auth)
        lead = await create_lead(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], lead["id"])

        await run_enrollment_step(job_context, enrollment_uuid(enrollment))

        assert await list_codes(client, auth, offer) == []
        [message] = smtp_server.messages
        assert "until the end of the month" in body_of(message)


class TestRedeemOffer:
    async def test_percent_rounds_per_tax_rate(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        offer, code, customer_id = await customer_with_code(client, auth, job_context)
        invoice = await draft(
            client,
            auth,
            customer_id,
            [line("3", 1111, "19", "Seats"), line("1", 1000, "7", "Books")],
        )

        response = await redeem(client, auth, invoice, code["code"].lower())

        assert response.status_code == 200, response.text
        after = response.json()
        # Subtotal 4333; 15 % is 649.95, half-up 650, spread pro rata over the lines:
        # 499.99 and 150.01 become 500 and 150. Tax is then charged on what remains:
        # 2833 x 19 % = 538.27 -> 538 and 850 x 7 % = 59.5 -> 60.
        [discount] = after["discounts"]
        assert discount == {
            "source": "offer_code",
            "offer_code": code["code"],
            "percent_off": "15",
            "amount_off": None,
            "amount": 650,
        }
        assert [item["discount_amount"] for item in after["lines"]] == [500, 150]
        assert [item["tax_amount"] for item in after["lines"]] == [538, 60]
        assert after["subtotal"] == 4333
        assert after["total_discount"] == 650
        assert after["tax_total"] == 598
        assert after["total"] == 4333 - 650 + 598
        assert sum(item["total"] for item in after["lines"]) == after["total"]
        assert after["version"] == invoice["version"] + 1
        [redeemed] = await list_codes(client, auth, offer)
        assert redeemed["status"] == "redeemed"
        assert redeemed["invoice_id"] == invoice["id"]
        assert redeemed["discount_amount"] == 650
        assert redeemed["currency"] == "EUR"
        code_events = await session.scalars(
            select(Event.type)
            .where(Event.object_id == ids.decode("offer_code", code["id"]))
            .order_by(Event.sequence)
        )
        assert list(code_events) == ["offer_code.issued", "offer_code.redeemed"]
        invoice_events = await session.scalars(
            select(Event.type)
            .where(Event.object_id == ids.decode("invoice", invoice["id"]))
            .order_by(Event.sequence)
        )
        assert list(invoice_events) == ["invoice.created", "invoice.updated"]

    async def test_amount(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        _, code, customer_id = await customer_with_code(
            client,
            auth,
            job_context,
            discount_kind="amount",
            percent_off=None,
            amount_off=2500,
            currency="EUR",
        )
        invoice = await draft(client, auth, customer_id, [line("2", 5000, "10")])

        response = await redeem(client, auth, invoice, code["code"])

        assert response.status_code == 200, response.text
        after = response.json()
        [line_after] = after["lines"]
        assert after["discounts"][0]["amount_off"] == 2500
        assert after["discounts"][0]["amount"] == 2500
        assert line_after["discount_amount"] == 2500
        assert line_after["tax_amount"] == 750
        assert (after["subtotal"], after["total_discount"]) == (10000, 2500)
        assert (after["tax_total"], after["total"]) == (750, 8250)

    async def test_amount_capped_at_subtotal(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        _, code, customer_id = await customer_with_code(
            client,
            auth,
            job_context,
            discount_kind="amount",
            percent_off=None,
            amount_off=50_000,
            currency="EUR",
        )
        invoice = await draft(client, auth, customer_id, [line("1", 1999, "19")])

        response = await redeem(client, auth, invoice, code["code"])

        assert response.status_code == 200, response.text
        after = response.json()
        assert (after["subtotal"], after["total_discount"]) == (1999, 1999)
        assert (after["tax_total"], after["total"]) == (0, 0)

    async def test_jpy_zero_decimal(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        _, code, customer_id = await customer_with_code(client, auth, job_context)
        invoice = await draft(
            client, auth, customer_id, [line("1", 12345, "10")], currency="JPY"
        )

        response = await redeem(client, auth, invoice, code["code"])

        assert response.status_code == 200, response.text
        after = response.json()
        # 15 % of 12345 yen is 1851.75, half-up 1852; 10 % tax on the 10493 left
        # is 1049.3, rounded to 1049.
        assert after["total_discount"] == 1852
        assert after["total_excluding_tax"] == 10493
        assert after["tax_total"] == 1049
        assert after["total"] == 11542

    async def test_currency_mismatch(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        _, code, customer_id = await customer_with_code(
            client,
            auth,
            job_context,
            discount_kind="amount",
            percent_off=None,
            amount_off=1000,
            currency="USD",
        )
        invoice = await draft(client, auth, customer_id, [line("1", 5000)], "EUR")

        response = await redeem(client, auth, invoice, code["code"])

        assert response.status_code == 409
        assert response.json()["code"] == "offer_currency_mismatch"

    async def test_expired(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        offer, code, customer_id = await customer_with_code(
            client, auth, job_context, valid_for_days=3
        )
        await session.execute(
            update(OfferCode).values(
                expires_at=datetime.now(UTC) - timedelta(seconds=1)
            )
        )
        invoice = await draft(client, auth, customer_id, [line("1", 5000)])

        response = await redeem(client, auth, invoice, code["code"])

        assert response.status_code == 409
        assert response.json()["code"] == "offer_expired"
        [after] = await list_codes(client, auth, offer)
        assert after["status"] == "expired"
        unchanged = await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
        assert unchanged.json()["total"] == 5000

    async def test_already_redeemed(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        _, code, customer_id = await customer_with_code(client, auth, job_context)
        first = await draft(client, auth, customer_id, [line("1", 5000)])
        second = await draft(client, auth, customer_id, [line("1", 5000)])
        await redeem(client, auth, first, code["code"])

        response = await redeem(client, auth, second, code["code"])
        again = await redeem(client, auth, first, code["code"])

        assert response.status_code == 409
        assert response.json()["code"] == "offer_already_redeemed"
        assert response.json()["invoice_id"] == first["id"]
        assert again.status_code == 409

    async def test_reusable_code_limited(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        offer, code, customer_id = await customer_with_code(
            client, auth, job_context, single_use=False, max_redemptions=2
        )
        invoices = [
            await draft(client, auth, customer_id, [line("1", 5000)]) for _ in range(3)
        ]

        responses = [
            await redeem(client, auth, invoice, code["code"]) for invoice in invoices
        ]

        assert [response.status_code for response in responses] == [200, 200, 409]
        assert responses[2].json()["code"] == "offer_redemption_limit"
        stats = (await client.get(f"/v1/offers/{offer['id']}", headers=auth)).json()
        assert stats["stats"]["redemptions"] == 2
        assert stats["stats"]["codes_redeemed"] == 1

    async def test_not_for_customer(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        offer = await create_offer(client, auth)
        _, code = await issue(client, auth, job_context, offer)
        other = await create_lead(client, auth, email="grace@example.com")
        customer_id = await convert(client, auth, other)
        invoice = await draft(client, auth, customer_id, [line("1", 5000)])

        response = await redeem(client, auth, invoice, code["code"])

        assert response.status_code == 409
        assert response.json()["code"] == "offer_not_for_customer"

    async def test_unknown_code(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        customer_id = await convert(client, auth, lead)
        invoice = await draft(client, auth, customer_id, [line("1", 5000)])

        response = await redeem(client, auth, invoice, "NOPE-2345678")

        assert response.status_code == 404
        assert response.json()["code"] == "offer_code_not_found"

    async def test_open_invoice_rejected(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        _, code, customer_id = await customer_with_code(client, auth, job_context)
        invoice = await draft(client, auth, customer_id, [line("1", 5000)])
        await client.post(f"/v1/invoices/{invoice['id']}/finalize", headers=auth)

        response = await redeem(client, auth, invoice, code["code"])

        assert response.status_code == 409
        assert response.json()["code"] == "invoice_not_editable"

    async def test_patch_reprices(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        offer, code, customer_id = await customer_with_code(client, auth, job_context)
        invoice = await draft(client, auth, customer_id, [line("1", 5000)])
        await redeem(client, auth, invoice, code["code"])

        response = await client.patch(
            f"/v1/invoices/{invoice['id']}",
            json={"lines": [line("1", 10001)]},
            headers=auth,
        )

        assert response.status_code == 200, response.text
        after = response.json()
        # 15 % of 10001 is 1500.15, rounded to 1500.
        assert [item["discount_amount"] for item in after["lines"]] == [1500]
        assert after["total"] == 8501
        [redeemed] = await list_codes(client, auth, offer)
        assert redeemed["discount_amount"] == 1500

    async def test_patch_currency_mismatch(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        _, code, customer_id = await customer_with_code(
            client,
            auth,
            job_context,
            discount_kind="amount",
            percent_off=None,
            amount_off=1000,
            currency="EUR",
        )
        invoice = await draft(client, auth, customer_id, [line("1", 5000)])
        await redeem(client, auth, invoice, code["code"])

        response = await client.patch(
            f"/v1/invoices/{invoice['id']}", json={"currency": "USD"}, headers=auth
        )

        assert response.status_code == 409
        assert response.json()["code"] == "offer_currency_mismatch"
        unchanged = await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
        assert unchanged.json()["currency"] == "EUR"
        assert unchanged.json()["total"] == 4000

    async def test_patch_other_customer(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        _, code, customer_id = await customer_with_code(client, auth, job_context)
        invoice = await draft(client, auth, customer_id, [line("1", 5000)])
        await redeem(client, auth, invoice, code["code"])
        other = await create_lead(
            client, auth, email="grace@globex.example", company="Globex"
        )
        other_customer_id = await convert(client, auth, other)
        assert other_customer_id != customer_id

        response = await client.patch(
            f"/v1/invoices/{invoice['id']}",
            json={"customer_id": other_customer_id},
            headers=auth,
        )

        assert response.status_code == 409, response.text
        assert response.json()["code"] == "offer_not_for_customer"
        unchanged = (
            await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
        ).json()
        assert unchanged["customer_id"] == customer_id
        assert unchanged["total"] == 4250

    async def test_rounding_change_reprices(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        _, code, customer_id = await customer_with_code(
            client, auth, job_context, percent_off="12.5"
        )
        invoice = await draft(client, auth, customer_id, [line("1", 1012)])
        redeemed = (await redeem(client, auth, invoice, code["code"])).json()

        response = await client.patch(
            f"/v1/invoices/{invoice['id']}",
            json={"rounding": "half_even"},
            headers=auth,
        )

        assert response.status_code == 200, response.text
        # 12.5 % of 1012 is 126.5: half-up gives 127, half-even 126.
        assert redeemed["total_discount"] == 127
        assert response.json()["total_discount"] == 126

    async def test_void_releases_code(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        offer, code, customer_id = await customer_with_code(client, auth, job_context)
        first = await draft(client, auth, customer_id, [line("1", 5000)])
        await redeem(client, auth, first, code["code"])
        await client.post(f"/v1/invoices/{first['id']}/finalize", headers=auth)

        voided = await client.post(f"/v1/invoices/{first['id']}/void", headers=auth)

        assert voided.status_code == 200, voided.text
        [released] = await list_codes(client, auth, offer)
        assert released["status"] == "issued"
        assert released["invoice_id"] is None
        second = await draft(client, auth, customer_id, [line("1", 5000)])
        again = await redeem(client, auth, second, code["code"])
        assert again.status_code == 200, again.text
        types = await session.scalars(
            select(Event.type)
            .where(Event.object_id == ids.decode("offer_code", code["id"]))
            .order_by(Event.sequence)
        )
        assert list(types) == [
            "offer_code.issued",
            "offer_code.redeemed",
            "offer_code.released",
            "offer_code.redeemed",
        ]


class TestOfferRevenue:
    async def test_paid_invoice_counts(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        job_context: dict[str, Any],
        smtp_server: SmtpServer,
    ) -> None:
        offer, code, customer_id = await customer_with_code(client, auth, job_context)
        invoice = await draft(client, auth, customer_id, [line("2", 5000, "19")])
        await redeem(client, auth, invoice, code["code"])
        opened = await client.post(
            f"/v1/invoices/{invoice['id']}/finalize", headers=auth
        )
        total = opened.json()["total"]
        before = (await client.get(f"/v1/offers/{offer['id']}", headers=auth)).json()

        paid = await client.post(
            "/v1/payments",
            json={
                "customer_id": customer_id,
                "amount": total,
                "currency": "EUR",
                "method": "bank_transfer",
                "invoice_id": invoice["id"],
            },
            headers=auth,
        )

        assert paid.status_code == 201, paid.text
        assert total == 8500 + 1615
        assert before["stats"]["revenue"] == []
        after = (await client.get(f"/v1/offers/{offer['id']}", headers=auth)).json()
        assert after["stats"] == {
            "codes_issued": 1,
            "codes_redeemed": 1,
            "redemptions": 1,
            "revenue": [{"currency": "EUR", "amount_paid": total, "invoice_count": 1}],
        }


class TestDiscountMath:
    def test_split_sums_exactly(self) -> None:
        amounts = {Decimal(19): 3333, Decimal(7): 1000, Decimal(0): 1}

        shares = split_by_rate(650, amounts)

        assert sum(shares.values()) == 650
        assert all(shares[rate] <= amounts[rate] for rate in shares)
        assert shares == {Decimal(19): 500, Decimal(7): 150}

    def test_format_discount(self) -> None:
        yen = Offer(discount_kind="amount", amount_off=1000, currency="JPY")
        euro = Offer(discount_kind="amount", amount_off=2500, currency="EUR")
        percent = Offer(discount_kind="percent", percent_off=Decimal("12.50"))

        assert format_discount(yen) == "1000 JPY"
        assert format_discount(euro) == "25.00 EUR"
        assert format_discount(percent) == "12.5%"

    def test_new_code_unambiguous(self) -> None:
        codes = {new_code("") for _ in range(200)}

        assert len(codes) == 200
        assert not any(set(code) & set("0O1I") for code in codes)
