"""Invoice lines, discounts, taxes, terms and immutability through the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.ids import encode, new_uuid
from app.models import (
    Customer,
    Event,
    InvoiceNumberSeries,
    Opportunity,
    Pipeline,
    Stage,
    Workspace,
)
from tests.billing.factories import create_customer
from tests.opportunities.catalog_factories import add_line_item, create_product


async def post_invoice(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    customer: Customer,
    lines: list[dict[str, Any]],
    **fields: Any,
) -> httpx.Response:
    body = {"customer_id": encode("customer", customer.id), "lines": lines, **fields}
    return await client.post("/v1/invoices", json=body, headers=auth)


def line(unit_amount: int, quantity: str = "1", **fields: Any) -> dict[str, Any]:
    return {
        "description": "Item",
        "quantity": quantity,
        "unit_amount": unit_amount,
        **fields,
    }


VAT = {"name": "VAT", "percentage": "19"}


async def create_opportunity(
    session: AsyncSession, workspace: Workspace, customer: Customer
) -> Opportunity:
    pipeline = Pipeline(id=new_uuid(), workspace_id=workspace.id, name="Sales")
    session.add(pipeline)
    await session.flush()
    stage = Stage(
        id=new_uuid(),
        workspace_id=workspace.id,
        pipeline_id=pipeline.id,
        name="Negotiation",
        position=1,
        probability=60,
    )
    session.add(stage)
    await session.flush()
    opportunity = Opportunity(
        id=new_uuid(),
        workspace_id=workspace.id,
        name="Deal",
        customer_id=customer.id,
        pipeline_id=pipeline.id,
        stage_id=stage.id,
        currency=customer.currency,
    )
    session.add(opportunity)
    await session.commit()
    return opportunity


class TestLineTaxesAndDiscounts:
    async def test_breakdown_adds_up(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)

        response = await post_invoice(
            client,
            auth,
            customer,
            [
                line(5000, "2", tax_rates=[VAT], discount={"percent_off": "10"}),
                line(11900, tax_rates=[{**VAT, "inclusive": True}]),
            ],
        )

        assert response.status_code == 201, response.text
        invoice = response.json()
        first, second = invoice["lines"]
        assert first["discount"] == {"percent_off": "10", "amount_off": None}
        assert (first["amount"], first["discount_amount"]) == (10000, 1000)
        assert (first["taxable_amount"], first["tax_amount"]) == (9000, 1710)
        assert first["total"] == 10710
        # 11900 x 19 / 119 = 1900 is inside the gross price.
        assert (second["taxable_amount"], second["tax_amount"]) == (10000, 1900)
        assert second["total"] == 11900
        assert second["taxes"] == [
            {
                "name": "VAT",
                "rate": "19",
                "inclusive": True,
                "taxable_amount": 10000,
                "amount": 1900,
            }
        ]
        assert invoice["subtotal"] == 21900
        assert invoice["total_discount"] == 1000
        assert invoice["total_excluding_tax"] == 19000
        assert invoice["tax_total"] == 3610
        assert invoice["total"] == 22610
        assert [(tax["inclusive"], tax["amount"]) for tax in invoice["taxes"]] == [
            (False, 1710),
            (True, 1900),
        ]

    async def test_document_policy_and_patch(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id, currency="USD")
        rate = {"name": "Sales tax", "percentage": "7.5"}
        created = await post_invoice(
            client,
            auth,
            customer,
            [line(100, tax_rates=[rate]) for _ in range(3)],
            tax_calculation="document",
        )
        invoice = created.json()

        patched = await client.patch(
            f"/v1/invoices/{invoice['id']}",
            json={"tax_calculation": "line"},
            headers=auth,
        )

        assert invoice["tax_calculation"] == "document"
        assert [item["tax_amount"] for item in invoice["lines"]] == [8, 8, 7]
        assert invoice["tax_total"] == 23
        assert patched.status_code == 200, patched.text
        assert patched.json()["tax_total"] == 24
        types = await session.scalars(select(Event.type).order_by(Event.id))
        assert list(types) == ["invoice.created", "invoice.updated"]

    async def test_invoice_discounts_spread(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)

        response = await post_invoice(
            client,
            auth,
            customer,
            [line(1000), line(2000)],
            discounts=[{"amount_off": 1000}, {"percent_off": "50"}],
        )

        assert response.status_code == 201, response.text
        invoice = response.json()
        # 1000 off 3000 spreads 333 and 667, leaving 667 and 1333. 50 % of those
        # 2000 is 1000, with shares 333.5 and 666.5: the tie goes to the first line.
        assert [item["amount"] for item in invoice["discounts"]] == [1000, 1000]
        assert [item["discount_amount"] for item in invoice["lines"]] == [667, 1333]
        assert invoice["total"] == 1000

    async def test_discount_both_kinds_rejected(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)

        response = await post_invoice(
            client,
            auth,
            customer,
            [line(1000, discount={"percent_off": "10", "amount_off": 5})],
        )

        assert response.status_code == 422
        [error] = response.json()["errors"]
        assert error["field"] == "lines.0.discount"
        assert error["code"] == "discount_kind"

    async def test_mixed_inclusive_rejected(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        rates = [VAT, {"name": "City", "percentage": "1", "inclusive": True}]

        response = await post_invoice(
            client, auth, customer, [line(1000, tax_rates=rates)]
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "tax_inclusive_mixed"

    async def test_tax_rate_and_tax_rates_conflict(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)

        response = await post_invoice(
            client, auth, customer, [line(1000, tax_rate="19", tax_rates=[VAT])]
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "tax_rate_conflict"

    async def test_single_tax_rate_shorthand(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)

        response = await post_invoice(
            client, auth, customer, [line(1000, tax_rate="19")]
        )

        [created] = response.json()["lines"]
        assert created["tax_rates"] == [
            {
                "tax_rate_id": None,
                "name": "Tax",
                "percentage": "19",
                "inclusive": False,
            }
        ]
        assert created["tax_rate"] == "19"
        assert created["tax_amount"] == 190


class TestLineReferences:
    async def test_product_price_and_name_default(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id, currency="USD")
        product = await create_product(client, auth, tax_rate="8")

        response = await post_invoice(
            client, auth, customer, [{"product_id": product["id"], "quantity": "2"}]
        )

        assert response.status_code == 201, response.text
        [created] = response.json()["lines"]
        assert created["product_id"] == product["id"]
        assert created["description"] == "Analytical engine"
        assert created["unit_amount"] == 10000
        assert created["amount"] == 20000
        assert created["tax_amount"] == 1600

    async def test_product_without_price_in_currency(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id, currency="EUR")
        product = await create_product(client, auth)

        response = await post_invoice(
            client, auth, customer, [{"product_id": product["id"], "quantity": "1"}]
        )

        assert response.status_code == 422
        [error] = response.json()["errors"]
        assert error["field"] == "lines.0.unit_amount"
        assert error["code"] == "price_missing"

    async def test_unknown_product(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        missing = encode("product", new_uuid())

        response = await post_invoice(
            client, auth, customer, [line(100, product_id=missing)]
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "product_not_found"
        listed = await client.get("/v1/invoices", headers=auth)
        assert listed.json()["data"] == []

    async def test_line_item_of_invoice_opportunity(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        opportunity = await create_opportunity(session, workspace, customer)
        opportunity_id = encode("opportunity", opportunity.id)
        item = await add_line_item(client, auth, opportunity_id)

        without = await post_invoice(
            client, auth, customer, [line(1000, line_item_id=item["id"])]
        )
        with_opportunity = await post_invoice(
            client,
            auth,
            customer,
            [line(1000, line_item_id=item["id"])],
            opportunity_id=opportunity_id,
        )

        assert without.status_code == 422
        assert without.json()["errors"][0]["field"] == "lines.0.line_item_id"
        assert without.json()["errors"][0]["code"] == "opportunity_mismatch"
        assert with_opportunity.status_code == 201, with_opportunity.text
        assert with_opportunity.json()["lines"][0]["line_item_id"] == item["id"]


class TestOpenInvoiceImmutable:
    async def test_patch_points_to_credit_note(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        created = (await post_invoice(client, auth, customer, [line(1000)])).json()
        await client.post(f"/v1/invoices/{created['id']}/finalize", headers=auth)

        response = await client.patch(
            f"/v1/invoices/{created['id']}",
            json={"discounts": [{"percent_off": "10"}]},
            headers=auth,
        )

        assert response.status_code == 409
        problem = response.json()
        assert problem["code"] == "invoice_not_editable"
        assert "credit note" in problem["detail"]
        unchanged = await client.get(f"/v1/invoices/{created['id']}", headers=auth)
        assert unchanged.json()["total"] == 1000
        assert unchanged.json()["discounts"] == []


class TestPaymentTerms:
    async def test_net_days_in_customer_zone(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(
            session, workspace.id, timezone="Pacific/Kiritimati"
        )
        created = await post_invoice(
            client, auth, customer, [line(1000)], payment_terms="net_15"
        )

        response = await client.post(
            f"/v1/invoices/{created.json()['id']}/finalize", headers=auth
        )

        opened = response.json()
        zone = ZoneInfo("Pacific/Kiritimati")
        finalized = datetime.fromisoformat(opened["finalized_at"])
        due = finalized.astimezone(zone).date() + timedelta(days=15)
        assert (opened["payment_terms"], opened["payment_terms_days"]) == (
            "net_15",
            15,
        )
        assert opened["due_date"] == due.isoformat()
        overdue_at = datetime.fromisoformat(opened["overdue_at"])
        # Kiritimati is UTC+14 all year: the due day ends at 10:00 UTC that day.
        assert overdue_at == datetime(due.year, due.month, due.day, 10, tzinfo=UTC)
        assert opened["overdue"] is False

    async def test_due_on_receipt(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(
            session, workspace.id, timezone="Pacific/Pago_Pago"
        )
        created = await post_invoice(
            client, auth, customer, [line(1000)], payment_terms="due_on_receipt"
        )

        response = await client.post(
            f"/v1/invoices/{created.json()['id']}/finalize", headers=auth
        )

        opened = response.json()
        finalized = datetime.fromisoformat(opened["finalized_at"])
        today = finalized.astimezone(ZoneInfo("Pacific/Pago_Pago")).date()
        assert opened["due_date"] == today.isoformat()
        assert opened["payment_terms_days"] == 0

    async def test_explicit_due_date(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        due = datetime.now(UTC).date() + timedelta(days=40)
        created = await post_invoice(
            client, auth, customer, [line(1000)], due_date=due.isoformat()
        )

        response = await client.post(
            f"/v1/invoices/{created.json()['id']}/finalize", headers=auth
        )

        opened = response.json()
        assert opened["payment_terms"] == "due_date"
        assert opened["payment_terms_days"] is None
        assert opened["due_date"] == due.isoformat()

    async def test_due_date_beyond_range_rejected(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)

        response = await post_invoice(
            client, auth, customer, [line(1000)], due_date="9999-12-31"
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "due_date"
        assert "9998-12-31" in error["message"]

    async def test_past_due_date_rejected_without_number(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        past = datetime.now(UTC).date() - timedelta(days=3)
        created = await post_invoice(
            client, auth, customer, [line(1000)], due_date=past.isoformat()
        )

        response = await client.post(
            f"/v1/invoices/{created.json()['id']}/finalize", headers=auth
        )

        assert response.status_code == 422
        assert response.json()["code"] == "invalid_due_date"
        assert response.json()["errors"][0]["field"] == "due_date"
        after = await client.get(f"/v1/invoices/{created.json()['id']}", headers=auth)
        assert after.json()["status"] == "draft"
        assert after.json()["number"] is None
        series = await session.scalar(select(InvoiceNumberSeries))
        assert series is None

    async def test_two_terms_conflict(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)

        response = await post_invoice(
            client,
            auth,
            customer,
            [line(1000)],
            payment_terms="net_30",
            due_date="2030-01-01",
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "payment_terms_conflict"

    async def test_net_days_out_of_range(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)

        response = await post_invoice(
            client, auth, customer, [line(1000)], payment_terms="net_366"
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "payment_terms"
        assert error["code"] == "payment_terms_range"
        assert error["message"].count("net_366") == 1
        assert "0 to 365" in error["message"]
        assert "net_30" in error["message"]

    @pytest.mark.parametrize(
        ("terms", "code"),
        [("net_1000", "payment_terms_range"), ("net_07", "payment_terms_invalid")],
    )
    async def test_net_days_malformed(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        terms: str,
        code: str,
    ) -> None:
        customer = await create_customer(session, workspace.id)

        response = await post_invoice(
            client, auth, customer, [line(1000)], payment_terms=terms
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "payment_terms"
        assert error["code"] == code
        assert "pattern" not in error["message"]
        assert "net_30" in error["message"]


class TestNumbering:
    async def test_void_number_not_reused(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        first = (await post_invoice(client, auth, customer, [line(1000)])).json()
        second = (await post_invoice(client, auth, customer, [line(1000)])).json()
        opened = await client.post(f"/v1/invoices/{first['id']}/finalize", headers=auth)
        voided = await client.post(f"/v1/invoices/{first['id']}/void", headers=auth)

        response = await client.post(
            f"/v1/invoices/{second['id']}/finalize", headers=auth
        )

        year = datetime.now(UTC).year
        assert opened.json()["number"] == f"INV-{year}-000001"
        assert voided.json()["number"] == f"INV-{year}-000001"
        assert response.json()["number"] == f"INV-{year}-000002"


class TestTaxRates:
    async def create_rate(
        self, client: httpx.AsyncClient, auth: dict[str, str], **fields: Any
    ) -> dict[str, Any]:
        body = {"name": "VAT", "percentage": "19", "jurisdiction": "DE", **fields}
        response = await client.post("/v1/tax-rates", json=body, headers=auth)
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data

    async def test_line_copies_rate(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        rate = await self.create_rate(client, auth)

        response = await post_invoice(
            client, auth, customer, [line(1000, tax_rate_ids=[rate["id"]])]
        )
        renamed = await client.patch(
            f"/v1/tax-rates/{rate['id']}", json={"name": "MwSt"}, headers=auth
        )
        after = await client.get(f"/v1/invoices/{response.json()['id']}", headers=auth)

        assert rate["object"] == "tax_rate"
        assert rate["active"] is True
        assert response.status_code == 201, response.text
        [created] = response.json()["lines"]
        assert created["tax_rates"] == [
            {
                "tax_rate_id": rate["id"],
                "name": "VAT",
                "percentage": "19",
                "inclusive": False,
            }
        ]
        assert created["tax_amount"] == 190
        assert renamed.json()["name"] == "MwSt"
        assert after.json()["lines"][0]["taxes"][0]["name"] == "VAT"
        types = await session.scalars(
            select(Event.type).where(Event.object_type == "tax_rate")
        )
        assert sorted(types) == ["tax_rate.created", "tax_rate.updated"]

    async def test_inactive_rate_rejected(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        rate = await self.create_rate(client, auth)
        await client.patch(
            f"/v1/tax-rates/{rate['id']}", json={"active": False}, headers=auth
        )

        response = await post_invoice(
            client, auth, customer, [line(1000, tax_rate_ids=[rate["id"]])]
        )

        assert response.status_code == 422
        [error] = response.json()["errors"]
        assert error["field"] == "lines.0.tax_rate_ids"
        assert error["code"] == "inactive"

    async def test_unknown_and_mixed_rates(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        exclusive = await self.create_rate(client, auth)
        inclusive = await self.create_rate(client, auth, inclusive=True)
        missing = encode("tax_rate", new_uuid())

        unknown = await post_invoice(
            client, auth, customer, [line(1000, tax_rate_ids=[missing])]
        )
        mixed = await post_invoice(
            client,
            auth,
            customer,
            [line(1000, tax_rate_ids=[exclusive["id"], inclusive["id"]])],
        )

        assert unknown.status_code == 422
        assert unknown.json()["errors"][0]["code"] == "tax_rate_not_found"
        assert mixed.status_code == 422
        assert mixed.json()["errors"][0]["code"] == "tax_inclusive_mixed"

    async def test_percentage_fixed(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        rate = await self.create_rate(client, auth)

        response = await client.patch(
            f"/v1/tax-rates/{rate['id']}", json={"percentage": "7"}, headers=auth
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "percentage"
        assert error["code"] == "immutable"
        assert "cannot change" in error["message"]
        assert "POST /v1/tax-rates" in error["message"]
        unchanged = await client.get(f"/v1/tax-rates/{rate['id']}", headers=auth)
        assert unchanged.json()["percentage"] == "19"

    async def test_inclusive_fixed(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        rate = await self.create_rate(client, auth)

        response = await client.patch(
            f"/v1/tax-rates/{rate['id']}",
            json={"name": "MwSt", "inclusive": True},
            headers=auth,
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "inclusive"
        assert error["code"] == "immutable"
        unchanged = await client.get(f"/v1/tax-rates/{rate['id']}", headers=auth)
        assert unchanged.json()["inclusive"] is False
        assert unchanged.json()["name"] == "VAT"

    @pytest.mark.parametrize(
        ("percentage", "code"),
        [("101", "too_large"), (19, "decimal_string_required")],
    )
    async def test_invalid_percentage_named(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        percentage: object,
        code: str,
    ) -> None:
        response = await client.post(
            "/v1/tax-rates",
            json={"name": "VAT", "percentage": percentage},
            headers=auth,
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "percentage"
        assert error["code"] == code
        assert error["message"].startswith(("percentage ", "Send percentage "))
        assert "tax_rate" not in error["message"]

    async def test_list_filters_active(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        kept = await self.create_rate(client, auth)
        retired = await self.create_rate(client, auth, name="Old VAT")
        await client.patch(
            f"/v1/tax-rates/{retired['id']}", json={"active": False}, headers=auth
        )

        response = await client.get("/v1/tax-rates?active=true", headers=auth)

        assert [item["id"] for item in response.json()["data"]] == [kept["id"]]


class TestPatchDraft:
    async def test_discounts_and_terms_replaced(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        created = await post_invoice(
            client,
            auth,
            customer,
            [line(1000, tax_rates=[VAT])],
            discounts=[{"amount_off": 100}],
            payment_terms="net_60",
        )
        invoice = created.json()

        response = await client.patch(
            f"/v1/invoices/{invoice['id']}",
            json={"discounts": [{"percent_off": "50"}], "payment_terms": "net_7"},
            headers=auth,
        )

        assert invoice["total"] == 900 + 171
        assert response.status_code == 200, response.text
        patched = response.json()
        assert patched["discounts"] == [
            {
                "source": "manual",
                "offer_code": None,
                "percent_off": "50",
                "amount_off": None,
                "amount": 500,
            }
        ]
        assert patched["total"] == 500 + 95
        assert (patched["payment_terms"], patched["payment_terms_days"]) == (
            "net_7",
            7,
        )
        assert patched["version"] == invoice["version"] + 1
