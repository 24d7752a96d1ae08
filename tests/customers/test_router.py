from __future__ import annotations

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.auth import create_api_key
from app.models import Contact, Customer, Event, Workspace
from tests.conftest import make_workspace_key
from tests.customers.factories import create_contact, create_customer


async def key_with_scopes(
    session: AsyncSession, workspace: Workspace, *scopes: str
) -> dict[str, str]:
    created = await create_api_key(
        session, workspace_id=workspace.id, name="narrow", scopes=scopes
    )
    await session.commit()
    return {"Authorization": f"Bearer {created.secret}"}


async def event_types(session: AsyncSession) -> list[str]:
    return list((await session.scalars(select(Event.type).order_by(Event.id))).all())


class TestCreateCustomer:
    async def test_created(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await client.post(
            "/v1/customers",
            json={
                "name": "Analytical Engines Ltd",
                "email": "billing@analytical.example",
                "domain": "Analytical.Example",
            },
            headers=auth,
        )

        assert response.status_code == 201, response.text
        customer = response.json()
        assert customer["id"].startswith("cus_")
        assert customer["object"] == "customer"
        assert customer["domain"] == "analytical.example"
        assert customer["currency"] == "USD"
        assert customer["timezone"] == "UTC"
        assert customer["payment_terms_days"] == 30
        assert customer["source_lead_id"] is None
        assert customer["version"] == 1
        assert response.headers["etag"] == '"1"'
        assert response.headers["location"] == f"/v1/customers/{customer['id']}"
        event = await session.scalar(select(Event))
        assert event is not None
        assert event.type == "customer.created"
        assert event.object_type == "customer"
        assert event.data == customer

    async def test_workspace_defaults(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        workspace.default_currency = "EUR"
        workspace.timezone = "Europe/Berlin"
        await session.commit()

        customer = await create_customer(client, auth)

        assert customer["currency"] == "EUR"
        assert customer["timezone"] == "Europe/Berlin"

    async def test_explicit_fields(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(
            client,
            auth,
            currency="KWD",
            timezone="Asia/Kuwait",
            payment_terms_days=0,
        )

        assert customer["currency"] == "KWD"
        assert customer["timezone"] == "Asia/Kuwait"
        assert customer["payment_terms_days"] == 0

    async def test_idna_domain(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth, domain="Bücher.Example")

        assert customer["domain"] == "xn--bcher-kva.example"

    async def test_bad_currency(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        for currency in ("XYZ", "US", "HRK", "usd", " USD", 840):
            response = await client.post(
                "/v1/customers",
                json={"name": "Acme", "currency": currency},
                headers=auth,
            )

            assert response.status_code == 422, currency
            problem = response.json()
            assert problem["code"] == "validation_failed"
            assert problem["errors"][0]["field"] == "currency"
        assert await session.scalar(select(func.count()).select_from(Customer)) == 0

    async def test_bad_timezone(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/customers",
            json={"name": "Acme", "timezone": "Mars/Olympus_Mons"},
            headers=auth,
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "timezone"
        assert "IANA time zone" in error["message"]

    async def test_bad_domain(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        for domain in ("https://acme.example", "acme", "acme..example", "-a.example"):
            response = await client.post(
                "/v1/customers", json={"name": "Acme", "domain": domain}, headers=auth
            )

            assert response.status_code == 422, domain
            assert response.json()["errors"][0]["field"] == "domain"

    async def test_payment_terms_range(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        for days in (-1, 366):
            response = await client.post(
                "/v1/customers",
                json={"name": "Acme", "payment_terms_days": days},
                headers=auth,
            )

            assert response.status_code == 422, days
            assert response.json()["errors"][0]["field"] == "payment_terms_days"

    async def test_unstorable_text(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await client.post(
            "/v1/customers", json={"name": "Ac\u0000me"}, headers=auth
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "name"
        assert "NUL" in error["message"]
        assert await session.scalar(select(func.count()).select_from(Customer)) == 0

    async def test_invalid_email(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/customers", json={"name": "Acme", "email": "nope"}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "email"

    async def test_missing_name(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post("/v1/customers", json={}, headers=auth)

        assert response.status_code == 422
        assert response.json()["errors"][0] == {
            "field": "name",
            "message": "This field is required. Add it to the request.",
            "code": "missing",
        }

    async def test_unknown_field(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/customers", json={"name": "Acme", "vat": "DE123"}, headers=auth
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "vat"
        assert error["code"] == "extra_forbidden"

    async def test_read_scope_cannot_write(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        headers = await key_with_scopes(session, workspace, "sales:read")

        response = await client.post(
            "/v1/customers", json={"name": "Acme"}, headers=headers
        )

        assert response.status_code == 403
        assert response.json()["missing_scope"] == "sales:write"

    async def test_without_key(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/customers", json={"name": "Acme"})

        assert response.status_code == 401


class TestGetCustomer:
    async def test_found(self, client: httpx.AsyncClient, auth: dict[str, str]) -> None:
        created = await create_customer(client, auth)

        response = await client.get(f"/v1/customers/{created['id']}", headers=auth)

        assert response.status_code == 200
        assert response.json() == created
        assert response.headers["etag"] == '"1"'

    async def test_other_workspace_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        created = await create_customer(client, auth)
        _, other = await make_workspace_key(session)

        response = await client.get(f"/v1/customers/{created['id']}", headers=other)

        assert response.status_code == 404
        assert response.json()["code"] == "customer_not_found"

    async def test_malformed_id_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get("/v1/customers/lead_123", headers=auth)

        assert response.status_code == 404

    async def test_needs_read_scope(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        created = await create_customer(client, auth)
        headers = await key_with_scopes(session, workspace, "leads:read")

        response = await client.get(f"/v1/customers/{created['id']}", headers=headers)

        assert response.status_code == 403
        assert response.json()["missing_scope"] == "sales:read"


class TestListCustomers:
    async def test_pages_without_gaps(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = [await create_customer(client, auth, name=f"C{i}") for i in range(5)]

        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            response = await client.get("/v1/customers", params=params, headers=auth)
            page = response.json()
            seen.extend(item["id"] for item in page["data"])
            if not page["has_more"]:
                break
            cursor = page["next_cursor"]

        assert seen == [customer["id"] for customer in reversed(created)]

    async def test_filters(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        first = await create_customer(
            client, auth, name="Babbage & Co", email="Ops@Babbage.example"
        )
        second = await create_customer(
            client, auth, name="Lovelace 100%", domain="lovelace.example"
        )

        by_email = await client.get(
            "/v1/customers", params={"email": "ops@babbage.EXAMPLE"}, headers=auth
        )
        by_domain = await client.get(
            "/v1/customers", params={"domain": "LOVELACE.example"}, headers=auth
        )
        by_text = await client.get("/v1/customers", params={"q": "100%"}, headers=auth)

        assert [item["id"] for item in by_email.json()["data"]] == [first["id"]]
        assert [item["id"] for item in by_domain.json()["data"]] == [second["id"]]
        assert [item["id"] for item in by_text.json()["data"]] == [second["id"]]

    async def test_excludes_other_workspace(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        await create_customer(client, auth)
        _, other = await make_workspace_key(session)

        page = (await client.get("/v1/customers", headers=other)).json()

        assert page == {"data": [], "next_cursor": None, "has_more": False}

    async def test_bad_cursor(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        for cursor in ("!!!", "A" * 23):
            response = await client.get(
                "/v1/customers", params={"cursor": cursor}, headers=auth
            )

            assert response.status_code == 422, cursor
            assert response.json()["errors"][0]["field"] == "query.cursor"

    async def test_nul_in_filter(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get(
            "/v1/customers", params={"q": "a\x00b"}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "query.q"

    async def test_bad_domain_filter(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get(
            "/v1/customers", params={"domain": "not a domain"}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "query.domain"


class TestUpdateCustomer:
    async def test_updated(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        created = await create_customer(client, auth, email="a@acme.example")

        response = await client.patch(
            f"/v1/customers/{created['id']}",
            json={
                "name": "Acme GmbH",
                "email": None,
                "currency": "EUR",
                "timezone": "Europe/Vienna",
                "payment_terms_days": 14,
            },
            headers={**auth, "If-Match": '"1"'},
        )

        assert response.status_code == 200, response.text
        customer = response.json()
        assert customer["name"] == "Acme GmbH"
        assert customer["email"] is None
        assert customer["currency"] == "EUR"
        assert customer["timezone"] == "Europe/Vienna"
        assert customer["payment_terms_days"] == 14
        assert customer["version"] == 2
        assert response.headers["etag"] == '"2"'
        assert await event_types(session) == ["customer.created", "customer.updated"]

    async def test_malformed_if_match(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await create_customer(client, auth)

        response = await client.patch(
            f"/v1/customers/{created['id']}",
            json={"name": "Changed"},
            headers={**auth, "If-Match": "1"},
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "header.if-match"
        assert "double quotes" in response.json()["errors"][0]["message"]

    async def test_if_match_mismatch(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        created = await create_customer(client, auth)

        response = await client.patch(
            f"/v1/customers/{created['id']}",
            json={"name": "Changed"},
            headers={**auth, "If-Match": '"4"'},
        )

        assert response.status_code == 412
        problem = response.json()
        assert problem["code"] == "version_mismatch"
        assert problem["current_version"] == 1
        current = await client.get(f"/v1/customers/{created['id']}", headers=auth)
        assert current.json()["name"] == created["name"]
        assert await event_types(session) == ["customer.created"]

    async def test_no_change_keeps_version(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        created = await create_customer(client, auth)

        response = await client.patch(
            f"/v1/customers/{created['id']}",
            json={"name": created["name"]},
            headers=auth,
        )

        assert response.status_code == 200
        assert response.json()["version"] == 1
        assert await event_types(session) == ["customer.created"]

    async def test_null_required_field(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await create_customer(client, auth)

        response = await client.patch(
            f"/v1/customers/{created['id']}",
            json={"name": None, "currency": None},
            headers=auth,
        )

        assert response.status_code == 422
        problem = response.json()
        assert [error["field"] for error in problem["errors"]] == ["name", "currency"]
        assert problem["errors"][0]["code"] == "null_not_allowed"

    async def test_bad_currency(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await create_customer(client, auth)

        response = await client.patch(
            f"/v1/customers/{created['id']}", json={"currency": "ABC"}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "currency"

    async def test_other_workspace_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        created = await create_customer(client, auth)
        _, other = await make_workspace_key(session)

        response = await client.patch(
            f"/v1/customers/{created['id']}", json={"name": "Stolen"}, headers=other
        )

        assert response.status_code == 404
        assert response.json()["code"] == "customer_not_found"


class TestCreateContact:
    async def test_created(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        customer = await create_customer(client, auth)

        response = await client.post(
            f"/v1/customers/{customer['id']}/contacts",
            json={
                "email": "ada@analytical.example",
                "first_name": "Ada",
                "last_name": "Lovelace",
                "phone": "+44 20 7946 0000",
            },
            headers=auth,
        )

        assert response.status_code == 201, response.text
        contact = response.json()
        assert contact["id"].startswith("con_")
        assert contact["object"] == "contact"
        assert contact["customer_id"] == customer["id"]
        assert contact["last_name"] == "Lovelace"
        assert response.headers["etag"] == '"1"'
        event = await session.scalar(
            select(Event).where(Event.type == "contact.created")
        )
        assert event is not None
        assert event.data == contact

    async def test_needs_email_or_name(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        customer = await create_customer(client, auth)

        response = await client.post(
            f"/v1/customers/{customer['id']}/contacts",
            json={"phone": "+44 20 7946 0000"},
            headers=auth,
        )

        assert response.status_code == 422
        problem = response.json()
        assert problem["errors"][0]["code"] == "contact_identity_missing"
        assert await session.scalar(select(func.count()).select_from(Contact)) == 0

    async def test_unknown_customer_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        customer = await create_customer(client, auth)
        _, other = await make_workspace_key(session)

        response = await client.post(
            f"/v1/customers/{customer['id']}/contacts",
            json={"email": "x@example.com"},
            headers=other,
        )

        assert response.status_code == 404
        assert response.json()["code"] == "customer_not_found"

    async def test_unknown_field(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        customer = await create_customer(client, auth)

        response = await client.post(
            f"/v1/customers/{customer['id']}/contacts",
            json={"email": "x@example.com", "department": "IT"},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "extra_forbidden"


class TestListContacts:
    async def test_only_this_customer(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        first = await create_customer(client, auth, name="First")
        second = await create_customer(client, auth, name="Second")
        older = await create_contact(client, auth, first["id"], email="a@x.example")
        newer = await create_contact(client, auth, first["id"], email="b@x.example")
        await create_contact(client, auth, second["id"], email="c@x.example")

        response = await client.get(
            f"/v1/customers/{first['id']}/contacts", headers=auth
        )

        assert response.status_code == 200
        page = response.json()
        assert [item["id"] for item in page["data"]] == [newer["id"], older["id"]]
        assert page["has_more"] is False

    async def test_pages(self, client: httpx.AsyncClient, auth: dict[str, str]) -> None:
        customer = await create_customer(client, auth)
        for index in range(3):
            await create_contact(
                client, auth, customer["id"], email=f"p{index}@x.example"
            )

        first_page = (
            await client.get(
                f"/v1/customers/{customer['id']}/contacts?limit=2", headers=auth
            )
        ).json()
        second_page = (
            await client.get(
                f"/v1/customers/{customer['id']}/contacts",
                params={"limit": "2", "cursor": first_page["next_cursor"]},
                headers=auth,
            )
        ).json()

        assert len(first_page["data"]) == 2
        assert first_page["has_more"] is True
        assert len(second_page["data"]) == 1
        assert second_page["has_more"] is False

    async def test_other_workspace_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        customer = await create_customer(client, auth)
        await create_contact(client, auth, customer["id"])
        _, other = await make_workspace_key(session)

        response = await client.get(
            f"/v1/customers/{customer['id']}/contacts", headers=other
        )

        assert response.status_code == 404
        assert response.json()["code"] == "customer_not_found"
