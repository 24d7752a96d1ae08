from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.models import Event, Invoice, Proposal
from tests.conftest import make_workspace_key
from tests.customers.factories import create_customer
from tests.opportunities.catalog_factories import (
    add_line_item,
    create_product,
    event_types,
)
from tests.opportunities.factories import (
    create_lost_reason,
    create_opportunity,
    move,
    stage_ids,
)

TOMORROW = (datetime.now(UTC).date() + timedelta(days=2)).isoformat()


async def create_proposal(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    opportunity_id: str,
    **fields: object,
) -> dict[str, Any]:
    response = await client.post(
        f"/v1/opportunities/{opportunity_id}/proposals",
        json={"valid_until": TOMORROW, **fields},
        headers=auth,
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def sent_proposal(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Create an opportunity with a discounted and a plain line, and send a proposal."""
    opportunity = await create_opportunity(client, auth, currency="USD")
    await add_line_item(
        client,
        auth,
        opportunity["id"],
        description="Seats",
        quantity="3",
        unit_amount_decimal="333.5",
        discount_percent="10",
        tax_rate="19",
    )
    await add_line_item(
        client, auth, opportunity["id"], quantity="2.5", unit_amount=999, tax_rate="7"
    )
    proposal = await create_proposal(client, auth, opportunity["id"])
    response = await client.post(f"/v1/proposals/{proposal['id']}/send", headers=auth)
    assert response.status_code == 200, response.text
    return opportunity, response.json()


async def expire(session: AsyncSession, proposal_id: str) -> None:
    await session.execute(
        update(Proposal)
        .where(Proposal.id == ids.decode("proposal", proposal_id))
        .values(valid_until=date(2020, 1, 1))
    )
    await session.commit()


class TestCreateProposal:
    async def test_copies_line_items(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        customer = await create_customer(client, auth, timezone="Asia/Tokyo")
        opportunity = await create_opportunity(
            client, auth, customer_id=customer["id"], currency="EUR"
        )
        item = await add_line_item(
            client, auth, opportunity["id"], unit_amount=1500, tax_rate="10"
        )

        proposal = await create_proposal(
            client, auth, opportunity["id"], terms="Net 30"
        )

        assert proposal["id"].startswith("prop_")
        assert proposal["status"] == "draft"
        assert proposal["currency"] == "EUR"
        assert proposal["timezone"] == "Asia/Tokyo"
        assert proposal["terms"] == "Net 30"
        assert len(proposal["lines"]) == 1
        line = proposal["lines"][0]
        assert line["id"].startswith("pl_")
        for field in ("description", "quantity", "unit_amount", "total", "tax_rate"):
            assert line[field] == item[field], field
        assert (proposal["subtotal"], proposal["tax_total"]) == (1500, 150)
        assert proposal["total"] == 1650
        assert await event_types(session, "proposal", proposal["id"]) == [
            "proposal.created"
        ]

    async def test_lines_sent_are_priced(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        product = await create_product(client, auth, tax_rate="5")
        opportunity = await create_opportunity(client, auth, currency="USD")

        proposal = await create_proposal(
            client,
            auth,
            opportunity["id"],
            lines=[{"product_id": product["id"], "quantity": "2"}],
        )

        assert proposal["lines"][0]["amount"] == 20000
        assert proposal["lines"][0]["tax_amount"] == 1000
        assert proposal["total"] == 21000

    async def test_product_without_price_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        product = await create_product(client, auth)
        opportunity = await create_opportunity(client, auth, currency="GBP")

        response = await client.post(
            f"/v1/opportunities/{opportunity['id']}/proposals",
            json={
                "valid_until": TOMORROW,
                "lines": [{"product_id": product["id"], "quantity": "1"}],
            },
            headers=auth,
        )

        assert response.status_code == 409
        assert response.json()["currency"] == "GBP"

    async def test_line_discount_error_names_field(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        opportunity = await create_opportunity(client, auth, currency="USD")
        custom = {"description": "Setup", "quantity": "1", "unit_amount": 500}

        response = await client.post(
            f"/v1/opportunities/{opportunity['id']}/proposals",
            json={
                "valid_until": TOMORROW,
                "lines": [custom, {**custom, "discount_amount": 501}],
            },
            headers=auth,
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["code"] == "discount_exceeds_amount"
        assert error["field"] == "lines.1.discount_amount"

    async def test_past_validity_is_422(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        opportunity = await create_opportunity(client, auth, currency="USD")

        response = await client.post(
            f"/v1/opportunities/{opportunity['id']}/proposals",
            json={"valid_until": "2020-01-01"},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "date_in_past"

    async def test_closed_opportunity_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        opportunity = await create_opportunity(client, auth, currency="USD")
        stages = await stage_ids(client, auth)
        lost = [name for name in stages if "lost" in name.lower()][0]
        reason = await create_lost_reason(client, auth, "Price")
        moved = await move(
            client, auth, opportunity["id"], stages[lost], lost_reason_id=reason["id"]
        )
        assert moved.status_code == 200, moved.text

        response = await client.post(
            f"/v1/opportunities/{opportunity['id']}/proposals",
            json={"valid_until": TOMORROW},
            headers=auth,
        )

        assert response.status_code == 409
        assert response.json()["code"] == "opportunity_closed"


class TestEditAndSend:
    async def test_draft_lines_replace(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        opportunity = await create_opportunity(client, auth, currency="USD")
        proposal = await create_proposal(client, auth, opportunity["id"])

        response = await client.patch(
            f"/v1/proposals/{proposal['id']}",
            json={
                "lines": [{"description": "Setup", "quantity": "1", "unit_amount": 700}]
            },
            headers={**auth, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        assert response.json()["total"] == 700
        assert response.headers["ETag"] == '"2"'
        assert await event_types(session, "proposal", proposal["id"]) == [
            "proposal.created",
            "proposal.updated",
        ]

    async def test_send_without_lines_is_422(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        opportunity = await create_opportunity(client, auth, currency="USD")
        proposal = await create_proposal(client, auth, opportunity["id"])

        response = await client.post(
            f"/v1/proposals/{proposal['id']}/send", headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "lines"

    async def test_sent_is_frozen(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        _, proposal = await sent_proposal(client, auth)

        edited = await client.patch(
            f"/v1/proposals/{proposal['id']}", json={"terms": "x"}, headers=auth
        )
        resent = await client.post(f"/v1/proposals/{proposal['id']}/send", headers=auth)

        assert proposal["status"] == "sent"
        assert proposal["sent_at"] is not None
        assert edited.status_code == 409
        assert edited.json()["allowed_transitions"] == ["accepted", "rejected"]
        assert resent.status_code == 409
        assert await event_types(session, "proposal", proposal["id"]) == [
            "proposal.created",
            "proposal.sent",
        ]


class TestExpiry:
    async def test_expired_cannot_be_accepted(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        opportunity, proposal = await sent_proposal(client, auth)
        await expire(session, proposal["id"])

        fetched = await client.get(f"/v1/proposals/{proposal['id']}", headers=auth)
        accepted = await client.post(
            f"/v1/proposals/{proposal['id']}/accept", json={}, headers=auth
        )
        rejected = await client.post(
            f"/v1/proposals/{proposal['id']}/reject", json={}, headers=auth
        )
        expired = await client.get(
            "/v1/proposals", params={"status": "expired"}, headers=auth
        )
        sent = await client.get(
            "/v1/proposals", params={"status": "sent"}, headers=auth
        )

        assert fetched.json()["status"] == "expired"
        assert accepted.status_code == 409
        assert accepted.json()["code"] == "proposal_expired"
        assert rejected.status_code == 409
        assert [item["id"] for item in expired.json()["data"]] == [proposal["id"]]
        assert sent.json()["data"] == []
        refreshed = await client.get(
            f"/v1/opportunities/{opportunity['id']}", headers=auth
        )
        assert refreshed.json()["status"] == "open"


class TestAcceptProposal:
    async def test_wins_and_invoices_same_lines(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        opportunity, proposal = await sent_proposal(client, auth)

        response = await client.post(
            f"/v1/proposals/{proposal['id']}/accept",
            json={},
            headers={**auth, "If-Match": '"2"'},
        )

        assert response.status_code == 200, response.text
        accepted = response.json()
        assert accepted["status"] == "accepted"
        assert accepted["accepted_at"] is not None
        won = await client.get(f"/v1/opportunities/{opportunity['id']}", headers=auth)
        assert won.json()["status"] == "won"
        invoice = (
            await client.get(f"/v1/invoices/{accepted['invoice_id']}", headers=auth)
        ).json()
        assert invoice["status"] == "draft"
        assert invoice["opportunity_id"] == opportunity["id"]
        assert invoice["customer_id"] == opportunity["customer_id"]
        assert invoice["currency"] == "USD"
        assert invoice["total_excluding_tax"] == accepted["subtotal"]
        assert invoice["total_discount"] == accepted["discount_total"]
        assert invoice["tax_total"] == accepted["tax_total"]
        assert invoice["total"] == accepted["total"]
        assert [line["amount"] for line in invoice["lines"]] == [
            line["amount"] for line in accepted["lines"]
        ]
        assert [line["discount_amount"] for line in invoice["lines"]] == [
            line["discount"] for line in accepted["lines"]
        ]
        assert [line["tax_amount"] for line in invoice["lines"]] == [
            line["tax_amount"] for line in accepted["lines"]
        ]
        assert invoice["lines"][0]["description"] == "Seats"
        assert invoice["lines"][0]["discount"] == {
            "percent_off": "10",
            "amount_off": None,
        }
        assert invoice["lines"][1]["quantity"] == "2.5"
        assert await event_types(session, "proposal", proposal["id"]) == [
            "proposal.created",
            "proposal.sent",
            "proposal.accepted",
        ]
        assert (await event_types(session, "opportunity", opportunity["id"]))[-2:] == [
            "opportunity.stage_changed",
            "opportunity.won",
        ]
        assert await event_types(session, "invoice", invoice["id"]) == [
            "invoice.created"
        ]

    async def test_without_win(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        opportunity, proposal = await sent_proposal(client, auth)

        response = await client.post(
            f"/v1/proposals/{proposal['id']}/accept",
            json={"win_opportunity": False},
            headers=auth,
        )

        assert response.status_code == 200, response.text
        assert response.json()["invoice_id"] is None
        refreshed = await client.get(
            f"/v1/opportunities/{opportunity['id']}", headers=auth
        )
        assert refreshed.json()["status"] == "open"

    async def test_win_needs_billing_scope(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        _, sales_auth = await make_workspace_key(
            session, scopes=("sales:read", "sales:write"), name="sales"
        )
        _, proposal = await sent_proposal(client, sales_auth)

        response = await client.post(
            f"/v1/proposals/{proposal['id']}/accept", json={}, headers=sales_auth
        )

        assert response.status_code == 403
        assert response.json()["missing_scope"] == "billing:write"

    async def test_second_accept_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        opportunity, first = await sent_proposal(client, auth)
        second = await create_proposal(client, auth, opportunity["id"])
        await client.post(f"/v1/proposals/{second['id']}/send", headers=auth)
        body = {"win_opportunity": False}
        await client.post(
            f"/v1/proposals/{first['id']}/accept", json=body, headers=auth
        )

        response = await client.post(
            f"/v1/proposals/{second['id']}/accept", json=body, headers=auth
        )

        assert response.status_code == 409
        assert response.json()["code"] == "proposal_already_accepted"
        assert response.json()["type"].endswith(":proposal_already_accepted")
        assert response.json()["accepted_proposal_id"] == first["id"]

    async def test_lost_opportunity_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        opportunity, proposal = await sent_proposal(client, auth)
        stages = await stage_ids(client, auth)
        lost = [name for name in stages if "lost" in name.lower()][0]
        reason = await create_lost_reason(client, auth, "Price")
        moved = await move(
            client, auth, opportunity["id"], stages[lost], lost_reason_id=reason["id"]
        )
        assert moved.status_code == 200, moved.text

        response = await client.post(
            f"/v1/proposals/{proposal['id']}/accept", json={}, headers=auth
        )

        assert response.status_code == 409
        assert response.json()["code"] == "opportunity_closed"

    async def test_stale_if_match_is_412(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        _, proposal = await sent_proposal(client, auth)

        response = await client.post(
            f"/v1/proposals/{proposal['id']}/accept",
            json={},
            headers={**auth, "If-Match": '"1"'},
        )

        assert response.status_code == 412

    async def test_failure_halfway_leaves_nothing(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        opportunity, proposal = await sent_proposal(client, auth)
        events_before = await session.scalar(select(func.count()).select_from(Event))
        # A trigger makes the invoice insert fail after the opportunity was won in
        # the same transaction. It lives in the test's transaction, which rolls back.
        await session.execute(
            text(
                "CREATE FUNCTION pg_temp.fail_invoice() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN "
                "RAISE EXCEPTION 'invoice insert failed on purpose'; END $$"
            )
        )
        await session.execute(
            text(
                "CREATE TRIGGER fail_invoice BEFORE INSERT ON invoices "
                "FOR EACH ROW EXECUTE FUNCTION pg_temp.fail_invoice()"
            )
        )
        await session.commit()

        response = await client.post(
            f"/v1/proposals/{proposal['id']}/accept", json={}, headers=auth
        )

        assert response.status_code == 500
        fetched = await client.get(f"/v1/proposals/{proposal['id']}", headers=auth)
        assert fetched.json()["status"] == "sent"
        assert fetched.json()["invoice_id"] is None
        refreshed = await client.get(
            f"/v1/opportunities/{opportunity['id']}", headers=auth
        )
        assert refreshed.json()["status"] == "open"
        assert refreshed.json()["version"] == opportunity["version"] + 2
        assert await session.scalar(select(func.count()).select_from(Invoice)) == 0
        events_after = await session.scalar(select(func.count()).select_from(Event))
        assert events_after == events_before


class TestRejectProposal:
    async def test_records_reason(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        _, proposal = await sent_proposal(client, auth)

        response = await client.post(
            f"/v1/proposals/{proposal['id']}/reject",
            json={"reason": "Too expensive"},
            headers=auth,
        )

        assert response.status_code == 200
        assert response.json()["status"] == "rejected"
        assert response.json()["rejection_reason"] == "Too expensive"
        assert (await event_types(session, "proposal", proposal["id"]))[-1] == (
            "proposal.rejected"
        )


class TestProposalStateMachine:
    async def test_published(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/meta/state-machines")

        machines = {item["resource"]: item for item in response.json()["data"]}
        assert machines["proposal"] == {
            "resource": "proposal",
            "initial": "draft",
            "transitions": {
                "draft": ["sent"],
                "sent": ["accepted", "rejected", "expired"],
                "accepted": [],
                "rejected": [],
                "expired": [],
            },
        }
