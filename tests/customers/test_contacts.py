"""Contacts: roles, title, E.164 phones, get, update, delete and their events."""

from __future__ import annotations

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Contact, Event
from tests.conftest import make_workspace_key
from tests.customers.factories import create_contact, create_customer


async def events_of(session: AsyncSession, type: str) -> list[Event]:
    return list(
        (
            await session.scalars(
                select(Event).where(Event.type == type).order_by(Event.id)
            )
        ).all()
    )


class TestCreateContactDetails:
    async def test_roles_title_phone(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        customer = await create_customer(client, auth)

        contact = await create_contact(
            client,
            auth,
            customer["id"],
            email=" Ada@Analytical.Example ",
            title="Chief Engineer",
            phone="030 1234567",
            phone_region="DE",
            roles=["technical", "decision_maker", "technical"],
        )

        assert contact["email"] == "Ada@analytical.example"
        assert contact["title"] == "Chief Engineer"
        assert contact["phone"] == "+49301234567"
        assert contact["roles"] == ["decision_maker", "technical"]
        row = await session.scalar(select(Contact))
        assert row is not None
        assert row.email_normalized == "ada@analytical.example"
        (event,) = await events_of(session, "contact.created")
        assert event.data == contact

    async def test_e164_phone_kept(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)

        contact = await create_contact(
            client, auth, customer["id"], phone="+44 20 7946 0000"
        )

        assert contact["phone"] == "+442079460000"

    async def test_invalid_phone(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        customer = await create_customer(client, auth)

        response = await client.post(
            f"/v1/customers/{customer['id']}/contacts",
            json={"first_name": "Ada", "phone": "12345"},
            headers=auth,
        )

        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "phone"
        assert await session.scalar(select(Contact)) is None

    async def test_unknown_role(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)

        response = await client.post(
            f"/v1/customers/{customer['id']}/contacts",
            json={"first_name": "Ada", "roles": ["ceo"]},
            headers=auth,
        )

        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "roles.0"

    async def test_location_header(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)

        response = await client.post(
            f"/v1/customers/{customer['id']}/contacts",
            json={"first_name": "Ada"},
            headers=auth,
        )

        contact = response.json()
        assert response.headers["location"] == f"/v1/contacts/{contact['id']}"
        assert response.headers["etag"] == '"1"'


class TestGetContact:
    async def test_found(self, client: httpx.AsyncClient, auth: dict[str, str]) -> None:
        customer = await create_customer(client, auth)
        contact = await create_contact(client, auth, customer["id"])

        response = await client.get(f"/v1/contacts/{contact['id']}", headers=auth)

        assert response.status_code == 200
        assert response.json() == contact
        assert response.headers["etag"] == '"1"'

    async def test_other_workspace_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        customer = await create_customer(client, auth)
        contact = await create_contact(client, auth, customer["id"])
        _, other = await make_workspace_key(session)

        response = await client.get(f"/v1/contacts/{contact['id']}", headers=other)

        assert response.status_code == 404
        assert response.json()["code"] == "contact_not_found"


class TestUpdateContact:
    async def test_updated(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        customer = await create_customer(client, auth)
        contact = await create_contact(client, auth, customer["id"], roles=["billing"])

        response = await client.patch(
            f"/v1/contacts/{contact['id']}",
            json={
                "title": "CFO",
                "roles": ["champion", "billing"],
                "phone": "+1 212 555 0100",
                "email": "Ada.Lovelace@Analytical.Example",
            },
            headers={**auth, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        updated = response.json()
        assert updated["title"] == "CFO"
        assert updated["roles"] == ["billing", "champion"]
        assert updated["phone"] == "+12125550100"
        assert updated["version"] == 2
        assert response.headers["etag"] == '"2"'
        row = await session.scalar(select(Contact))
        assert row is not None
        assert row.email_normalized == "ada.lovelace@analytical.example"
        (event,) = await events_of(session, "contact.updated")
        assert event.data == updated

    async def test_if_match_mismatch(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        customer = await create_customer(client, auth)
        contact = await create_contact(client, auth, customer["id"])

        response = await client.patch(
            f"/v1/contacts/{contact['id']}",
            json={"title": "CFO"},
            headers={**auth, "If-Match": '"7"'},
        )

        assert response.status_code == 412
        assert await events_of(session, "contact.updated") == []

    async def test_remove_roles(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)
        contact = await create_contact(client, auth, customer["id"], roles=["billing"])

        response = await client.patch(
            f"/v1/contacts/{contact['id']}", json={"roles": []}, headers=auth
        )

        assert response.json()["roles"] == []

    async def test_null_roles(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)
        contact = await create_contact(client, auth, customer["id"])

        response = await client.patch(
            f"/v1/contacts/{contact['id']}", json={"roles": None}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "roles"

    async def test_cannot_lose_identity(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)
        contact = await create_contact(
            client, auth, customer["id"], email="a@example.com", first_name="Ada"
        )

        response = await client.patch(
            f"/v1/contacts/{contact['id']}",
            json={"email": None, "first_name": None},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "contact_identity_missing"

    async def test_no_change_no_event(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        customer = await create_customer(client, auth)
        contact = await create_contact(client, auth, customer["id"], title="CTO")

        response = await client.patch(
            f"/v1/contacts/{contact['id']}", json={"title": "CTO"}, headers=auth
        )

        assert response.json()["version"] == 1
        assert await events_of(session, "contact.updated") == []


class TestDeleteContact:
    async def test_deleted(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        customer = await create_customer(client, auth)
        contact = await create_contact(client, auth, customer["id"])

        response = await client.delete(
            f"/v1/contacts/{contact['id']}", headers={**auth, "If-Match": '"1"'}
        )

        assert response.status_code == 204
        assert await session.scalar(select(Contact)) is None
        gone = await client.get(f"/v1/contacts/{contact['id']}", headers=auth)
        assert gone.status_code == 404
        (event,) = await events_of(session, "contact.deleted")
        assert event.data == contact

    async def test_in_use_by_activity(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        customer = await create_customer(client, auth)
        contact = await create_contact(client, auth, customer["id"])
        logged = await client.post(
            "/v1/activities",
            json={
                "kind": "note",
                "body": "Met at the fair",
                "contact_id": contact["id"],
            },
            headers=auth,
        )
        assert logged.status_code == 201, logged.text

        response = await client.delete(f"/v1/contacts/{contact['id']}", headers=auth)

        assert response.status_code == 409, response.text
        problem = response.json()
        assert problem["code"] == "contact_in_use"
        assert problem["references"] == {"activities": 1}
        assert await session.scalar(select(Contact)) is not None
        assert await events_of(session, "contact.deleted") == []

    async def test_if_match_mismatch(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)
        contact = await create_contact(client, auth, customer["id"])

        response = await client.delete(
            f"/v1/contacts/{contact['id']}", headers={**auth, "If-Match": '"2"'}
        )

        assert response.status_code == 412


class TestListContactsByRole:
    async def test_role_filter(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)
        billing = await create_contact(
            client, auth, customer["id"], email="b@example.com", roles=["billing"]
        )
        await create_contact(
            client, auth, customer["id"], email="t@example.com", roles=["technical"]
        )

        response = await client.get(
            f"/v1/customers/{customer['id']}/contacts?role=billing", headers=auth
        )

        assert [row["id"] for row in response.json()["data"]] == [billing["id"]]
