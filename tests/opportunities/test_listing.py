"""Filters, sorts and keyset cursors of GET /v1/opportunities."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from app.core.pagination import encode_sort_cursor
from tests.customers.factories import create_customer
from tests.opportunities.factories import create_opportunity


async def listed(
    client: httpx.AsyncClient, auth: dict[str, str], **params: str
) -> list[str]:
    response = await client.get("/v1/opportunities", params=params, headers=auth)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["data"]]


async def all_pages(
    client: httpx.AsyncClient, auth: dict[str, str], sort: str
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    for _ in range(20):
        params = {"sort": sort, "limit": "2"}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/v1/opportunities", params=params, headers=auth)
        assert response.status_code == 200, response.text
        page = response.json()
        rows.extend(page["data"])
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return rows
    raise AssertionError("more than 20 pages")


class TestFilters:
    async def test_amount_and_close_date(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)
        small = await create_opportunity(
            client, auth, customer["id"], amount=100, expected_close_date="2027-01-10"
        )
        middle = await create_opportunity(
            client, auth, customer["id"], amount=5000, expected_close_date="2027-02-10"
        )
        large = await create_opportunity(client, auth, customer["id"], amount=90000)

        assert await listed(client, auth, amount_min="100", amount_max="5000") == [
            middle["id"],
            small["id"],
        ]
        assert await listed(client, auth, amount_min="5001") == [large["id"]]
        assert await listed(client, auth, expected_close_after="2027-02-10") == [
            middle["id"]
        ]
        assert await listed(client, auth, expected_close_before="2027-01-31") == [
            small["id"]
        ]
        assert await listed(client, auth, rotting="false") == [
            large["id"],
            middle["id"],
            small["id"],
        ]

    async def test_inverted_ranges(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        amounts = await client.get(
            "/v1/opportunities",
            params={"amount_min": "10", "amount_max": "5"},
            headers=auth,
        )
        dates = await client.get(
            "/v1/opportunities",
            params={
                "expected_close_after": "2027-02-01",
                "expected_close_before": "2027-01-01",
            },
            headers=auth,
        )

        assert amounts.status_code == 422
        assert amounts.json()["errors"][0]["field"] == "query.amount_min"
        assert dates.status_code == 422
        assert dates.json()["errors"][0]["field"] == "query.expected_close_after"

    async def test_bad_values(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        for params in (
            {"amount_min": "-1"},
            {"owner_id": "rep_1"},
            {"expected_close_after": "tomorrow"},
            {"rotting": "maybe"},
            {"sort": "weighted_amount"},
        ):
            response = await client.get(
                "/v1/opportunities", params=params, headers=auth
            )
            assert response.status_code == 422, params


class TestSorts:
    async def test_every_sort_pages_without_gaps(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)
        created = [
            await create_opportunity(
                client,
                auth,
                customer["id"],
                amount=amount,
                **({"expected_close_date": close} if close else {}),
            )
            for amount, close in [
                (300, "2027-03-01"),
                (100, None),
                (300, "2027-01-01"),
                (200, "2027-03-01"),
                (100, "2027-02-01"),
            ]
        ]
        expected = {
            "created_at": [row["id"] for row in created],
            "amount": [
                row["id"]
                for row in sorted(created, key=lambda row: (row["amount"], row["id"]))
            ],
            "expected_close_date": [
                row["id"]
                for row in sorted(
                    created,
                    key=lambda row: (
                        row["expected_close_date"] or "9999-12-31",
                        row["id"],
                    ),
                )
            ],
        }

        for name, order in expected.items():
            ascending = [row["id"] for row in await all_pages(client, auth, name)]
            descending = [
                row["id"] for row in await all_pages(client, auth, f"-{name}")
            ]
            assert ascending == order, name
            assert descending == list(reversed(order)), name

    async def test_cursor_of_other_sort(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        for _ in range(3):
            await create_opportunity(client, auth)
        first = await client.get(
            "/v1/opportunities", params={"sort": "amount", "limit": "1"}, headers=auth
        )

        response = await client.get(
            "/v1/opportunities",
            params={"sort": "-amount", "cursor": first.json()["next_cursor"]},
            headers=auth,
        )
        garbage = await client.get(
            "/v1/opportunities", params={"cursor": "bm90LWEtY3Vyc29y"}, headers=auth
        )

        assert response.status_code == 422
        assert "sort=amount" in response.json()["detail"]
        assert garbage.status_code == 422
        assert garbage.json()["errors"][0]["code"] == "invalid_cursor"

    async def test_cursor_key_out_of_range(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        row_id = uuid.uuid4()
        cursors = {
            "amount": encode_sort_cursor("amount", 2**63, row_id),
            "-amount": encode_sort_cursor("-amount", -1, row_id),
            "created_at": encode_sort_cursor(
                "created_at", "9999-12-31T23:59:59-14:00", row_id
            ),
            "-created_at": encode_sort_cursor(
                "-created_at", "0001-01-01T00:00:00+14:00", row_id
            ),
        }

        responses = {
            sort: await client.get(
                "/v1/opportunities",
                params={"sort": sort, "cursor": cursor},
                headers=auth,
            )
            for sort, cursor in cursors.items()
        }

        for sort, response in responses.items():
            assert response.status_code == 422, sort
            assert response.json()["errors"][0]["code"] == "invalid_cursor", sort
