"""The billing profile, the invoice PDF and its text, read back with pypdf."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fontTools.ttLib import TTFont
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing import pdf
from app.core.ids import encode
from app.models import Event, Workspace
from tests.billing.factories import create_customer, create_invoice, create_open_invoice
from tests.conftest import make_workspace_key

PROFILE = {
    "legal_name": "Acme Handels GmbH",
    "email": "billing@acme.example",
    "phone": "+49 30 1234567",
    "address": {
        "line1": "Hauptstraße 1",
        "city": "Berlin",
        "postal_code": "10115",
        "country": "DE",
    },
    "tax_id": {"type": "eu_vat", "value": "DE123456789"},
    "payment_instructions": "IBAN DE89 3704 0044 0532 0130 00\nBIC COBADEFFXXX",
    "invoice_footer": "Amtsgericht Berlin HRB 12345",
}

NAMES = {
    "latin": "Zoë Ångström Łódź Ærøskøbing",
    "greek": "Ελληνική Εταιρεία Α.Ε.",
    "cyrillic": "ООО Ромашка и Партнёры",
    "cjk": "株式会社テスト 한국상사",
    "hebrew": "שלום עולם בע״מ",
    "arabic": "شركة الأمل للتجارة",
}


def pdf_text(content: bytes) -> str:
    reader = PdfReader(io.BytesIO(content))
    return "\n".join(page.extract_text() for page in reader.pages)


def pdf_lines(content: bytes) -> list[str]:
    return [line.strip() for line in pdf_text(content).splitlines()]


async def set_profile(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: Any
) -> dict[str, Any]:
    response = await client.patch(
        "/v1/workspace/billing-profile", json={**PROFILE, **fields}, headers=auth
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def get_pdf(
    client: httpx.AsyncClient, auth: dict[str, str], invoice_id: str
) -> httpx.Response:
    return await client.get(f"/v1/invoices/{invoice_id}/pdf", headers=auth)


class TestBillingProfile:
    async def test_empty_until_set(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get("/v1/workspace/billing-profile", headers=auth)

        assert response.status_code == 200
        assert response.headers["etag"] == '"0"'
        body = response.json()
        assert body["id"] is None
        assert body["legal_name"] is None
        assert body["version"] == 0

    async def test_update_sets_fields(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
    ) -> None:
        body = await set_profile(client, auth)

        assert body["id"].startswith("bprof_")
        assert body["legal_name"] == "Acme Handels GmbH"
        assert body["address"]["city"] == "Berlin"
        assert body["tax_id"] == {"type": "eu_vat", "value": "DE123456789"}
        assert body["payment_instructions"].endswith("BIC COBADEFFXXX")
        assert body["version"] == 1
        events = list(
            await session.scalars(
                select(Event.type).where(Event.type == "billing_profile.updated")
            )
        )
        assert events == ["billing_profile.updated"]

    async def test_null_clears_a_field(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await set_profile(client, auth)

        response = await client.patch(
            "/v1/workspace/billing-profile",
            json={"address": None, "phone": None},
            headers={**auth, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["address"] is None
        assert body["phone"] is None
        assert body["legal_name"] == "Acme Handels GmbH"
        assert response.headers["etag"] == '"2"'

    async def test_unchanged_update_keeps_version(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await set_profile(client, auth)

        again = await set_profile(client, auth)

        assert again["version"] == 1

    async def test_stale_if_match_changes_nothing(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await set_profile(client, auth)

        response = await client.patch(
            "/v1/workspace/billing-profile",
            json={"legal_name": "Other"},
            headers={**auth, "If-Match": '"0"'},
        )

        assert response.status_code == 412
        current = await client.get("/v1/workspace/billing-profile", headers=auth)
        assert current.json()["legal_name"] == "Acme Handels GmbH"

    async def test_invalid_country_names_field(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.patch(
            "/v1/workspace/billing-profile",
            json={"address": {"line1": "x", "city": "y", "country": "XX"}},
            headers=auth,
        )

        assert response.status_code == 422
        fields = [error["field"] for error in response.json()["errors"]]
        assert fields == ["address.country"]


class TestInvoicePdf:
    async def test_open_invoice_shows_everything(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        await set_profile(client, auth)
        customer = await create_customer(
            session,
            workspace.id,
            name="Globex",
            legal_name="Globex Corporation Ltd",
            billing_email="ap@globex.example",
            billing_address_line1="1 Infinite Loop",
            billing_address_city="Cupertino",
            billing_address_region="CA",
            billing_address_postal_code="95014",
            billing_address_country="US",
            tax_id="US12-3456789",
            tax_id_type="us_ein",
        )
        invoice = await create_open_invoice(
            client,
            auth,
            customer,
            lines=[
                {
                    "description": "Licence",
                    "quantity": "3",
                    "unit_amount": 123456,
                    "tax_rate": "19",
                },
                {
                    "description": "Support hours",
                    "quantity": "1.25",
                    "unit_amount_decimal": "3333.5",
                    "tax_rate": "7",
                },
            ],
            memo="Thank you for your order",
        )

        response = await get_pdf(client, auth, invoice["id"])

        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/pdf"
        assert response.content.startswith(b"%PDF-")
        number = invoice["number"]
        assert response.headers["content-disposition"] == (
            f'inline; filename="{number}.pdf"'
        )
        lines = pdf_lines(response.content)
        text = "\n".join(lines)
        for expected in (
            "Acme Handels GmbH",
            "Hauptstraße 1",
            "10115 Berlin",
            "Germany",
            "Tax ID: DE123456789",
            "billing@acme.example",
            "Globex Corporation Ltd",
            "95014 Cupertino",
            "United States",
            "Tax ID: US12-3456789",
            "ap@globex.example",
            "IBAN DE89 3704 0044 0532 0130 00",
            "BIC COBADEFFXXX",
            "Thank you for your order",
            "Amtsgericht Berlin HRB 12345",
        ):
            assert expected in lines
        assert f"Number {number}" in lines
        # The issue date is the finalization's date in the invoice's time zone.
        finalized_at = datetime.fromisoformat(invoice["finalized_at"])
        issued = finalized_at.astimezone(ZoneInfo(invoice["timezone"] or "UTC"))
        assert f"Issue date {issued.date().isoformat()}" in text
        assert f"Due date {invoice['due_date']}" in lines
        assert "Currency EUR" in lines
        # 3 x 1,234.56 = 3,703.68 at 19 %; 1.25 x 33.335 = 41.66875 -> 41.67 at 7 %.
        assert "Licence 3 1,234.56 - 19 % 3,703.68" in lines
        assert "Support hours 1.25 33.335 - 7 % 41.67" in lines
        assert "Tax 7 % 41.67 2.92" in lines
        assert "Tax 19 % 3,703.68 703.70" in lines
        assert "Subtotal 3,745.35" in lines
        assert "Tax 706.62" in lines
        assert "Total (EUR) 4,451.97" in lines
        assert "Amount paid 0.00" in lines
        assert "Amount due (EUR) 4,451.97" in lines
        assert invoice["total"] == 445197

    async def test_amounts_follow_currency_exponent(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        yen = await create_open_invoice(
            client,
            auth,
            customer,
            currency="JPY",
            lines=[{"description": "Seat", "quantity": "2", "unit_amount": 150000}],
        )
        dinar = await create_open_invoice(
            client,
            auth,
            customer,
            currency="KWD",
            lines=[{"description": "Seat", "quantity": "1", "unit_amount": 1250}],
        )

        yen_lines = pdf_lines((await get_pdf(client, auth, yen["id"])).content)
        dinar_lines = pdf_lines((await get_pdf(client, auth, dinar["id"])).content)

        assert "Total (JPY) 300,000" in yen_lines
        assert "Seat 2 150,000 - 0 % 300,000" in yen_lines
        assert "Total (KWD) 1.250" in dinar_lines
        assert "Amount paid 0.000" in dinar_lines

    async def test_amount_paid_changes_etag(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        first = await get_pdf(client, auth, invoice["id"])
        etag = first.headers["etag"]

        unchanged = await client.get(
            f"/v1/invoices/{invoice['id']}/pdf",
            headers={**auth, "If-None-Match": etag},
        )
        paid = await client.post(
            "/v1/payments",
            json={
                "customer_id": encode("customer", customer.id),
                "amount": 4000,
                "currency": "EUR",
                "method": "bank_transfer",
                "invoice_id": invoice["id"],
            },
            headers=auth,
        )
        after = await client.get(
            f"/v1/invoices/{invoice['id']}/pdf",
            headers={**auth, "If-None-Match": etag},
        )

        assert first.headers["cache-control"] == "private, no-cache"
        assert unchanged.status_code == 304
        assert unchanged.content == b""
        assert paid.status_code == 201, paid.text
        assert after.status_code == 200
        assert after.headers["etag"] != etag
        lines = pdf_lines(after.content)
        assert "Amount paid 40.00" in lines
        assert "Amount due (EUR) 60.00" in lines

    async def test_finalized_keeps_its_parties(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        await set_profile(client, auth)
        customer = await create_customer(
            session, workspace.id, legal_name="Globex Corporation Ltd"
        )
        invoice = await create_open_invoice(client, auth, customer)
        draft = await create_invoice(client, auth, customer)

        await set_profile(client, auth, legal_name="Acme Renamed GmbH")
        renamed = await client.patch(
            f"/v1/customers/{encode('customer', customer.id)}",
            json={"legal_name": "Globex Renamed Inc"},
            headers=auth,
        )
        issued = pdf_lines((await get_pdf(client, auth, invoice["id"])).content)
        current = pdf_lines((await get_pdf(client, auth, draft["id"])).content)

        assert renamed.status_code == 200, renamed.text
        assert issued[0].startswith("Acme Handels GmbH")
        assert "Globex Corporation Ltd" in issued
        assert "Globex Renamed Inc" not in issued
        assert any(line.startswith("Acme Renamed GmbH") for line in current)
        assert "Globex Renamed Inc" in current

    async def test_draft_is_marked(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        draft = await create_invoice(client, auth, customer)

        response = await get_pdf(client, auth, draft["id"])

        assert response.status_code == 200
        assert response.headers["content-disposition"] == (
            'inline; filename="draft-invoice.pdf"'
        )
        text = pdf_text(response.content)
        lines = pdf_lines(response.content)
        assert "DRAFT INVOICE" in text
        assert "DRAFT" in lines
        assert "Number not assigned" in lines

    async def test_void_is_marked(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        voided = await client.post(f"/v1/invoices/{invoice['id']}/void", headers=auth)
        assert voided.status_code == 200, voided.text

        lines = pdf_lines((await get_pdf(client, auth, invoice["id"])).content)

        assert "VOID" in lines
        assert "Status Void" in lines

    async def test_seller_defaults_to_workspace_name(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)

        lines = pdf_lines((await get_pdf(client, auth, invoice["id"])).content)

        assert lines[0].startswith("Acme Test")
        assert "How to pay" not in lines

    async def test_other_workspace_is_404(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        _, other = await make_workspace_key(session)

        response = await get_pdf(client, other, invoice["id"])

        assert response.status_code == 404
        assert response.json()["code"] == "invoice_not_found"

    @pytest.mark.parametrize("script", sorted(NAMES))
    async def test_unicode_names_read_back(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
        script: str,
    ) -> None:
        name = NAMES[script]
        customer = await create_customer(session, workspace.id, name=name)
        invoice = await create_open_invoice(
            client,
            auth,
            customer,
            lines=[{"description": name, "quantity": "1", "unit_amount": 1000}],
        )

        lines = pdf_lines((await get_pdf(client, auth, invoice["id"])).content)

        # The buyer's name is a line of its own, read back in logical order.
        assert name in lines


def arabic_document(name: str) -> pdf.InvoiceDocument:
    return pdf.InvoiceDocument(
        status="open",
        mark=None,
        number="INV-2026-000001",
        issue_date="2026-12-05",
        due_date="2026-12-19",
        currency="EUR",
        seller=pdf.Party(name="Acme"),
        buyer=pdf.Party(name=name),
        lines=(),
        taxes=(),
        totals=(("Total (EUR)", "0.00"),),
        memo=None,
        payment_instructions=None,
        payment_url="https://pay.example/inv_1",
        footer=None,
        created=datetime(2026, 12, 5, tzinfo=UTC),
    )


def embedded_glyph_names(content: bytes) -> set[str]:
    reader = PdfReader(io.BytesIO(content))
    names: set[str] = set()
    resources: Any = reader.pages[0]["/Resources"]
    for font in resources["/Font"].values():
        descendant: Any = font.get_object()["/DescendantFonts"][0].get_object()
        data = descendant["/FontDescriptor"]["/FontFile2"].get_data()
        names |= set(TTFont(io.BytesIO(data)).getGlyphOrder())
    return names


class TestRender:
    def test_same_document_same_bytes(self) -> None:
        document = arabic_document(NAMES["arabic"])

        assert pdf.render(document) == pdf.render(document)

    def test_arabic_is_shaped(self) -> None:
        content = pdf.render(arabic_document(NAMES["arabic"]))

        glyphs = embedded_glyph_names(content)

        # The font names its joining forms by their Unicode presentation forms.
        # Shaped, the first word starts with the initial form of sheen (U+FEB7),
        # not the isolated letter (U+0634), and lam with alef-hamza is one
        # ligature (U+FEF7).
        assert "uniFEB7" in glyphs
        assert "uni0634" not in glyphs
        assert "uniFEF7" in glyphs

    @pytest.mark.parametrize(
        "quantity",
        ["1,234.5", "12,345.25", "999,999.999999", "99,999,999,999,999.999999"],
    )
    def test_quantity_on_one_line(self, quantity: str) -> None:
        line = pdf.DocumentLine(
            description="Consulting hours",
            quantity=quantity,
            unit_price="1,250.00",
            discount="",
            tax="19 %",
            amount="1,543,125.00",
        )
        document = replace(arabic_document("Acme"), lines=(line,))

        lines = pdf_lines(pdf.render(document))

        assert f"Consulting hours {quantity} 1,250.00 19 % 1,543,125.00" in lines

    def test_payment_link_is_printed(self) -> None:
        content = pdf.render(arabic_document("Acme"))

        assert "Pay online: https://pay.example/inv_1" in pdf_lines(content)
