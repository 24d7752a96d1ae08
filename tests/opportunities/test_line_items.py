from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import make_workspace_key
from tests.opportunities.catalog_factories import (
    add_line_item,
    create_product,
    event_types,
)
from tests.opportunities.factories import create_opportunity, move, stage_ids


def lines_url(opportunity: dict[str, Any]) -> str:
    return f"/v1/opportunities/{opportunity['id']}/line-items"


async def fetch(
    client: httpx.AsyncClient, auth: dict[str, str], opportunity_id: str
) -> dict[str, Any]:
    response = await client.get(f"/v1/opportunities/{opportunity_id}", headers=auth)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


class TestAddProductLine:
    async def test_takes_price_in_opportunity_currency(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        product = await create_product(
            client,
            auth,
            name="Seat",
            prices=[
                {"currency": "USD", "unit_amount": 1200},
                {"currency": "EUR", "unit_amount": 1100},
            ],
            tax_rate="20",
        )
        opportunity = await create_opportunity(client, auth, currency="EUR", amount=5)

        response = await client.post(
            lines_url(opportunity),
            json={"product_id": product["id"], "quantity": "3"},
            headers={**auth, "If-Match": '"1"'},
        )

        assert response.status_code == 201, response.text
        line = response.json()
        assert line["id"].startswith("li_")
        assert line["product_id"] == product["id"]
        assert line["description"] == "Seat"
        assert line["unit_amount"] == 1100
        assert line["tax_rate"] == "20"
        assert (line["amount"], line["discount"], line["tax_amount"]) == (3300, 0, 660)
        assert line["total"] == 3960
        assert response.headers["ETag"] == '"2"'
        updated = await fetch(client, auth, opportunity["id"])
        assert updated["amount"] == 3960
        assert updated["version"] == 2
        assert await event_types(session, "opportunity", opportunity["id"]) == [
            "opportunity.created",
            "opportunity.updated",
        ]

    async def test_no_price_in_currency_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        product = await create_product(client, auth)
        opportunity = await create_opportunity(client, auth, currency="JPY", amount=7)

        response = await client.post(
            lines_url(opportunity),
            json={"product_id": product["id"], "quantity": "1"},
            headers=auth,
        )

        assert response.status_code == 409
        problem = response.json()
        assert problem["code"] == "product_unavailable"
        assert problem["reason"] == "no_price_in_currency"
        assert problem["currency"] == "JPY"
        assert problem["priced_in"] == ["USD"]
        assert "no price in JPY" in problem["detail"]
        unchanged = await fetch(client, auth, opportunity["id"])
        assert unchanged["amount"] == 7
        assert unchanged["version"] == 1
        assert await event_types(session, "opportunity", opportunity["id"]) == [
            "opportunity.created"
        ]

    async def test_archived_product_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        product = await create_product(client, auth, active=False)
        opportunity = await create_opportunity(client, auth, currency="USD")

        response = await client.post(
            lines_url(opportunity),
            json={"product_id": product["id"], "quantity": "1"},
            headers=auth,
        )

        assert response.status_code == 409
        assert response.json()["reason"] == "archived"

    async def test_unknown_product_is_422(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        _, other_auth = await make_workspace_key(session)
        foreign = await create_product(client, other_auth)
        opportunity = await create_opportunity(client, auth, currency="USD")

        response = await client.post(
            lines_url(opportunity),
            json={"product_id": foreign["id"], "quantity": "1"},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "product_id"
        assert response.json()["errors"][0]["code"] == "product_not_found"

    async def test_deleted_product_keeps_line(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        product = await create_product(client, auth)
        opportunity = await create_opportunity(client, auth, currency="USD")
        await add_line_item(client, auth, opportunity["id"], product_id=product["id"])

        await client.delete(f"/v1/products/{product['id']}", headers=auth)

        listing = (await client.get(lines_url(opportunity), headers=auth)).json()
        assert listing["data"][0]["product_id"] is None
        assert listing["data"][0]["unit_amount"] == 10000
        assert listing["total"] == 10000


class TestCustomLine:
    async def test_rounds_like_billing(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        opportunity = await create_opportunity(client, auth, currency="USD")

        line = await add_line_item(
            client,
            auth,
            opportunity["id"],
            description="Hours",
            quantity="3",
            unit_amount_decimal="333.5",
            discount_percent="10",
            tax_rate="19",
        )

        # 3 x 333.5 = 1000.5 rounds half up to 1001; 10 % of it is 100.1, so 100;
        # 19 % of the remaining 901 is 171.19, so 171.
        assert line["amount"] == 1001
        assert line["discount"] == 100
        assert line["tax_amount"] == 171
        assert line["total"] == 1072
        assert line["unit_amount"] is None
        assert line["unit_amount_decimal"] == "333.5"
        assert line["discount_percent"] == "10"
        assert (await fetch(client, auth, opportunity["id"]))["amount"] == 1072

    async def test_fixed_discount(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        opportunity = await create_opportunity(client, auth, currency="JPY")

        line = await add_line_item(
            client,
            auth,
            opportunity["id"],
            quantity="2",
            unit_amount=5000,
            discount_amount=1000,
            tax_rate="10",
        )

        assert (line["amount"], line["discount"], line["tax_amount"]) == (
            10000,
            1000,
            900,
        )
        assert line["total"] == 9900

    async def test_discount_above_amount_is_422(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        opportunity = await create_opportunity(client, auth, currency="USD")

        response = await client.post(
            lines_url(opportunity),
            json={
                "description": "x",
                "quantity": "1",
                "unit_amount": 100,
                "discount_amount": 101,
            },
            headers=auth,
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["code"] == "discount_exceeds_amount"
        assert error["field"] == "discount_amount"

    async def test_discount_error_names_body_field(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        opportunity = await create_opportunity(client, auth, currency="USD")
        await add_line_item(client, auth, opportunity["id"])
        await add_line_item(client, auth, opportunity["id"])

        response = await client.post(
            lines_url(opportunity),
            json={
                "description": "x",
                "quantity": "2",
                "unit_amount": 100,
                "discount_amount": 201,
            },
            headers=auth,
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "discount_amount"
        assert "200" in error["message"]

    async def test_invalid_input_is_422(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
    ) -> None:
        opportunity = await create_opportunity(client, auth, currency="USD")
        product = await create_product(client, auth)
        custom = {"description": "x", "quantity": "1", "unit_amount": 100}
        cases: list[tuple[dict[str, object], str]] = [
            ({**custom, "quantity": "0"}, "quantity"),
            ({**custom, "quantity": "-1"}, "quantity"),
            ({**custom, "quantity": "1.1234567"}, "quantity"),
            ({**custom, "quantity": 1}, "quantity"),
            ({**custom, "quantity": "1e3"}, "quantity"),
            ({**custom, "unit_amount": -5}, "unit_amount"),
            ({**custom, "unit_amount_decimal": "1"}, "body"),
            ({"description": "x", "quantity": "1"}, "body"),
            ({"quantity": "1", "unit_amount": 1}, "body"),
            ({**custom, "discount_percent": "101"}, "discount_percent"),
            ({**custom, "discount_percent": "5", "discount_amount": 1}, "body"),
            ({**custom, "tax_rate": "-1"}, "tax_rate"),
            (
                {"product_id": product["id"], "quantity": "1", "unit_amount": 5},
                "body",
            ),
        ]
        for body, field in cases:
            response = await client.post(
                lines_url(opportunity), json=body, headers=auth
            )

            assert response.status_code == 422, (body, response.text)
            fields = [error["field"] for error in response.json()["errors"]]
            assert field in fields, (body, fields)
        assert await event_types(session, "opportunity", opportunity["id"]) == [
            "opportunity.created"
        ]

    async def test_total_above_maximum_is_422(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        opportunity = await create_opportunity(client, auth, currency="USD")

        response = await client.post(
            lines_url(opportunity),
            json={
                "description": "x",
                "quantity": "99999999999999",
                "unit_amount": 999999999999999,
            },
            headers=auth,
        )

        assert response.status_code == 422
        problem = response.json()
        assert problem["code"] == "amount_too_large"
        assert problem["errors"][0]["field"] == "quantity"


class TestAmountControl:
    async def test_patch_amount_with_lines_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        opportunity = await create_opportunity(client, auth, currency="USD")
        await add_line_item(client, auth, opportunity["id"], unit_amount=500)
        url = f"/v1/opportunities/{opportunity['id']}"

        amount = await client.patch(url, json={"amount": 1}, headers=auth)
        currency = await client.patch(url, json={"currency": "EUR"}, headers=auth)
        same = await client.patch(
            url, json={"amount": 500, "name": "Renamed"}, headers=auth
        )

        assert amount.status_code == 409
        assert amount.json()["code"] == "amount_from_line_items"
        assert amount.json()["fields"] == ["amount"]
        assert "line items" in amount.json()["detail"]
        assert currency.status_code == 409
        assert currency.json()["fields"] == ["currency"]
        assert same.status_code == 200
        assert same.json()["amount"] == 500

    async def test_removing_last_line_frees_amount(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        opportunity = await create_opportunity(client, auth, currency="USD")
        first = await add_line_item(client, auth, opportunity["id"], unit_amount=500)
        second = await add_line_item(client, auth, opportunity["id"], unit_amount=300)

        removed = await client.delete(
            f"{lines_url(opportunity)}/{second['id']}",
            headers={**auth, "If-Match": '"3"'},
        )
        after_one = await fetch(client, auth, opportunity["id"])
        await client.delete(f"{lines_url(opportunity)}/{first['id']}", headers=auth)
        after_all = await fetch(client, auth, opportunity["id"])
        patched = await client.patch(
            f"/v1/opportunities/{opportunity['id']}",
            json={"amount": 42},
            headers=auth,
        )

        assert removed.status_code == 204
        assert removed.headers["ETag"] == '"4"'
        assert after_one["amount"] == 500
        assert after_all["amount"] == 500
        assert after_all["version"] == 5
        assert patched.status_code == 200
        assert patched.json()["amount"] == 42
        assert await event_types(session, "opportunity", opportunity["id"]) == [
            "opportunity.created",
            *["opportunity.updated"] * 5,
        ]


class TestLineItemConcurrency:
    async def test_stale_if_match_is_412(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        opportunity = await create_opportunity(client, auth, currency="USD")

        response = await client.post(
            lines_url(opportunity),
            json={"description": "x", "quantity": "1", "unit_amount": 1},
            headers={**auth, "If-Match": '"9"'},
        )

        assert response.status_code == 412
        listing = (await client.get(lines_url(opportunity), headers=auth)).json()
        assert listing["data"] == []
        assert await event_types(session, "opportunity", opportunity["id"]) == [
            "opportunity.created"
        ]

    async def test_closed_opportunity_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        opportunity = await create_opportunity(client, auth, currency="USD")
        line = await add_line_item(client, auth, opportunity["id"])
        stages = await stage_ids(client, auth)
        won = [name for name in stages if "won" in name.lower()][0]
        await move(client, auth, opportunity["id"], stages[won])

        added = await client.post(
            lines_url(opportunity),
            json={"description": "x", "quantity": "1", "unit_amount": 1},
            headers=auth,
        )
        removed = await client.delete(
            f"{lines_url(opportunity)}/{line['id']}", headers=auth
        )

        assert added.status_code == 409
        assert added.json()["code"] == "line_items_locked"
        assert added.json()["current_status"] == "won"
        assert removed.status_code == 409


class TestUpdateLineItem:
    async def test_reprices_and_switches_discount(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        opportunity = await create_opportunity(client, auth, currency="USD")
        line = await add_line_item(
            client, auth, opportunity["id"], unit_amount=1000, discount_percent="50"
        )
        url = f"{lines_url(opportunity)}/{line['id']}"

        response = await client.patch(
            url,
            json={"quantity": "2", "discount_amount": 300},
            headers={**auth, "If-Match": '"2"'},
        )

        assert response.status_code == 200, response.text
        updated = response.json()
        assert updated["discount_percent"] is None
        assert updated["discount_amount"] == 300
        assert updated["total"] == 1700
        assert response.headers["ETag"] == '"3"'
        assert (await fetch(client, auth, opportunity["id"]))["amount"] == 1700

    async def test_discount_error_names_body_field(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        opportunity = await create_opportunity(client, auth, currency="USD")
        await add_line_item(client, auth, opportunity["id"])
        line = await add_line_item(client, auth, opportunity["id"], unit_amount=1000)

        response = await client.patch(
            f"{lines_url(opportunity)}/{line['id']}",
            json={"discount_amount": 1001},
            headers=auth,
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["code"] == "discount_exceeds_amount"
        assert error["field"] == "discount_amount"
        unchanged = await fetch(client, auth, opportunity["id"])
        assert unchanged["amount"] == 2000

    async def test_unit_price_of_product_line_is_422(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        product = await create_product(client, auth)
        opportunity = await create_opportunity(client, auth, currency="USD")
        line = await add_line_item(
            client, auth, opportunity["id"], product_id=product["id"]
        )

        response = await client.patch(
            f"{lines_url(opportunity)}/{line['id']}",
            json={"unit_amount": 1},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "unit_amount_not_allowed"

    async def test_line_of_other_opportunity_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        first = await create_opportunity(client, auth, currency="USD")
        second = await create_opportunity(client, auth, currency="USD")
        line = await add_line_item(client, auth, first["id"])

        response = await client.patch(
            f"{lines_url(second)}/{line['id']}", json={"quantity": "2"}, headers=auth
        )

        assert response.status_code == 404
        assert response.json()["code"] == "line_item_not_found"


class TestListLineItems:
    async def test_totals_and_order(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        opportunity = await create_opportunity(client, auth, currency="USD")
        await add_line_item(client, auth, opportunity["id"], unit_amount=100)
        await add_line_item(
            client, auth, opportunity["id"], unit_amount=200, tax_rate="10"
        )

        response = await client.get(lines_url(opportunity), headers=auth)

        body = response.json()
        assert [line["position"] for line in body["data"]] == [1, 2]
        assert body["subtotal"] == 300
        assert body["tax_total"] == 20
        assert body["total"] == 320
        assert body["opportunity_version"] == 3
        assert response.headers["ETag"] == '"3"'
