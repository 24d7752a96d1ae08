from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.auth import create_api_key
from app.core.ids import encode, new_uuid
from app.models import (
    Event,
    Invoice,
    InvoiceLine,
    InvoiceNumberSeries,
    Opportunity,
    Pipeline,
    Stage,
    Workspace,
)
from tests.billing.factories import (
    LINE,
    create_customer,
    create_invoice,
    create_open_invoice,
)
from tests.conftest import make_workspace_key


async def event_types(session: AsyncSession) -> list[str]:
    rows = await session.scalars(select(Event.type).order_by(Event.id))
    return list(rows)


async def post_line(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    customer_id: str,
    line: dict[str, Any],
) -> httpx.Response:
    return await client.post(
        "/v1/invoices",
        json={"customer_id": customer_id, "lines": [line]},
        headers=auth,
    )


class TestCreateInvoice:
    async def test_created_with_totals(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)

        response = await client.post(
            "/v1/invoices",
            json={
                "customer_id": encode("customer", customer.id),
                "lines": [
                    {
                        "description": "Licence",
                        "quantity": "3",
                        "unit_amount": 1999,
                        "tax_rate": "19",
                    },
                    {
                        "description": "Support hours",
                        "quantity": "1.25",
                        "unit_amount_decimal": "3333.5",
                        "tax_rate": "7",
                    },
                ],
                "memo": "Thank you",
            },
            headers=auth,
        )

        assert response.status_code == 201, response.text
        invoice = response.json()
        assert invoice["id"].startswith("inv_")
        assert response.headers["location"] == f"/v1/invoices/{invoice['id']}"
        assert response.headers["etag"] == '"1"'
        assert invoice["status"] == "draft"
        assert invoice["number"] is None
        assert invoice["currency"] == "EUR"
        assert invoice["payment_terms_days"] == 14
        # 3 x 1999 = 5997, tax 19 % = 1139.43 -> 1139;
        # 1.25 x 3333.5 = 4166.875 -> 4167, tax 7 % = 291.69 -> 292.
        assert [line["amount"] for line in invoice["lines"]] == [5997, 4167]
        assert [line["tax_amount"] for line in invoice["lines"]] == [1139, 292]
        assert invoice["subtotal"] == 10164
        assert invoice["tax_total"] == 1431
        assert invoice["total"] == 11595
        assert invoice["subtotal"] + invoice["tax_total"] == invoice["total"]
        assert invoice["amount_due"] == 11595
        assert invoice["amount_paid"] == 0
        assert invoice["amount_remaining"] == 11595
        assert invoice["payment_status"] == "unpaid"
        assert invoice["overdue"] is False
        assert invoice["lines"][0]["id"].startswith("il_")
        assert invoice["lines"][0]["unit_amount"] == 1999
        assert invoice["lines"][1]["unit_amount"] is None
        assert invoice["lines"][1]["unit_amount_decimal"] == "3333.5"
        assert invoice["lines"][1]["quantity"] == "1.25"
        assert await event_types(session) == ["invoice.created"]

    async def test_currency_and_terms_override(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)

        invoice = await create_invoice(
            client, auth, customer, currency="jpy", payment_terms_days=0
        )

        assert invoice["currency"] == "JPY"
        assert invoice["payment_terms_days"] == 0

    async def test_draft_without_lines(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)

        invoice = await create_invoice(client, auth, customer, lines=[])

        assert invoice["lines"] == []
        assert invoice["total"] == 0

    async def test_half_even_rounding(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        line = {"description": "Half", "quantity": "0.5", "unit_amount": 5}

        half_up = await create_invoice(client, auth, customer, lines=[line])
        half_even = await create_invoice(
            client, auth, customer, lines=[line], rounding="half_even"
        )

        assert half_up["total"] == 3
        assert half_even["total"] == 2
        assert half_even["rounding"] == "half_even"

    async def test_unknown_customer(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await post_line(client, auth, encode("customer", new_uuid()), LINE)

        assert response.status_code == 404
        assert response.json()["code"] == "customer_not_found"

    async def test_other_workspace_customer(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
    ) -> None:
        other, _ = await make_workspace_key(session)
        customer = await create_customer(session, other.id)

        response = await post_line(client, auth, encode("customer", customer.id), LINE)

        assert response.status_code == 404

    async def test_opportunity_of_other_customer(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        other_customer = await create_customer(session, workspace.id, name="Initech")
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
            customer_id=other_customer.id,
            pipeline_id=pipeline.id,
            stage_id=stage.id,
            currency="EUR",
        )
        session.add(opportunity)
        await session.commit()

        mismatch = await client.post(
            "/v1/invoices",
            json={
                "customer_id": encode("customer", customer.id),
                "opportunity_id": encode("opportunity", opportunity.id),
                "lines": [LINE],
            },
            headers=auth,
        )
        missing = await client.post(
            "/v1/invoices",
            json={
                "customer_id": encode("customer", customer.id),
                "opportunity_id": encode("opportunity", new_uuid()),
                "lines": [LINE],
            },
            headers=auth,
        )
        matching = await create_invoice(
            client,
            auth,
            other_customer,
            opportunity_id=encode("opportunity", opportunity.id),
        )

        assert mismatch.status_code == 422
        assert mismatch.json()["errors"][0]["field"] == "opportunity_id"
        assert missing.status_code == 404
        assert missing.json()["code"] == "opportunity_not_found"
        assert matching["opportunity_id"] == encode("opportunity", opportunity.id)

    async def test_customer_currency_unknown(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id, currency="XYZ")

        response = await post_line(client, auth, encode("customer", customer.id), LINE)

        assert response.status_code == 422
        assert response.json()["code"] == "unknown_currency"

    async def test_requires_write_scope(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        created = await create_api_key(
            session, workspace_id=workspace.id, name="ro", scopes=["billing:read"]
        )
        await session.commit()

        response = await post_line(
            client,
            {"Authorization": f"Bearer {created.secret}"},
            encode("customer", customer.id),
            LINE,
        )

        assert response.status_code == 403
        assert response.json()["missing_scope"] == "billing:write"

    async def test_without_key(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/invoices")

        assert response.status_code == 401


class TestInvoiceValidation:
    async def invalid(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        line: dict[str, Any],
    ) -> dict[str, Any]:
        customer = await create_customer(session, workspace.id)
        response = await post_line(client, auth, encode("customer", customer.id), line)
        assert response.status_code == 422, response.text
        problem: dict[str, Any] = response.json()
        assert problem["code"] == "validation_failed"
        assert await session.scalar(select(func.count()).select_from(Invoice)) == 0
        return problem

    async def test_bad_quantity_string(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        problem = await self.invalid(
            client, auth, session, workspace, {**LINE, "quantity": "1,5"}
        )

        error = problem["errors"][0]
        assert error["field"] == "lines.0.quantity"
        assert error["code"] == "invalid_decimal"
        assert "'1,5'" in error["message"]

    async def test_quantity_exponent(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        problem = await self.invalid(
            client, auth, session, workspace, {**LINE, "quantity": "1e3"}
        )

        assert problem["errors"][0]["code"] == "invalid_decimal"

    async def test_quantity_as_number(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        problem = await self.invalid(
            client, auth, session, workspace, {**LINE, "quantity": 1.5}
        )

        error = problem["errors"][0]
        assert error["code"] == "decimal_string_required"
        assert "not a JSON number" in error["message"]

    async def test_negative_quantity(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        problem = await self.invalid(
            client, auth, session, workspace, {**LINE, "quantity": "-2"}
        )

        assert problem["errors"][0]["field"] == "lines.0.quantity"
        assert "negative" in problem["errors"][0]["message"]

    async def test_zero_quantity(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        problem = await self.invalid(
            client, auth, session, workspace, {**LINE, "quantity": "0"}
        )

        assert problem["errors"][0]["code"] == "not_positive"

    async def test_quantity_too_precise(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        problem = await self.invalid(
            client, auth, session, workspace, {**LINE, "quantity": "1.0000001"}
        )

        assert "6 digits after the point" in problem["errors"][0]["message"]

    async def test_float_unit_amount(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        problem = await self.invalid(
            client, auth, session, workspace, {**LINE, "unit_amount": 19.99}
        )

        assert problem["errors"][0]["field"] == "lines.0.unit_amount"
        assert problem["errors"][0]["code"] == "int_type"

    async def test_whole_float_unit_amount(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        problem = await self.invalid(
            client, auth, session, workspace, {**LINE, "unit_amount": 1999.0}
        )

        assert problem["errors"][0]["code"] == "int_type"

    async def test_negative_unit_amount(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        problem = await self.invalid(
            client, auth, session, workspace, {**LINE, "unit_amount": -1}
        )

        assert problem["errors"][0]["code"] == "greater_than_equal"

    async def test_both_unit_amounts(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        problem = await self.invalid(
            client,
            auth,
            session,
            workspace,
            {**LINE, "unit_amount_decimal": "5000.5"},
        )

        error = problem["errors"][0]
        assert error["field"] == "lines.0"
        assert error["code"] == "unit_amount_conflict"
        assert error["message"] == "Send unit_amount or unit_amount_decimal, not both."

    async def test_no_unit_amount(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        problem = await self.invalid(
            client,
            auth,
            session,
            workspace,
            {"description": "Nothing", "quantity": "1"},
        )

        assert problem["errors"][0]["code"] == "unit_amount_missing"

    async def test_tax_rate_above_100(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        problem = await self.invalid(
            client, auth, session, workspace, {**LINE, "tax_rate": "100.5"}
        )

        assert problem["errors"][0]["field"] == "lines.0.tax_rate"
        assert problem["errors"][0]["code"] == "too_large"

    async def test_unknown_line_field(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        problem = await self.invalid(
            client, auth, session, workspace, {**LINE, "discount_rate": "10"}
        )

        assert problem["errors"][0] == {
            "field": "lines.0.discount_rate",
            "message": "This field is not accepted here. Remove it, or check its "
            "spelling.",
            "code": "extra_forbidden",
        }

    async def test_unknown_top_level_field(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)

        response = await client.post(
            "/v1/invoices",
            json={"customer_id": encode("customer", customer.id), "total": 5},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "total"

    async def test_unknown_currency(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)

        response = await client.post(
            "/v1/invoices",
            json={
                "customer_id": encode("customer", customer.id),
                "currency": "ABC",
                "lines": [LINE],
            },
            headers=auth,
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "currency"
        assert error["code"] == "unknown_currency"
        assert "'ABC'" in error["message"]

    async def test_line_amount_too_large(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)

        response = await post_line(
            client,
            auth,
            encode("customer", customer.id),
            {**LINE, "quantity": "99999999999999", "unit_amount": 999_999_999_999_999},
        )

        assert response.status_code == 422
        problem = response.json()
        assert problem["code"] == "amount_too_large"
        assert problem["errors"][0]["field"] == "lines.0"

    async def test_too_many_lines(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)

        response = await client.post(
            "/v1/invoices",
            json={
                "customer_id": encode("customer", customer.id),
                "lines": [LINE] * 251,
            },
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "too_long"

    async def test_not_json(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/invoices",
            content=b"{",
            headers={**auth, "Content-Type": "application/json"},
        )

        assert response.status_code == 400
        assert response.json()["code"] == "malformed_json"


class TestGetAndListInvoices:
    async def test_get_with_lines(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        created = await create_invoice(client, auth, customer)

        response = await client.get(f"/v1/invoices/{created['id']}", headers=auth)

        assert response.status_code == 200
        assert response.json() == created
        assert response.headers["etag"] == '"1"'

    async def test_other_workspace_is_404(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        created = await create_invoice(client, auth, customer)
        _, other = await make_workspace_key(session)

        response = await client.get(f"/v1/invoices/{created['id']}", headers=other)

        assert response.status_code == 404
        assert response.json()["code"] == "invoice_not_found"

    async def test_malformed_id_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get("/v1/invoices/pay_123", headers=auth)

        assert response.status_code == 404

    async def test_filters_and_pages(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        first = await create_customer(session, workspace.id)
        second = await create_customer(session, workspace.id, name="Initech")
        drafts = [await create_invoice(client, auth, first) for _ in range(3)]
        opened = await create_open_invoice(client, auth, second)

        by_status = (await client.get("/v1/invoices?status=open", headers=auth)).json()
        by_customer = (
            await client.get(
                "/v1/invoices",
                params={"customer_id": encode("customer", first.id)},
                headers=auth,
            )
        ).json()
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            page = (
                await client.get("/v1/invoices", params=params, headers=auth)
            ).json()
            seen.extend(item["id"] for item in page["data"])
            if not page["has_more"]:
                break
            cursor = page["next_cursor"]

        assert [item["id"] for item in by_status["data"]] == [opened["id"]]
        assert [item["id"] for item in by_customer["data"]] == [
            invoice["id"] for invoice in reversed(drafts)
        ]
        assert by_customer["data"][0]["lines"][0]["description"] == "Consulting"
        assert seen == [opened["id"], *(invoice["id"] for invoice in reversed(drafts))]

    async def test_bad_customer_filter(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get("/v1/invoices?customer_id=lead_1", headers=auth)

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "query.customer_id"

    async def test_bad_status_filter(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get("/v1/invoices?status=late", headers=auth)

        assert response.status_code == 422


class TestUpdateInvoice:
    async def test_changes_customer(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        other = await create_customer(session, workspace.id, name="Initech")
        created = await create_invoice(client, auth, customer)

        response = await client.patch(
            f"/v1/invoices/{created['id']}",
            json={"customer_id": encode("customer", other.id)},
            headers=auth,
        )

        assert response.status_code == 200, response.text
        assert response.json()["customer_id"] == encode("customer", other.id)

    async def test_replaces_lines(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        created = await create_invoice(client, auth, customer)

        response = await client.patch(
            f"/v1/invoices/{created['id']}",
            json={
                "lines": [
                    {"description": "A", "quantity": "1", "unit_amount": 100},
                    {"description": "B", "quantity": "2", "unit_amount": 250},
                ],
                "memo": "Updated",
            },
            headers={**auth, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        invoice = response.json()
        assert [line["description"] for line in invoice["lines"]] == ["A", "B"]
        assert invoice["total"] == 600
        assert invoice["memo"] == "Updated"
        assert invoice["version"] == 2
        assert response.headers["etag"] == '"2"'
        lines = await session.scalar(select(func.count()).select_from(InvoiceLine))
        assert lines == 2
        assert await event_types(session) == ["invoice.created", "invoice.updated"]

    async def test_rounding_change_recomputes(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        created = await create_invoice(
            client,
            auth,
            customer,
            lines=[{"description": "Half", "quantity": "0.5", "unit_amount": 5}],
        )

        response = await client.patch(
            f"/v1/invoices/{created['id']}",
            json={"rounding": "half_even"},
            headers=auth,
        )

        assert response.json()["total"] == 2
        assert created["total"] == 3

    async def test_if_match_mismatch(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        created = await create_invoice(client, auth, customer)

        response = await client.patch(
            f"/v1/invoices/{created['id']}",
            json={"memo": "x"},
            headers={**auth, "If-Match": '"5"'},
        )

        assert response.status_code == 412
        assert response.json()["current_version"] == 1

    async def test_null_currency(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        created = await create_invoice(client, auth, customer)

        response = await client.patch(
            f"/v1/invoices/{created['id']}", json={"currency": None}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "null_not_allowed"

    async def test_after_finalize_is_409(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        opened = await create_open_invoice(client, auth, customer)

        response = await client.patch(
            f"/v1/invoices/{opened['id']}", json={"memo": "late"}, headers=auth
        )

        assert response.status_code == 409
        problem = response.json()
        assert problem["code"] == "invoice_not_editable"
        assert problem["current_status"] == "open"
        stored = await client.get(f"/v1/invoices/{opened['id']}", headers=auth)
        assert stored.json()["memo"] is None


class TestFinalizeInvoice:
    async def test_numbers_and_due_date(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(
            session, workspace.id, timezone="Pacific/Kiritimati", payment_terms_days=30
        )
        draft = await create_invoice(client, auth, customer)

        response = await client.post(
            f"/v1/invoices/{draft['id']}/finalize",
            headers={**auth, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        invoice = response.json()
        year = datetime.now(UTC).year
        assert invoice["number"] == f"INV-{year}-000001"
        assert invoice["status"] == "open"
        assert invoice["version"] == 2
        assert invoice["timezone"] == "Pacific/Kiritimati"
        local_today = datetime.now(ZoneInfo("Pacific/Kiritimati")).date()
        assert invoice["due_date"] == (local_today + timedelta(days=30)).isoformat()
        assert invoice["finalized_at"] is not None
        assert invoice["overdue"] is False
        assert await event_types(session) == ["invoice.created", "invoice.finalized"]

    async def test_sequence_per_series(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)

        first = await create_open_invoice(client, auth, customer)
        second = await create_open_invoice(client, auth, customer)
        credit = await create_open_invoice(client, auth, customer, series="PRO")

        year = datetime.now(UTC).year
        assert first["number"] == f"INV-{year}-000001"
        assert second["number"] == f"INV-{year}-000002"
        assert credit["number"] == f"PRO-{year}-000001"

    async def test_workspaces_number_apart(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        other, other_auth = await make_workspace_key(session)
        mine = await create_open_invoice(
            client, auth, await create_customer(session, workspace.id)
        )
        theirs = await create_open_invoice(
            client, other_auth, await create_customer(session, other.id)
        )

        assert mine["number"].endswith("-000001")
        assert theirs["number"].endswith("-000001")

    async def test_already_open(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        opened = await create_open_invoice(client, auth, customer)

        response = await client.post(
            f"/v1/invoices/{opened['id']}/finalize", headers=auth
        )

        assert response.status_code == 409
        problem = response.json()
        assert problem["code"] == "invalid_transition"
        assert problem["current_status"] == "open"
        assert problem["allowed_transitions"] == ["void", "uncollectible"]
        series = await session.scalar(select(InvoiceNumberSeries.next_number))
        assert series == 2

    async def test_if_match_mismatch(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        draft = await create_invoice(client, auth, customer)

        response = await client.post(
            f"/v1/invoices/{draft['id']}/finalize",
            headers={**auth, "If-Match": '"9"'},
        )

        assert response.status_code == 412
        stored = (await client.get(f"/v1/invoices/{draft['id']}", headers=auth)).json()
        assert stored["status"] == "draft"
        assert stored["number"] is None

    async def test_no_lines_is_422(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        draft = await create_invoice(client, auth, customer, lines=[])

        response = await client.post(
            f"/v1/invoices/{draft['id']}/finalize", headers=auth
        )

        assert response.status_code == 422
        assert response.json()["code"] == "invoice_has_no_lines"
        assert await session.scalar(select(InvoiceNumberSeries.next_number)) is None

    async def test_zero_total_is_422(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        draft = await create_invoice(
            client,
            auth,
            customer,
            lines=[{"description": "Free", "quantity": "1", "unit_amount": 0}],
        )

        response = await client.post(
            f"/v1/invoices/{draft['id']}/finalize", headers=auth
        )

        assert response.status_code == 422
        assert response.json()["code"] == "invoice_total_zero"

    async def test_overdue_after_due_date(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        opened = await create_open_invoice(client, auth, customer)
        await session.execute(
            update(Invoice).values(
                due_date=datetime.now(UTC).date() - timedelta(days=2),
                overdue_at=datetime.now(UTC) - timedelta(days=1),
            )
        )
        await session.commit()

        response = await client.get(f"/v1/invoices/{opened['id']}", headers=auth)

        assert response.json()["overdue"] is True


class TestVoidInvoice:
    async def test_keeps_number(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        opened = await create_open_invoice(client, auth, customer)

        response = await client.post(
            f"/v1/invoices/{opened['id']}/void", headers={**auth, "If-Match": '"2"'}
        )
        following = await create_open_invoice(client, auth, customer)

        assert response.status_code == 200, response.text
        voided = response.json()
        assert voided["status"] == "void"
        assert voided["number"] == opened["number"]
        assert voided["voided_at"] is not None
        assert voided["overdue"] is False
        assert following["number"].endswith("-000002")
        assert "invoice.voided" in await event_types(session)

    async def test_draft_cannot_be_voided(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        draft = await create_invoice(client, auth, customer)

        response = await client.post(f"/v1/invoices/{draft['id']}/void", headers=auth)

        assert response.status_code == 409
        assert response.json()["allowed_transitions"] == ["open"]

    async def test_void_twice(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        opened = await create_open_invoice(client, auth, customer)
        await client.post(f"/v1/invoices/{opened['id']}/void", headers=auth)

        response = await client.post(f"/v1/invoices/{opened['id']}/void", headers=auth)

        assert response.status_code == 409
        assert response.json()["allowed_transitions"] == []

    async def test_with_payments_is_409(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        opened = await create_open_invoice(client, auth, customer)
        paid = await client.post(
            "/v1/payments",
            json={
                "customer_id": encode("customer", customer.id),
                "amount": 100,
                "currency": "EUR",
                "method": "cash",
                "invoice_id": opened["id"],
            },
            headers=auth,
        )
        assert paid.status_code == 201, paid.text

        response = await client.post(f"/v1/invoices/{opened['id']}/void", headers=auth)

        assert response.status_code == 409
        assert response.json()["code"] == "invoice_has_payments"
        assert response.json()["title"] == "Invoice has payments"


class TestStateMachine:
    async def test_published(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/meta/state-machines")

        machines = {item["resource"]: item for item in response.json()["data"]}
        assert machines["invoice"] == {
            "resource": "invoice",
            "initial": "draft",
            "transitions": {
                "draft": ["open"],
                "open": ["paid", "void", "uncollectible"],
                "uncollectible": ["paid"],
                "paid": ["open", "uncollectible"],
                "void": [],
            },
        }
