from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import make_workspace_key
from tests.opportunities.catalog_factories import create_product, event_types


class TestCreateProduct:
    async def test_all_fields(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
    ) -> None:
        response = await client.post(
            "/v1/products",
            json={
                "name": "Support plan",
                "description": "Business hours support",
                "sku": "SUP-1",
                "prices": [
                    {"currency": "USD", "unit_amount": 4900},
                    {"currency": "EUR", "unit_amount_decimal": "4500.125"},
                    {"currency": "JPY", "unit_amount": 7000},
                ],
                "tax_rate": "19",
                "recurring": {"interval": "month"},
            },
            headers=auth,
        )

        assert response.status_code == 201, response.text
        body = response.json()
        assert body["id"].startswith("prod_")
        assert response.headers["ETag"] == '"1"'
        assert response.headers["Location"] == f"/v1/products/{body['id']}"
        assert body["prices"] == [
            {"currency": "EUR", "unit_amount": None, "unit_amount_decimal": "4500.125"},
            {"currency": "JPY", "unit_amount": 7000, "unit_amount_decimal": "7000"},
            {"currency": "USD", "unit_amount": 4900, "unit_amount_decimal": "4900"},
        ]
        assert body["tax_rate"] == "19"
        assert body["recurring"] == {"interval": "month"}
        assert body["active"] is True
        assert body["archived_at"] is None
        assert await event_types(session, "product", body["id"]) == ["product.created"]

    async def test_duplicate_sku_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        first = await create_product(client, auth, sku="ENG-1")

        response = await client.post(
            "/v1/products", json={"name": "Copy", "sku": "ENG-1"}, headers=auth
        )

        assert response.status_code == 409
        assert response.json()["code"] == "sku_taken"
        assert response.json()["existing_product_id"] == first["id"]

    async def test_same_sku_in_other_workspace(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        await create_product(client, auth, sku="ENG-1")
        _, other_auth = await make_workspace_key(session)

        response = await client.post(
            "/v1/products", json={"name": "Other", "sku": "ENG-1"}, headers=other_auth
        )

        assert response.status_code == 201

    async def test_invalid_input_is_422(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        cases = [
            (
                {"name": "x", "prices": [{"currency": "usd", "unit_amount": 1}]},
                "prices.0.currency",
            ),
            (
                {"name": "x", "prices": [{"currency": "XXX", "unit_amount": 1}]},
                "prices.0.currency",
            ),
            (
                {"name": "x", "prices": [{"currency": "USD", "unit_amount": 1.5}]},
                "prices.0.unit_amount",
            ),
            (
                {"name": "x", "prices": [{"currency": "USD", "unit_amount": -1}]},
                "prices.0.unit_amount",
            ),
            ({"name": "x", "prices": [{"currency": "USD"}]}, "prices.0"),
            (
                {
                    "name": "x",
                    "prices": [
                        {
                            "currency": "USD",
                            "unit_amount": 1,
                            "unit_amount_decimal": "1",
                        }
                    ],
                },
                "prices.0",
            ),
            (
                {
                    "name": "x",
                    "prices": [
                        {"currency": "USD", "unit_amount": 1},
                        {"currency": "USD", "unit_amount": 2},
                    ],
                },
                "prices",
            ),
            ({"name": "x", "tax_rate": "100.5"}, "tax_rate"),
            ({"name": "x", "tax_rate": 19}, "tax_rate"),
            ({"name": "x", "recurring": {"interval": "week"}}, "recurring.interval"),
            ({"name": "x", "sku": "has space"}, "sku"),
            ({"name": ""}, "name"),
            ({"name": "x", "color": "red"}, "color"),
        ]
        for body, field in cases:
            response = await client.post("/v1/products", json=body, headers=auth)

            assert response.status_code == 422, (body, response.text)
            fields = [error["field"] for error in response.json()["errors"]]
            assert field in fields, (body, fields)


class TestUpdateProduct:
    async def test_replaces_prices_and_bumps_version(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        product = await create_product(client, auth)

        response = await client.patch(
            f"/v1/products/{product['id']}",
            json={"prices": [{"currency": "GBP", "unit_amount": 800}]},
            headers={**auth, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        assert [price["currency"] for price in response.json()["prices"]] == ["GBP"]
        assert response.headers["ETag"] == '"2"'
        assert await event_types(session, "product", product["id"]) == [
            "product.created",
            "product.updated",
        ]

    async def test_stale_if_match_is_412(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        product = await create_product(client, auth)

        response = await client.patch(
            f"/v1/products/{product['id']}",
            json={"name": "Renamed"},
            headers={**auth, "If-Match": '"7"'},
        )

        assert response.status_code == 412
        fetched = await client.get(f"/v1/products/{product['id']}", headers=auth)
        assert fetched.json()["name"] == product["name"]
        assert await event_types(session, "product", product["id"]) == [
            "product.created"
        ]

    async def test_archive_and_restore(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        product = await create_product(client, auth)
        url = f"/v1/products/{product['id']}"

        archived = await client.patch(url, json={"active": False}, headers=auth)
        restored = await client.patch(url, json={"active": True}, headers=auth)

        assert archived.json()["active"] is False
        assert archived.json()["archived_at"] is not None
        assert restored.json()["active"] is True
        assert restored.json()["archived_at"] is None
        assert await event_types(session, "product", product["id"]) == [
            "product.created",
            "product.archived",
            "product.restored",
        ]

    async def test_clears_sku_and_recurring(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        product = await create_product(
            client, auth, sku="A-1", recurring={"interval": "year"}
        )

        response = await client.patch(
            f"/v1/products/{product['id']}",
            json={"sku": None, "recurring": None},
            headers=auth,
        )

        assert response.json()["sku"] is None
        assert response.json()["recurring"] is None

    async def test_null_name_is_422(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        product = await create_product(client, auth)

        response = await client.patch(
            f"/v1/products/{product['id']}", json={"name": None}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "name"

    async def test_sku_of_another_product_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await create_product(client, auth, sku="A-1")
        second = await create_product(client, auth, sku="B-1")

        response = await client.patch(
            f"/v1/products/{second['id']}", json={"sku": "A-1"}, headers=auth
        )

        assert response.status_code == 409
        assert response.json()["code"] == "sku_taken"

    async def test_no_change_emits_nothing(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        product = await create_product(client, auth, name="Same")

        response = await client.patch(
            f"/v1/products/{product['id']}", json={"name": "Same"}, headers=auth
        )

        assert response.json()["version"] == 1
        assert await event_types(session, "product", product["id"]) == [
            "product.created"
        ]


class TestDeleteProduct:
    async def test_deletes_and_emits(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        product = await create_product(client, auth)

        response = await client.delete(
            f"/v1/products/{product['id']}", headers={**auth, "If-Match": '"1"'}
        )

        assert response.status_code == 204
        fetched = await client.get(f"/v1/products/{product['id']}", headers=auth)
        assert fetched.status_code == 404
        assert fetched.json()["code"] == "product_not_found"
        assert await event_types(session, "product", product["id"]) == [
            "product.created",
            "product.deleted",
        ]

    async def test_other_workspace_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        product = await create_product(client, auth)
        _, other_auth = await make_workspace_key(session)

        response = await client.delete(
            f"/v1/products/{product['id']}", headers=other_auth
        )

        assert response.status_code == 404


class TestListProducts:
    async def test_filters(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        usd = await create_product(client, auth, name="Widget 50%")
        eur = await create_product(
            client,
            auth,
            name="Gadget",
            sku="GAD-1",
            prices=[{"currency": "EUR", "unit_amount": 100}],
        )
        archived = await create_product(client, auth, name="Old widget", active=False)

        async def names(**params: str) -> list[str]:
            response = await client.get("/v1/products", params=params, headers=auth)
            assert response.status_code == 200, response.text
            return [item["id"] for item in response.json()["data"]]

        assert await names() == [archived["id"], eur["id"], usd["id"]]
        assert await names(q="widget") == [archived["id"], usd["id"]]
        assert await names(q="gad-") == [eur["id"]]
        assert await names(q="50%") == [usd["id"]]
        assert await names(q="%") == [usd["id"]]
        assert await names(active="true") == [eur["id"], usd["id"]]
        assert await names(active="false") == [archived["id"]]
        assert await names(currency="EUR") == [eur["id"]]

    async def test_cursor_pages(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = [
            (await create_product(client, auth, name=f"P{number}"))["id"]
            for number in range(5)
        ]

        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            page = (
                await client.get("/v1/products", params=params, headers=auth)
            ).json()
            seen.extend(item["id"] for item in page["data"])
            if not page["has_more"]:
                break
            cursor = page["next_cursor"]

        assert seen == list(reversed(created))

    async def test_invalid_currency_filter_is_422(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get(
            "/v1/products", params={"currency": "ABC"}, headers=auth
        )

        assert response.status_code == 422
