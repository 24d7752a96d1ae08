"""Duplicate customers by domain and duplicate contacts by email."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Contact, Customer, Event
from tests.conftest import make_workspace_key
from tests.customers.factories import create_contact, create_customer


async def count(session: AsyncSession, model: type[Customer] | type[Contact]) -> int:
    return await session.scalar(select(func.count()).select_from(model)) or 0


class TestDuplicateCustomer:
    async def test_same_domain_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        existing = await create_customer(client, auth, domain="globex.example")

        response = await client.post(
            "/v1/customers",
            json={"name": "Globex again", "domain": "WWW.Globex.Example"},
            headers=auth,
        )

        assert response.status_code == 409, response.text
        problem = response.json()
        assert problem["code"] == "duplicate_customer"
        assert problem["existing_id"] == existing["id"]
        assert problem["matched_key"] == "domain"
        assert problem["matched_value"] == "globex.example"
        assert existing["id"] in problem["detail"]
        assert await count(session, Customer) == 1
        assert (
            await session.scalar(
                select(func.count())
                .select_from(Event)
                .where(Event.type == "customer.created")
            )
            == 1
        )

    async def test_link_returns_existing(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        existing = await create_customer(client, auth, domain="globex.example")

        response = await client.post(
            "/v1/customers",
            json={
                "name": "Other name",
                "domain": "globex.example",
                "on_duplicate": "link",
            },
            headers=auth,
        )

        assert response.status_code == 200, response.text
        assert response.json() == existing
        assert response.headers["location"] == f"/v1/customers/{existing['id']}"
        assert await count(session, Customer) == 1

    async def test_link_without_match_creates(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/customers",
            json={"name": "Globex", "domain": "globex.example", "on_duplicate": "link"},
            headers=auth,
        )

        assert response.status_code == 201, response.text

    async def test_without_domain_never_duplicate(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        await create_customer(client, auth, name="Ada Lovelace", kind="individual")
        await create_customer(client, auth, name="Ada Lovelace", kind="individual")

        assert await count(session, Customer) == 2

    async def test_other_workspace_not_duplicate(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        await create_customer(client, auth, domain="globex.example")
        _, other_auth = await make_workspace_key(session)

        response = await client.post(
            "/v1/customers",
            json={"name": "Globex", "domain": "globex.example"},
            headers=other_auth,
        )

        assert response.status_code == 201, response.text

    async def test_update_to_taken_domain(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        await create_customer(client, auth, domain="globex.example")
        other = await create_customer(
            client, auth, name="Initech", domain="initech.example"
        )

        response = await client.patch(
            f"/v1/customers/{other['id']}",
            json={"domain": "globex.example"},
            headers=auth,
        )

        assert response.status_code == 409, response.text
        assert response.json()["code"] == "duplicate_customer"
        assert response.json()["matched_value"] == "globex.example"
        unchanged = await client.get(f"/v1/customers/{other['id']}", headers=auth)
        assert unchanged.json()["domain"] == "initech.example"
        assert unchanged.json()["version"] == other["version"]


class TestDuplicateContact:
    async def test_same_email_at_customer_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        customer = await create_customer(client, auth)
        existing = await create_contact(
            client, auth, customer["id"], email="Ada@Analytical.Example"
        )

        response = await client.post(
            f"/v1/customers/{customer['id']}/contacts",
            json={"email": " ada@analytical.EXAMPLE "},
            headers=auth,
        )

        assert response.status_code == 409, response.text
        problem = response.json()
        assert problem["code"] == "duplicate_contact"
        assert problem["existing_id"] == existing["id"]
        assert problem["matched_key"] == "email"
        assert problem["matched_value"] == "ada@analytical.example"
        assert await count(session, Contact) == 1

    async def test_idn_email_matches(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)
        await create_contact(client, auth, customer["id"], email="ada@bücher.example")

        response = await client.post(
            f"/v1/customers/{customer['id']}/contacts",
            json={"email": "ada@xn--bcher-kva.example"},
            headers=auth,
        )

        assert response.status_code == 409, response.text

    async def test_same_email_at_other_customer_allowed(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        first = await create_customer(client, auth, name="Globex")
        second = await create_customer(client, auth, name="Initech")
        await create_contact(client, auth, first["id"], email="consultant@example.com")

        contact = await create_contact(
            client, auth, second["id"], email="consultant@example.com"
        )

        assert contact["customer_id"] == second["id"]

    async def test_update_to_taken_email(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)
        taken = await create_contact(
            client, auth, customer["id"], email="a@example.com"
        )
        other = await create_contact(
            client, auth, customer["id"], email="b@example.com"
        )

        response = await client.patch(
            f"/v1/contacts/{other['id']}", json={"email": "A@example.com"}, headers=auth
        )

        assert response.status_code == 409, response.text
        assert response.json()["code"] == "duplicate_contact"
        assert response.json()["matched_value"] == "a@example.com"
        assert taken["id"] != other["id"]
        unchanged = await client.get(f"/v1/contacts/{other['id']}", headers=auth)
        assert unchanged.json()["email"] == "b@example.com"
