"""Timelines: a record's activities and events merged newest first, paged by keyset."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.activities.factories import create_activity
from tests.customers.factories import create_contact, create_customer
from tests.leads.test_router import create_lead
from tests.opportunities.factories import create_opportunity


async def read_all(
    client: httpx.AsyncClient, auth: dict[str, str], url: str, limit: int
) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    cursor = None
    for _ in range(50):
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = await client.get(url, params=params, headers=auth)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["data"])
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    return items


class TestLeadTimeline:
    async def test_merges_in_time_order(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        older = await create_activity(
            client,
            auth,
            kind="call",
            subject="Intro",
            occurred_at="2020-01-01T09:00:00Z",
            lead_id=lead["id"],
        )
        await client.patch(
            f"/v1/leads/{lead['id']}", json={"status": "working"}, headers=auth
        )
        newest = await create_activity(
            client, auth, kind="note", body="Keen.", lead_id=lead["id"]
        )

        items = await read_all(client, auth, f"/v1/leads/{lead['id']}/timeline", 50)

        kinds = [
            item["activity"]["id"]  # type: ignore[index]
            if item["type"] == "activity"
            else item["event"]["type"]  # type: ignore[index]
            for item in items
        ]
        assert kinds == [newest["id"], "lead.updated", "lead.created", older["id"]]
        times = [str(item["at"]) for item in items]
        assert times == sorted(times, reverse=True)

    async def test_pages_without_gaps(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth)
        created = [
            await create_activity(
                client,
                auth,
                kind="note",
                body=f"note {n}",
                occurred_at="2026-01-01T00:00:00Z",
                lead_id=lead["id"],
            )
            for n in range(7)
        ]

        items = await read_all(client, auth, f"/v1/leads/{lead['id']}/timeline", 3)

        activity_ids = [
            item["activity"]["id"]  # type: ignore[index]
            for item in items
            if item["type"] == "activity"
        ]
        assert sorted(activity_ids) == sorted(a["id"] for a in created)
        assert len(activity_ids) == len(set(activity_ids))
        assert len(items) == 8

    async def test_unknown_lead(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get(
            "/v1/leads/lead_" + "0" * 26 + "/timeline", headers=auth
        )

        assert response.status_code == 404

    # A time past the year 9999, then characters outside base64.
    @pytest.mark.parametrize(
        "cursor",
        [base64.urlsafe_b64encode(b"\x7f" + b"\xff" * 23).decode(), "!" * 32],
    )
    async def test_bad_cursor(
        self, client: httpx.AsyncClient, auth: dict[str, str], cursor: str
    ) -> None:
        lead = await create_lead(client, auth)

        response = await client.get(
            f"/v1/leads/{lead['id']}/timeline", params={"cursor": cursor}, headers=auth
        )

        assert response.status_code == 422


class TestSalesTimelines:
    async def test_customer_contact_opportunity(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)
        contact = await create_contact(client, auth, customer["id"])
        opportunity = await create_opportunity(client, auth, customer["id"])
        call = await create_activity(
            client,
            auth,
            kind="meeting",
            subject="Demo",
            contact_id=contact["id"],
            opportunity_id=opportunity["id"],
        )

        for url, event_type in (
            (f"/v1/customers/{customer['id']}/timeline", "customer.created"),
            (f"/v1/contacts/{contact['id']}/timeline", "contact.created"),
            (f"/v1/opportunities/{opportunity['id']}/timeline", "opportunity.created"),
        ):
            items = await read_all(client, auth, url, 50)

            assert items[0]["activity"]["id"] == call["id"], url  # type: ignore[index]
            event_types = [
                item["event"]["type"]  # type: ignore[index]
                for item in items
                if item["type"] == "event"
            ]
            assert event_type in event_types, url
