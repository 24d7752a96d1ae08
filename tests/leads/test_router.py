from __future__ import annotations

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Event, Lead
from tests.conftest import make_workspace_key
from tests.users.factories import create_user


async def create_lead(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: object
) -> dict[str, object]:
    body = {"email": "ada@example.com", "first_name": "Ada", **fields}
    response = await client.post("/v1/leads", json=body, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, object] = response.json()
    return data


class TestCreateLead:
    async def test_created(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await client.post(
            "/v1/leads",
            json={"email": "  Ada.Lovelace@EXAMPLE.com ", "company": "Analytical"},
            headers=auth,
        )

        assert response.status_code == 201
        lead = response.json()
        assert lead["id"].startswith("lead_")
        assert lead["email_normalized"] == "ada.lovelace@example.com"
        assert lead["status"] == "new"
        assert response.headers["etag"] == '"1"'
        assert response.headers["location"] == f"/v1/leads/{lead['id']}"
        events = (await session.scalars(select(Event.type))).all()
        assert events == ["lead.created"]

    async def test_idna_domain(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth, email="Jo@Bücher.example")

        assert lead["email_normalized"] == "jo@xn--bcher-kva.example"

    async def test_duplicate_names_existing(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        first = await create_lead(client, auth)

        response = await client.post(
            "/v1/leads", json={"email": "ADA@example.com"}, headers=auth
        )

        assert response.status_code == 409
        problem = response.json()
        assert problem["code"] == "duplicate_lead"
        assert problem["existing_id"] == first["id"]
        assert problem["matched_key"] == "email"
        assert response.headers["content-type"] == "application/problem+json"
        assert await session.scalar(select(func.count()).select_from(Lead)) == 1

    async def test_invalid_email(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads", json={"email": "not-an-email"}, headers=auth
        )

        assert response.status_code == 422
        problem = response.json()
        assert problem["code"] == "validation_failed"
        assert problem["errors"][0]["field"] == "email"

    async def test_overlong_local_part(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
    ) -> None:
        response = await client.post(
            "/v1/leads", json={"email": "a" * 65 + "@example.com"}, headers=auth
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "email"
        assert "too long before the @-sign" in error["message"]
        assert await session.scalar(select(func.count()).select_from(Lead)) == 0

    async def test_overlong_attribute_key(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
    ) -> None:
        key = "k" * 101
        response = await client.post(
            "/v1/leads",
            json={"email": "a@example.com", "attributes": {"plan": "pro", key: 1}},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"] == [
            {
                "field": "attributes",
                "message": f"the key '{key[:40]}…' has 101 characters; use a key of 1 "
                "to 100 characters.",
                "code": "value_error",
            }
        ]
        assert await session.scalar(select(func.count()).select_from(Lead)) == 0

    async def test_empty_attribute_key(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads",
            json={"email": "a@example.com", "attributes": {"": 1}},
            headers=auth,
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "attributes"
        assert error["message"].startswith("the key '' has 0 characters")

    async def test_too_many_attributes(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        attributes = {f"key_{number}": number for number in range(201)}
        response = await client.post(
            "/v1/leads",
            json={"email": "a@example.com", "attributes": attributes},
            headers=auth,
        )

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "attributes"
        assert error["message"] == (
            "has 201 keys, more than the 200 one request may set; remove some."
        )

    async def test_attribute_limits_apply_to_updates(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await client.post(
            "/v1/leads", json={"email": "a@example.com"}, headers=auth
        )
        lead = created.json()

        response = await client.patch(
            f"/v1/leads/{lead['id']}",
            json={"attributes": {"k" * 101: 1}},
            headers={**auth, "If-Match": created.headers["ETag"]},
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "attributes"

    async def test_longest_attribute_key_accepted(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        attributes = {f"{number:03d}" + "k" * 97: number for number in range(200)}
        response = await client.post(
            "/v1/leads",
            json={"email": "a@example.com", "attributes": attributes},
            headers=auth,
        )

        assert response.status_code == 201
        assert response.json()["attributes"] == attributes

    async def test_unknown_field(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads", json={"email": "a@example.com", "favourite": "x"}, headers=auth
        )

        assert response.status_code == 422
        assert response.json()["errors"][0] == {
            "field": "favourite",
            "message": "This field is not accepted here. Remove it, or check its spelling.",
            "code": "extra_forbidden",
        }

    async def test_overlong_name(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads",
            json={"email": "a@example.com", "first_name": "x" * 201},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["code"] == "string_too_long"

    async def test_bad_timezone(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads",
            json={"email": "a@example.com", "timezone": "Mars/Base"},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "timezone"

    async def test_on_behalf_of_sets_owner(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        rep = await create_user(client, auth)

        response = await client.post(
            "/v1/leads",
            json={"email": "a@example.com"},
            headers={**auth, "On-Behalf-Of": rep["id"]},
        )

        assert response.json()["owner_id"] == rep["id"]

    async def test_on_behalf_of_free_text(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads",
            json={"email": "a@example.com"},
            headers={**auth, "On-Behalf-Of": "rep_42"},
        )

        assert response.status_code == 201
        assert response.json()["owner_id"] is None

    async def test_attributes_as_stored(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        created = await create_lead(client, auth, attributes={"zz": 1, "a": [2.50]})

        fetched = (await client.get(f"/v1/leads/{created['id']}", headers=auth)).json()

        # PostgreSQL's jsonb orders keys by length, then bytewise; the created lead
        # shows them as stored, like every later read.
        attributes = created["attributes"]
        assert isinstance(attributes, dict)
        assert list(attributes) == ["a", "zz"]
        assert attributes == fetched["attributes"]
        assert created == fetched
        event_data = await session.scalar(select(Event.data))
        assert event_data == created


class TestGetLead:
    async def test_found(self, client: httpx.AsyncClient, auth: dict[str, str]) -> None:
        created = await create_lead(client, auth)

        response = await client.get(f"/v1/leads/{created['id']}", headers=auth)

        assert response.status_code == 200
        assert response.json() == created

    async def test_other_workspace_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        created = await create_lead(client, auth)
        _, other = await make_workspace_key(session)

        response = await client.get(f"/v1/leads/{created['id']}", headers=other)

        assert response.status_code == 404
        assert response.json()["code"] == "lead_not_found"

    async def test_malformed_id_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get("/v1/leads/cus_123", headers=auth)

        assert response.status_code == 404


class TestListLeads:
    async def test_pages_without_gaps(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = [
            await create_lead(client, auth, email=f"p{i}@example.com") for i in range(5)
        ]

        seen: list[object] = []
        cursor = None
        while True:
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/v1/leads", params=params, headers=auth)).json()
            seen.extend(item["id"] for item in page["data"])
            if not page["has_more"]:
                break
            cursor = page["next_cursor"]

        assert seen == [lead["id"] for lead in reversed(created)]

    async def test_filter_by_status(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await create_lead(client, auth, email="a@example.com")
        second = await create_lead(client, auth, email="b@example.com")
        await client.patch(
            f"/v1/leads/{second['id']}", json={"status": "working"}, headers=auth
        )

        page = (await client.get("/v1/leads?status=working", headers=auth)).json()

        assert [item["id"] for item in page["data"]] == [second["id"]]

    async def test_bad_cursor(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get("/v1/leads?cursor=" + "!" * 22, headers=auth)

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "query.cursor"


class TestUpdateLead:
    async def test_if_match_mismatch(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await create_lead(client, auth)

        response = await client.patch(
            f"/v1/leads/{created['id']}",
            json={"company": "New"},
            headers={**auth, "If-Match": '"7"'},
        )

        assert response.status_code == 412
        assert response.json()["current_version"] == 1

    async def test_if_match_current(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await create_lead(client, auth)

        response = await client.patch(
            f"/v1/leads/{created['id']}",
            json={"company": "New"},
            headers={**auth, "If-Match": '"1"'},
        )

        assert response.status_code == 200
        assert response.json()["version"] == 2
        assert response.headers["etag"] == '"2"'

    async def test_invalid_transition(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        created = await create_lead(client, auth)

        response = await client.patch(
            f"/v1/leads/{created['id']}", json={"status": "converted"}, headers=auth
        )

        assert response.status_code == 409
        problem = response.json()
        assert problem["code"] == "invalid_transition"
        assert "working" in problem["allowed_transitions"]
