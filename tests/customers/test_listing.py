"""Filters of GET /v1/customers: owner, kind, domain, q and created ranges."""

from __future__ import annotations

import httpx

from tests.customers.factories import create_customer
from tests.users.factories import create_user


async def names(
    client: httpx.AsyncClient, auth: dict[str, str], **params: str
) -> list[str]:
    response = await client.get("/v1/customers", params=params, headers=auth)
    assert response.status_code == 200, response.text
    return [row["name"] for row in response.json()["data"]]


class TestCustomerFilters:
    async def test_owner_kind_domain_q(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        owner = await create_user(client, auth)
        await create_customer(
            client, auth, name="Globex", domain="globex.example", owner_id=owner["id"]
        )
        await create_customer(
            client, auth, name="Ada Lovelace", kind="individual", legal_name="A. King"
        )

        assert await names(client, auth, owner_id=owner["id"]) == ["Globex"]
        assert await names(client, auth, kind="individual") == ["Ada Lovelace"]
        assert await names(client, auth, kind="company") == ["Globex"]
        assert await names(client, auth, domain="WWW.GLOBEX.example") == ["Globex"]
        assert await names(client, auth, q="king") == ["Ada Lovelace"]

    async def test_created_range(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        first = await create_customer(client, auth, name="First")
        second = await create_customer(client, auth, name="Second")

        after_first = await names(client, auth, created_after=first["created_at"])
        before_second = await names(client, auth, created_before=second["created_at"])

        assert "First" not in after_first
        assert "Second" not in before_second
        assert "First" in before_second or first["created_at"] == second["created_at"]

    async def test_invalid_filters(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        for params in (
            {"kind": "partnership"},
            {"owner_id": "cus_0193abcdefghjkmnpqrstvwxyz"},
            {"created_after": "2026-12-04T10:00:00"},
        ):
            response = await client.get("/v1/customers", params=params, headers=auth)

            assert response.status_code == 422, params
