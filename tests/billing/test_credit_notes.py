"""Credit notes: amounts, rounding, limits, distribution, numbering and voiding."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.credit_notes import credit_note_service
from app.core.ids import decode, encode, new_uuid
from app.models import (
    CreditNote,
    CustomerCreditTransaction,
    Event,
    Invoice,
    Workspace,
)
from tests.billing.factories import create_customer, create_invoice, create_open_invoice
from tests.conftest import make_workspace_key


def line(quantity: str, unit_amount: int, tax_rate: str = "0") -> dict[str, Any]:
    return {
        "description": "Item",
        "quantity": quantity,
        "unit_amount": unit_amount,
        "tax_rate": tax_rate,
    }


async def credit(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    invoice: dict[str, Any],
    **body: Any,
) -> httpx.Response:
    return await client.post(
        f"/v1/invoices/{invoice['id']}/credit-notes",
        json={"reason": "other", **body},
        headers=auth,
    )


async def credited(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    invoice: dict[str, Any],
    **body: Any,
) -> dict[str, Any]:
    response = await credit(client, auth, invoice, **body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def fetch_invoice(
    client: httpx.AsyncClient, auth: dict[str, str], invoice: dict[str, Any]
) -> dict[str, Any]:
    response = await client.get(f"/v1/invoices/{invoice['id']}", headers=auth)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def pay(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    invoice: dict[str, Any],
    amount: int,
) -> dict[str, Any]:
    response = await client.post(
        "/v1/payments",
        json={
            "customer_id": invoice["customer_id"],
            "invoice_id": invoice["id"],
            "amount": amount,
            "currency": invoice["currency"],
            "method": "bank_transfer",
        },
        headers=auth,
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def customer_balance(
    client: httpx.AsyncClient, auth: dict[str, str], customer_id: str
) -> int:
    response = await client.get(f"/v1/customers/{customer_id}", headers=auth)
    assert response.status_code == 200, response.text
    value: int = response.json()["credit_balance"]
    return value


async def count_credit_notes(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(CreditNote)) or 0)


class TestCreditByLines:
    async def test_full_credit_settles_invoice(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(
            client, auth, customer, lines=[line("2", 5000, "19"), line("1", 999, "7")]
        )
        assert invoice["total"] == 11900 + 1069

        note = await credited(
            client,
            auth,
            invoice,
            reason="duplicate",
            memo="Billed twice",
            lines=[
                {"invoice_line_id": item["id"], "quantity": item["quantity"]}
                for item in invoice["lines"]
            ],
        )

        year = datetime.now(UTC).year
        assert note["id"].startswith("cn_")
        assert note["number"] == f"CN-{year}-000001"
        assert note["status"] == "issued"
        assert note["reason"] == "duplicate"
        assert note["memo"] == "Billed twice"
        assert note["subtotal"] == invoice["subtotal"]
        assert note["tax_total"] == invoice["tax_total"]
        assert note["total"] == invoice["total"]
        assert note["amount_reduced"] == invoice["total"]
        assert note["amount_credited"] == 0
        assert note["refund_amount"] == 0
        assert [item["tax_amount"] for item in note["lines"]] == [
            item["tax_amount"] for item in invoice["lines"]
        ]
        after = await fetch_invoice(client, auth, invoice)
        assert after["status"] == "paid"
        assert after["payment_status"] == "paid"
        assert after["amount_due"] == 0
        assert after["amount_remaining"] == 0
        assert after["credited_amount"] == invoice["total"]
        assert after["pre_payment_credit_notes_amount"] == invoice["total"]
        assert after["post_payment_credit_notes_amount"] == 0
        events = list(await session.scalars(select(Event.type).order_by(Event.id)))
        assert events[-2:] == ["invoice.paid", "credit_note.created"]

    async def test_partial_quantity_jpy(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id, currency="JPY")
        invoice = await create_open_invoice(
            client, auth, customer, lines=[line("3", 333, "10")]
        )
        line_id = invoice["lines"][0]["id"]
        assert (invoice["subtotal"], invoice["tax_total"]) == (999, 100)

        notes = [
            await credited(
                client,
                auth,
                invoice,
                lines=[{"invoice_line_id": line_id, "quantity": "1"}],
            )
            for _ in range(3)
        ]

        # 333 x 100 / 999 = 33.3 -> 33; 666 -> 66.7 -> 67, so 34; the rest is 33.
        assert [note["lines"][0]["amount"] for note in notes] == [333, 333, 333]
        assert [note["tax_total"] for note in notes] == [33, 34, 33]
        assert sum(note["total"] for note in notes) == invoice["total"]
        after = await fetch_invoice(client, auth, invoice)
        assert after["status"] == "paid"
        assert after["credited_amount"] == 1099

    async def test_partial_quantity_as_billed(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        discounted = {
            "description": "Item",
            "quantity": "2",
            "unit_amount": 11900,
            "discount": {"percent_off": "10"},
            "tax_rates": [{"name": "VAT", "percentage": "19", "inclusive": True}],
        }
        invoice = await create_open_invoice(client, auth, customer, lines=[discounted])
        line_id = invoice["lines"][0]["id"]
        # 2 x 119.00 less 10 % is 214.20, of which 34.20 is the VAT it includes.
        assert (invoice["total"], invoice["tax_total"]) == (21420, 3420)

        notes = [
            await credited(
                client,
                auth,
                invoice,
                lines=[{"invoice_line_id": line_id, "quantity": "1"}],
            )
            for _ in range(2)
        ]

        assert [note["lines"][0]["amount"] for note in notes] == [9000, 9000]
        assert [note["tax_total"] for note in notes] == [1710, 1710]
        assert [note["total"] for note in notes] == [10710, 10710]
        after = await fetch_invoice(client, auth, invoice)
        assert after["credited_amount"] == invoice["total"]

    async def test_tax_half_rounds_by_invoice_kwd(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id, currency="KWD")
        taxes = {}
        for rounding in ("half_up", "half_even"):
            invoice = await create_open_invoice(
                client,
                auth,
                customer,
                rounding=rounding,
                lines=[line("10", 100, "0.5")],
            )
            line_id = invoice["lines"][0]["id"]
            assert (invoice["subtotal"], invoice["tax_total"]) == (1000, 5)

            first = await credited(
                client,
                auth,
                invoice,
                lines=[{"invoice_line_id": line_id, "amount": 100}],
            )
            second = await credited(
                client,
                auth,
                invoice,
                lines=[{"invoice_line_id": line_id, "quantity": "1"}],
            )
            taxes[rounding] = (first["tax_total"], second["tax_total"])

        # 100 x 5 / 1000 = 0.5 exactly: half up gives 1, half even gives 0; the
        # cumulative 1.0 after the second note corrects either way.
        assert taxes == {"half_up": (1, 0), "half_even": (0, 1)}

    async def test_line_quantity_over_credit_refused(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        line_id = invoice["lines"][0]["id"]
        await credited(
            client,
            auth,
            invoice,
            lines=[{"invoice_line_id": line_id, "quantity": "1.5"}],
        )

        response = await credit(
            client, auth, invoice, lines=[{"invoice_line_id": line_id, "quantity": "1"}]
        )

        assert response.status_code == 409, response.text
        problem = response.json()
        assert problem["code"] == "credit_exceeds_invoice"
        assert problem["quantity_creditable"] == "0.5"
        assert problem["errors"][0]["field"] == "lines.0.quantity"
        assert await count_credit_notes(session) == 1

    async def test_unknown_line_refused(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        other = await create_open_invoice(client, auth, customer)

        response = await credit(
            client,
            auth,
            invoice,
            lines=[{"invoice_line_id": other["lines"][0]["id"], "amount": 100}],
        )

        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "lines.0.invoice_line_id"
        assert await count_credit_notes(session) == 0

    async def test_quantity_and_amount_both_refused(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)

        response = await credit(
            client,
            auth,
            invoice,
            lines=[
                {
                    "invoice_line_id": invoice["lines"][0]["id"],
                    "amount": 100,
                    "quantity": "1",
                }
            ],
        )

        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "lines.0"


class TestCreditLump:
    async def test_tax_split_over_rates_usd(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id, currency="USD")
        invoice = await create_open_invoice(
            client, auth, customer, lines=[line("1", 1999, "19"), line("1", 1000, "7")]
        )
        # 1999 + 380 at 19 %, 1000 + 70 at 7 %.
        assert invoice["total"] == 3449

        first = await credited(client, auth, invoice, amount=1000)
        rest = await credited(client, auth, invoice, amount=2449)

        # 1000 x 2379 / 3449 = 689.76 and 1000 x 1070 / 3449 = 310.24, so 690 + 310.
        assert [
            (item["tax_rate"], item["amount"] + item["tax_amount"])
            for item in first["lines"]
        ] == [
            ("7", 310),
            ("19", 690),
        ]
        # 690 x 380 / 2379 = 110.2 -> 110; 310 x 70 / 1070 = 20.3 -> 20.
        assert [item["tax_amount"] for item in first["lines"]] == [20, 110]
        assert first["total"] == 1000
        assert first["tax_total"] == 130
        assert rest["tax_total"] == 450 - 130
        assert first["subtotal"] + rest["subtotal"] == invoice["subtotal"]
        assert first["lines"][0]["invoice_line_id"] is None
        after = await fetch_invoice(client, auth, invoice)
        assert after["status"] == "paid"
        assert after["credited_amount"] == 3449

    async def test_line_after_lump_keeps_rate_tax(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id, currency="USD")
        invoice = await create_open_invoice(
            client, auth, customer, lines=[line("1", 1999, "19"), line("1", 1000, "7")]
        )
        seven_percent = invoice["lines"][1]["id"]
        # 310 of the lump goes to the 7 % rate, which totals 1070, so 760 is left.
        await credited(client, auth, invoice, amount=1000)

        whole_line = await credit(
            client,
            auth,
            invoice,
            lines=[{"invoice_line_id": seven_percent, "quantity": "1"}],
        )
        part = await credited(
            client,
            auth,
            invoice,
            lines=[{"invoice_line_id": seven_percent, "amount": 700}],
        )

        assert whole_line.status_code == 409, whole_line.text
        problem = whole_line.json()
        assert problem["code"] == "credit_exceeds_invoice"
        assert problem["rate_creditable"] == 760
        assert part["total"] == 749
        notes = (
            await client.get(
                f"/v1/credit-notes?invoice_id={invoice['id']}", headers=auth
            )
        ).json()["data"]
        credited_at_seven = sum(
            item["amount"] + item["tax_amount"]
            for note in notes
            for item in note["lines"]
            if item["tax_rate"] == "7"
        )
        assert credited_at_seven == 310 + 749

    async def test_over_credit_refused(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        await credited(client, auth, invoice, amount=7000)

        response = await credit(client, auth, invoice, amount=3001)

        assert response.status_code == 409, response.text
        problem = response.json()
        assert problem["code"] == "credit_exceeds_invoice"
        assert problem["creditable"] == 3000
        assert await count_credit_notes(session) == 1
        after = await fetch_invoice(client, auth, invoice)
        assert after["credited_amount"] == 7000
        assert after["amount_due"] == 3000

    async def test_lines_and_amount_both_refused(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)

        response = await credit(
            client,
            auth,
            invoice,
            amount=100,
            lines=[{"invoice_line_id": invoice["lines"][0]["id"], "amount": 100}],
        )

        assert response.status_code == 422, response.text


class TestCreditableInvoices:
    async def test_draft_and_void_refused(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        draft = await create_invoice(client, auth, customer)
        voided = await create_open_invoice(client, auth, customer)
        response = await client.post(f"/v1/invoices/{voided['id']}/void", headers=auth)
        assert response.status_code == 200, response.text

        for invoice, status in ((draft, "draft"), (voided, "void")):
            response = await credit(client, auth, invoice, amount=100)

            assert response.status_code == 409, response.text
            assert response.json()["code"] == "invoice_not_creditable"
            assert response.json()["current_status"] == status
        assert await count_credit_notes(session) == 0

    async def test_uncollectible_creditable(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        row = await session.get(Invoice, decode("invoice", invoice["id"]))
        assert row is not None
        row.status = "uncollectible"
        await session.commit()

        note = await credited(client, auth, invoice, amount=10000)

        assert note["amount_reduced"] == 10000
        assert (await fetch_invoice(client, auth, invoice))["status"] == "paid"

    async def test_invoice_with_credit_cannot_be_voided(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        await credited(client, auth, invoice, amount=1000)

        response = await client.post(f"/v1/invoices/{invoice['id']}/void", headers=auth)

        assert response.status_code == 409, response.text
        assert response.json()["code"] == "invoice_has_credit"
        assert response.json()["title"] == "Invoice has credit"
        assert (await fetch_invoice(client, auth, invoice))["status"] == "open"


class TestDistribution:
    async def test_default_reduces_then_credits(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        await pay(client, auth, invoice, 7000)

        note = await credited(client, auth, invoice, amount=5000)

        assert note["amount_reduced"] == 3000
        assert note["amount_credited"] == 2000
        after = await fetch_invoice(client, auth, invoice)
        assert after["status"] == "paid"
        assert after["amount_due"] == 7000
        assert after["amount_paid"] == 7000
        assert after["pre_payment_credit_notes_amount"] == 3000
        assert after["post_payment_credit_notes_amount"] == 2000
        assert await customer_balance(client, auth, invoice["customer_id"]) == 2000

    async def test_split_three_ways(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        payment = await pay(client, auth, invoice, 6000)

        note = await credited(
            client,
            auth,
            invoice,
            amount=6000,
            amount_to_reduce=1000,
            amount_to_credit=2000,
            refund_amount=3000,
            refund_payment_id=payment["id"],
        )

        assert note["refund_amount"] == 3000
        assert note["refund_status"] == "pending"
        assert note["refund_payment_id"] == payment["id"]
        after = await fetch_invoice(client, auth, invoice)
        assert after["amount_due"] == 9000
        assert after["amount_remaining"] == 3000
        assert after["credited_amount"] == 6000
        assert after["payment_status"] == "partially_paid"
        assert await customer_balance(client, auth, invoice["customer_id"]) == 2000
        rows = list(await session.scalars(select(CustomerCreditTransaction)))
        assert [(row.source, row.amount) for row in rows] == [("credit_note", 2000)]
        assert rows[0].credit_note_id == decode("credit_note", note["id"])

    async def test_deprecated_refund_name_accepted(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        await pay(client, auth, invoice, 10000)

        note = await credited(client, auth, invoice, amount=1500, amount_to_refund=1500)

        assert note["refund_amount"] == 1500
        assert note["amount_credited"] == 0
        assert note["refund_status"] == "pending"
        assert "amount_to_refund" not in note

    async def test_both_refund_names_refused(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        await pay(client, auth, invoice, 10000)

        response = await credit(
            client,
            auth,
            invoice,
            amount=1500,
            refund_amount=1500,
            amount_to_refund=1500,
        )

        assert response.status_code == 422, response.text
        error = response.json()["errors"][0]
        assert error["field"] == "amount_to_refund"
        assert error["code"] == "refund_amount_twice"
        assert await count_credit_notes(session) == 0

    async def test_parts_must_sum_to_total(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)

        response = await credit(
            client, auth, invoice, amount=5000, amount_to_reduce=4000
        )

        assert response.status_code == 422, response.text
        assert response.json()["total"] == 5000
        fields = [error["field"] for error in response.json()["errors"]]
        assert fields == ["amount_to_reduce", "amount_to_credit", "refund_amount"]
        assert await count_credit_notes(session) == 0

    async def test_reduce_paid_invoice_refused(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        await pay(client, auth, invoice, 10000)

        response = await credit(
            client, auth, invoice, amount=1000, amount_to_reduce=1000
        )

        assert response.status_code == 409, response.text
        assert response.json()["amount_remaining"] == 0
        assert await count_credit_notes(session) == 0

    async def test_credit_beyond_paid_refused(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        await pay(client, auth, invoice, 2000)

        response = await credit(
            client, auth, invoice, amount=3000, amount_to_credit=3000
        )

        assert response.status_code == 409, response.text
        assert response.json()["amount_returnable"] == 2000
        fields = [error["field"] for error in response.json()["errors"]]
        assert fields == ["amount_to_credit"]
        assert await customer_balance(client, auth, invoice["customer_id"]) == 0

    async def test_refund_beyond_paid_names_refund(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        await pay(client, auth, invoice, 2000)

        response = await credit(client, auth, invoice, amount=3000, refund_amount=3000)

        assert response.status_code == 409, response.text
        assert response.json()["code"] == "credit_exceeds_invoice"
        fields = [error["field"] for error in response.json()["errors"]]
        assert fields == ["refund_amount"]

    async def test_overpaid_invoice_credited(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        await pay(client, auth, invoice, 12000)

        note = await credited(client, auth, invoice, amount=10000)

        assert note["amount_credited"] == 10000
        after = await fetch_invoice(client, auth, invoice)
        assert after["payment_status"] == "overpaid"
        assert after["amount_overpaid"] == 2000
        assert await customer_balance(client, auth, invoice["customer_id"]) == 12000

    async def test_refund_payment_of_other_customer_refused(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        other = await create_customer(session, workspace.id, name="Initech")
        invoice = await create_open_invoice(client, auth, customer)
        await pay(client, auth, invoice, 10000)
        other_invoice = await create_open_invoice(client, auth, other)
        payment = await pay(client, auth, other_invoice, 10000)

        response = await credit(
            client,
            auth,
            invoice,
            amount=1000,
            refund_amount=1000,
            refund_payment_id=payment["id"],
        )

        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "refund_payment_id"
        assert await count_credit_notes(session) == 0


class TestPreview:
    async def test_writes_nothing(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(
            client, auth, customer, lines=[line("2", 5000, "19")]
        )
        events_before = await session.scalar(select(func.count()).select_from(Event))

        response = await client.post(
            f"/v1/invoices/{invoice['id']}/credit-notes/preview",
            json={"reason": "order_change", "amount": 5950},
            headers=auth,
        )

        assert response.status_code == 200, response.text
        preview = response.json()
        assert preview["object"] == "credit_note_preview"
        assert preview["total"] == 5950
        assert preview["tax_total"] == 950
        assert preview["creditable_before"] == 11900
        assert preview["creditable_after"] == 5950
        assert preview["invoice_amount_due_after"] == 5950
        assert await count_credit_notes(session) == 0
        events_after = await session.scalar(select(func.count()).select_from(Event))
        assert events_after == events_before
        assert (await fetch_invoice(client, auth, invoice))["amount_due"] == 11900


class TestReadCreditNotes:
    async def test_get_and_list_filters(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        first = await create_open_invoice(client, auth, customer)
        second = await create_open_invoice(client, auth, customer)
        note = await credited(client, auth, first, amount=100, reason="fraudulent")
        await credited(client, auth, second, amount=200)

        fetched = await client.get(f"/v1/credit-notes/{note['id']}", headers=auth)
        by_invoice = await client.get(
            "/v1/credit-notes", params={"invoice_id": first["id"]}, headers=auth
        )
        by_reason = await client.get(
            "/v1/credit-notes", params={"reason": "other"}, headers=auth
        )

        assert fetched.status_code == 200
        assert fetched.json() == note
        assert fetched.headers["etag"] == '"1"'
        assert [item["id"] for item in by_invoice.json()["data"]] == [note["id"]]
        assert [item["total"] for item in by_reason.json()["data"]] == [200]

    async def test_other_workspace_not_found(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        note = await credited(client, auth, invoice, amount=100)
        _, other_auth = await make_workspace_key(session)

        fetched = await client.get(f"/v1/credit-notes/{note['id']}", headers=other_auth)
        created = await credit(client, other_auth, invoice, amount=100)

        assert fetched.status_code == 404
        assert created.status_code == 404
        assert await count_credit_notes(session) == 1


class TestVoidCreditNote:
    async def test_restores_invoice(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        note = await credited(client, auth, invoice, amount=4000)

        response = await client.post(
            f"/v1/credit-notes/{note['id']}/void",
            json={"reason": "Issued by mistake"},
            headers={**auth, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        voided = response.json()
        assert voided["status"] == "void"
        assert voided["void_reason"] == "Issued by mistake"
        assert voided["voided_at"] is not None
        after = await fetch_invoice(client, auth, invoice)
        assert after["amount_due"] == 10000
        assert after["credited_amount"] == 0
        again = await client.post(f"/v1/credit-notes/{note['id']}/void", headers=auth)
        assert again.status_code == 409
        assert again.json()["code"] == "credit_note_not_voidable"
        events = list(await session.scalars(select(Event.type).order_by(Event.id)))
        assert events[-2:] == ["invoice.updated", "credit_note.voided"]
        # A voided note's credit is creditable again.
        assert (await credited(client, auth, invoice, amount=10000))["total"] == 10000

    async def test_used_credit_refused(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        paid = await create_open_invoice(client, auth, customer)
        await pay(client, auth, paid, 10000)
        note = await credited(client, auth, paid, amount=3000)
        later = await create_open_invoice(client, auth, customer)
        applied = await client.post(
            f"/v1/invoices/{later['id']}/apply-credit",
            json={"amount": 1000},
            headers=auth,
        )
        assert applied.status_code == 200, applied.text

        response = await client.post(
            f"/v1/credit-notes/{note['id']}/void", headers=auth
        )

        assert response.status_code == 409, response.text
        problem = response.json()
        assert problem["code"] == "credit_note_not_voidable"
        assert problem["available"] == 2000
        stored = await client.get(f"/v1/credit-notes/{note['id']}", headers=auth)
        assert stored.json()["status"] == "issued"
        assert await customer_balance(client, auth, paid["customer_id"]) == 2000

    async def test_settled_reduction_refused(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        note = await credited(client, auth, invoice, amount=4000)
        await pay(client, auth, invoice, 6000)

        response = await client.post(
            f"/v1/credit-notes/{note['id']}/void", headers=auth
        )

        assert response.status_code == 409, response.text
        assert response.json()["invoice_status"] == "paid"

    async def test_paid_out_refund_refused(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        await pay(client, auth, invoice, 10000)
        note = await credited(client, auth, invoice, amount=2500, refund_amount=2500)
        note_id = decode("credit_note", note["id"])
        await credit_note_service.mark_refund_paid(
            session, workspace.id, note_id, actor="system"
        )
        await credit_note_service.mark_refund_paid(
            session, workspace.id, note_id, actor="system"
        )
        await session.commit()

        response = await client.post(
            f"/v1/credit-notes/{note['id']}/void", headers=auth
        )

        assert response.status_code == 409, response.text
        assert response.json()["refund_status"] == "succeeded"
        updates = await session.scalar(
            select(func.count())
            .select_from(Event)
            .where(Event.type == "credit_note.updated")
        )
        assert updates == 1


class TestRefundPayment:
    async def test_payment_of_other_invoice_refused(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        await pay(client, auth, invoice, 10000)
        other_invoice = await create_open_invoice(client, auth, customer)
        payment = await pay(client, auth, other_invoice, 10000)

        response = await credit(
            client,
            auth,
            invoice,
            amount=1000,
            refund_amount=1000,
            refund_payment_id=payment["id"],
        )

        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["code"] == "invalid_credit_note"
        assert problem["errors"][0]["field"] == "refund_payment_id"
        assert problem["errors"][0]["code"] == "not_allocated"
        assert await count_credit_notes(session) == 0

    async def test_earlier_refunds_count(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        first = await pay(client, auth, invoice, 4000)
        await pay(client, auth, invoice, 6000)
        await credited(
            client,
            auth,
            invoice,
            amount=3000,
            refund_amount=3000,
            refund_payment_id=first["id"],
        )

        response = await credit(
            client,
            auth,
            invoice,
            amount=1500,
            refund_amount=1500,
            refund_payment_id=first["id"],
        )

        assert response.status_code == 409, response.text
        problem = response.json()
        assert problem["payment_refundable"] == 1000
        assert problem["errors"][0]["field"] == "refund_amount"
        assert await count_credit_notes(session) == 1


class TestMarkRefundPaid:
    async def test_pending_refund_paid(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        await pay(client, auth, invoice, 10000)
        note = await credited(client, auth, invoice, amount=2500, refund_amount=2500)
        url = f"/v1/credit-notes/{note['id']}/mark-refund-paid"

        response = await client.post(url, headers={**auth, "If-Match": '"1"'})
        again = await client.post(url, headers=auth)
        void = await client.post(f"/v1/credit-notes/{note['id']}/void", headers=auth)

        assert response.status_code == 200, response.text
        assert response.json()["refund_status"] == "succeeded"
        assert response.headers["etag"] == '"2"'
        assert again.status_code == 200, again.text
        assert again.json()["version"] == 2
        assert void.status_code == 409, void.text
        assert void.json()["refund_status"] == "succeeded"
        events = list(
            await session.scalars(
                select(Event.type)
                .where(Event.object_id == decode("credit_note", note["id"]))
                .order_by(Event.sequence)
            )
        )
        assert events == ["credit_note.created", "credit_note.updated"]

    async def test_idempotency_key_replays(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        await pay(client, auth, invoice, 10000)
        note = await credited(client, auth, invoice, amount=2500, refund_amount=2500)
        url = f"/v1/credit-notes/{note['id']}/mark-refund-paid"
        headers = {**auth, "Idempotency-Key": "refund-paid-once"}

        first = await client.post(url, headers=headers)
        second = await client.post(url, headers=headers)

        assert first.status_code == 200, first.text
        assert second.status_code == 200, second.text
        assert second.headers["idempotent-replayed"] == "true"
        assert second.json() == first.json()

    async def test_void_note_refused(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        await pay(client, auth, invoice, 10000)
        note = await credited(client, auth, invoice, amount=2500, refund_amount=2500)
        voided = await client.post(f"/v1/credit-notes/{note['id']}/void", headers=auth)
        assert voided.status_code == 200, voided.text

        response = await client.post(
            f"/v1/credit-notes/{note['id']}/mark-refund-paid", headers=auth
        )

        assert response.status_code == 409, response.text
        problem = response.json()
        assert problem["code"] == "credit_note_refund_not_pending"
        assert problem["refund_status"] == "canceled"
        stored = await session.get(CreditNote, decode("credit_note", note["id"]))
        assert stored is not None
        assert stored.refund_status == "canceled"

    async def test_note_without_refund_refused(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        note = await credited(client, auth, invoice, amount=1000)

        response = await client.post(
            f"/v1/credit-notes/{note['id']}/mark-refund-paid", headers=auth
        )

        assert response.status_code == 409, response.text
        assert response.json()["refund_status"] is None

    async def test_stale_if_match_refused(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        await pay(client, auth, invoice, 10000)
        note = await credited(client, auth, invoice, amount=2500, refund_amount=2500)

        response = await client.post(
            f"/v1/credit-notes/{note['id']}/mark-refund-paid",
            headers={**auth, "If-Match": '"7"'},
        )

        assert response.status_code == 412, response.text
        fetched = await client.get(f"/v1/credit-notes/{note['id']}", headers=auth)
        assert fetched.json()["refund_status"] == "pending"

    async def test_unknown_note_not_found(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        unknown = encode("credit_note", new_uuid())

        response = await client.post(
            f"/v1/credit-notes/{unknown}/mark-refund-paid", headers=auth
        )

        assert response.status_code == 404, response.text


class TestIdempotency:
    async def test_same_key_one_note(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)
        headers = {**auth, "Idempotency-Key": "credit-once"}
        body = {"reason": "other", "amount": 1500}
        url = f"/v1/invoices/{invoice['id']}/credit-notes"

        first = await client.post(url, json=body, headers=headers)
        second = await client.post(url, json=body, headers=headers)

        assert first.status_code == 201, first.text
        assert second.status_code == 201, second.text
        assert second.headers["idempotent-replayed"] == "true"
        assert second.json()["id"] == first.json()["id"]
        assert await count_credit_notes(session) == 1
        assert (await fetch_invoice(client, auth, invoice))["credited_amount"] == 1500


class TestNumbering:
    async def test_series_counts_apart_from_invoices(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        customer = await create_customer(session, workspace.id)
        invoice = await create_open_invoice(client, auth, customer)

        first = await credited(client, auth, invoice, amount=100)
        custom = await credited(client, auth, invoice, amount=100, series="CR")
        second = await credited(client, auth, invoice, amount=100)

        year = datetime.now(UTC).year
        assert [first["number"], custom["number"], second["number"]] == [
            f"CN-{year}-000001",
            f"CR-{year}-000001",
            f"CN-{year}-000002",
        ]
        assert invoice["number"] == f"INV-{year}-000001"
        assert encode("customer", customer.id) == first["customer_id"]
