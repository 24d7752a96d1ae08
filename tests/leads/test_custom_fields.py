from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import CustomFieldDefinition, Event, Lead
from tests.conftest import make_workspace_key
from tests.leads.helpers import create_lead, define_field


class TestDefineCustomField:
    async def test_created(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await client.post(
            "/v1/custom-fields",
            json={
                "key": "industry",
                "label": "Industry",
                "type": "choice",
                "choices": ["saas", "retail"],
            },
            headers=auth,
        )

        assert response.status_code == 201
        field = response.json()
        assert field["id"].startswith("cf_")
        assert field["object_type"] == "lead"
        assert field["choices"] == ["saas", "retail"]
        assert response.headers["etag"] == '"1"'
        events = (await session.scalars(select(Event.type))).all()
        assert events == ["custom_field.created"]

    async def test_duplicate_key_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        first = await define_field(
            client, auth, key="budget", label="Budget", type="number"
        )

        response = await client.post(
            "/v1/custom-fields",
            json={"key": "budget", "label": "Again", "type": "text"},
            headers=auth,
        )

        assert response.status_code == 409
        assert response.json()["code"] == "duplicate_custom_field"
        assert response.json()["existing_id"] == first["id"]

    async def test_same_key_other_object_type(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await define_field(client, auth, key="budget", label="Budget", type="number")

        other = await define_field(
            client,
            auth,
            key="budget",
            label="Budget",
            type="number",
            object_type="opportunity",
        )

        assert other["object_type"] == "opportunity"

    @pytest.mark.parametrize(
        "body",
        [
            {"key": "Budget", "label": "B", "type": "number"},
            {"key": "1st", "label": "B", "type": "number"},
            {"key": "b", "label": "B", "type": "money"},
            {"key": "b", "label": "B", "type": "choice"},
            {"key": "b", "label": "B", "type": "choice", "choices": ["x", "x"]},
            {"key": "b", "label": "B", "type": "text", "choices": ["x"]},
            {"key": "b", "label": "B", "type": "number", "max_length": 5},
            {"key": "b", "label": "B", "type": "text", "max_length": 0},
            {"key": "b", "label": "", "type": "text"},
            {"key": "b", "label": "B", "type": "text", "object_type": "invoice"},
            {"key": "b", "label": "B", "type": "text", "required": "yes"},
        ],
    )
    async def test_invalid_definition_is_422(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        body: dict[str, object],
    ) -> None:
        response = await client.post("/v1/custom-fields", json=body, headers=auth)

        assert response.status_code == 422
        assert response.json()["errors"]
        count = select(func.count()).select_from(CustomFieldDefinition)
        assert await session.scalar(count) == 0


class TestReadCustomFields:
    async def test_list_by_object_type(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead_field = await define_field(client, auth, key="a", label="A", type="text")
        await define_field(
            client, auth, key="b", label="B", type="text", object_type="customer"
        )

        page = (
            await client.get("/v1/custom-fields?object_type=lead", headers=auth)
        ).json()

        assert [item["id"] for item in page["data"]] == [lead_field["id"]]

    async def test_other_workspace_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        field = await define_field(client, auth, key="a", label="A", type="text")
        _, other_auth = await make_workspace_key(session)

        response = await client.get(
            f"/v1/custom-fields/{field['id']}", headers=other_auth
        )

        assert response.status_code == 404
        assert response.json()["code"] == "custom_field_not_found"


class TestValidateLeadAttributes:
    @pytest.fixture
    async def fields(self, client: httpx.AsyncClient, auth: dict[str, str]) -> None:
        await define_field(
            client, auth, key="nickname", label="Nickname", type="text", max_length=5
        )
        await define_field(client, auth, key="budget", label="Budget", type="number")
        await define_field(client, auth, key="renewal", label="Renewal", type="date")
        await define_field(client, auth, key="vip", label="VIP", type="boolean")
        await define_field(
            client,
            auth,
            key="industry",
            label="Industry",
            type="choice",
            choices=["saas", "retail"],
        )

    @pytest.mark.usefixtures("fields")
    async def test_valid_values_stored(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        attributes = {
            "nickname": "Ada",
            "budget": 1250.5,
            "renewal": "2027-02-28",
            "vip": True,
            "industry": "saas",
            "undefined_key": {"kept": ["as", "given"]},
        }

        lead = await create_lead(client, auth, attributes=attributes)

        assert lead["attributes"] == attributes

    @pytest.mark.parametrize(
        ("key", "value", "expected"),
        [
            ("nickname", 5, "expected a string"),
            ("nickname", "Adelaide", "must be at most 5 characters"),
            ("budget", "1250", "expected a JSON number"),
            ("budget", True, "expected a JSON number"),
            ("renewal", "2027-02-30", "expected a date string YYYY-MM-DD"),
            ("renewal", "28.02.2027", "expected a date string YYYY-MM-DD"),
            ("vip", "yes", "expected true or false"),
            ("vip", 1, "expected true or false"),
            ("industry", "banking", "expected one of: saas, retail"),
            ("industry", ["saas"], "expected one of: saas, retail"),
        ],
    )
    @pytest.mark.usefixtures("fields")
    async def test_wrong_type_is_422(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        key: str,
        value: object,
        expected: str,
    ) -> None:
        response = await client.post(
            "/v1/leads",
            json={"email": "ada@example.com", "attributes": {key: value}},
            headers=auth,
        )

        assert response.status_code == 422
        errors = response.json()["errors"]
        assert errors[0]["field"] == f"attributes.{key}"
        assert errors[0]["message"] == expected
        assert await session.scalar(select(func.count()).select_from(Lead)) == 0

    @pytest.mark.usefixtures("fields")
    async def test_nan_is_rejected(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads",
            content=b'{"email": "ada@example.com", "attributes": {"budget": NaN}}',
            headers={**auth, "Content-Type": "application/json"},
        )

        assert response.status_code == 422

    @pytest.mark.usefixtures("fields")
    async def test_every_wrong_value_listed(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads",
            json={
                "email": "ada@example.com",
                "attributes": {"budget": "x", "vip": "x"},
            },
            headers=auth,
        )

        fields = [error["field"] for error in response.json()["errors"]]
        assert fields == ["attributes.budget", "attributes.vip"]

    @pytest.mark.usefixtures("fields")
    async def test_update_checked(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await create_lead(client, auth, attributes={"budget": 10})

        response = await client.patch(
            f"/v1/leads/{lead['id']}",
            json={"attributes": {"budget": "ten"}},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "attributes.budget"

    async def test_required_missing_on_create(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await define_field(
            client, auth, key="region", label="Region", type="text", required=True
        )

        missing = await client.post(
            "/v1/leads", json={"email": "ada@example.com"}, headers=auth
        )
        null = await client.post(
            "/v1/leads",
            json={"email": "ada@example.com", "attributes": {"region": None}},
            headers=auth,
        )

        assert missing.status_code == 422
        assert missing.json()["errors"][0]["field"] == "attributes.region"
        assert missing.json()["errors"][0]["code"] == "missing"
        assert null.status_code == 422

    async def test_required_kept_when_attributes_omitted(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await define_field(
            client, auth, key="region", label="Region", type="text", required=True
        )
        lead = await create_lead(client, auth, attributes={"region": "emea"})

        renamed = await client.patch(
            f"/v1/leads/{lead['id']}", json={"first_name": "Ada"}, headers=auth
        )
        cleared = await client.patch(
            f"/v1/leads/{lead['id']}", json={"attributes": {}}, headers=auth
        )

        assert renamed.status_code == 200
        assert cleared.status_code == 422

    async def test_other_object_type_not_applied(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await define_field(
            client, auth, key="budget", label="B", type="number", object_type="customer"
        )

        lead = await create_lead(client, auth, attributes={"budget": "any"})

        assert lead["attributes"] == {"budget": "any"}


class TestUpdateCustomField:
    async def test_type_change_with_values_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        field = await define_field(client, auth, key="budget", label="B", type="number")
        await create_lead(client, auth, attributes={"budget": 5})

        response = await client.patch(
            f"/v1/custom-fields/{field['id']}", json={"type": "text"}, headers=auth
        )

        assert response.status_code == 409
        assert response.json()["code"] == "custom_field_in_use"
        unchanged = (
            await client.get(f"/v1/custom-fields/{field['id']}", headers=auth)
        ).json()
        assert unchanged["type"] == "number"

    async def test_type_change_without_values(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        field = await define_field(client, auth, key="budget", label="B", type="number")
        await create_lead(client, auth, attributes={"other": 5})

        response = await client.patch(
            f"/v1/custom-fields/{field['id']}",
            json={"type": "choice", "choices": ["low", "high"]},
            headers={**auth, "If-Match": '"1"'},
        )

        assert response.status_code == 200
        assert response.json()["type"] == "choice"
        assert response.headers["etag"] == '"2"'

    async def test_label_change_with_values(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        field = await define_field(client, auth, key="budget", label="B", type="number")
        await create_lead(client, auth, attributes={"budget": 5})

        response = await client.patch(
            f"/v1/custom-fields/{field['id']}", json={"label": "Budget"}, headers=auth
        )

        assert response.status_code == 200
        assert response.json()["label"] == "Budget"
        types = (await session.scalars(select(Event.type))).all()
        assert "custom_field.updated" in types

    @pytest.mark.parametrize(
        "body",
        [
            {"type": "choice"},
            {"choices": ["a"]},
            {"max_length": 10},
            {"label": None},
            {"type": None},
        ],
    )
    async def test_invalid_change_is_422(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        body: dict[str, object],
    ) -> None:
        field = await define_field(client, auth, key="budget", label="B", type="number")

        response = await client.patch(
            f"/v1/custom-fields/{field['id']}", json=body, headers=auth
        )

        assert response.status_code == 422

    async def test_stale_if_match_is_412(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        field = await define_field(client, auth, key="budget", label="B", type="number")

        response = await client.patch(
            f"/v1/custom-fields/{field['id']}",
            json={"label": "X"},
            headers={**auth, "If-Match": '"7"'},
        )

        assert response.status_code == 412


class TestDeleteCustomField:
    async def test_values_kept_untyped(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        field = await define_field(client, auth, key="budget", label="B", type="number")
        lead = await create_lead(client, auth, attributes={"budget": 5})

        deleted = await client.delete(f"/v1/custom-fields/{field['id']}", headers=auth)
        updated = await client.patch(
            f"/v1/leads/{lead['id']}",
            json={"attributes": {"budget": "now text"}},
            headers=auth,
        )

        assert deleted.status_code == 204
        assert updated.status_code == 200
        missing = await client.get(f"/v1/custom-fields/{field['id']}", headers=auth)
        assert missing.status_code == 404
