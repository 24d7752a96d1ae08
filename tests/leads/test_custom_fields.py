from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import Database
from app.core.ids import new_uuid
from app.core.jobs import JobQueue
from app.main import create_app
from app.models import CustomFieldDefinition, Event, Lead, Workspace
from app.settings import Settings
from tests.conftest import TestDatabase, make_workspace_key
from tests.leads.helpers import create_lead, define_field, post_ok


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

    async def test_filter_finds_oldest_of_many(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        workspace: Workspace,
    ) -> None:
        rows = [
            {
                "id": new_uuid(),
                "workspace_id": workspace.id,
                "object_type": "lead",
                "key": f"field_{number:05d}",
                "label": "Field",
                "type": "text",
                "choices": [],
            }
            for number in range(10_001)
        ]
        await session.execute(insert(CustomFieldDefinition), rows)
        await session.commit()
        await create_lead(client, auth, attributes={"field_00000": "first"})

        oldest = await client.get(
            "/v1/leads", params={"attribute": "field_00000:eq:first"}, headers=auth
        )
        newest = await client.get(
            "/v1/leads", params={"attribute": "field_10000:exists:false"}, headers=auth
        )

        assert oldest.status_code == 200, oldest.text
        assert len(oldest.json()["data"]) == 1
        assert newest.status_code == 200, newest.text
        assert len(newest.json()["data"]) == 1


def limited_app(
    settings: Settings, database: Database, queue: JobQueue, limit: int
) -> httpx.AsyncClient:
    """An API client whose workspaces may have ``limit`` definitions per object type."""
    limited = settings.model_copy(
        update={"custom_field_max_definitions_per_object_type": limit}
    )
    app = create_app(limited, database=database, queue=queue)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


class TestCustomFieldLimit:
    async def test_create_beyond_limit_is_409(
        self,
        auth: dict[str, str],
        settings: Settings,
        database: TestDatabase,
        queue: JobQueue,
        session: AsyncSession,
    ) -> None:
        async with limited_app(settings, database, queue, 2) as api:
            first = await define_field(api, auth, key="a", label="A", type="text")
            await define_field(api, auth, key="b", label="B", type="text")
            rejected = await api.post(
                "/v1/custom-fields",
                json={"key": "c", "label": "C", "type": "text"},
                headers=auth,
            )
            await api.delete(f"/v1/custom-fields/{first['id']}", headers=auth)
            after_delete = await api.post(
                "/v1/custom-fields",
                json={"key": "c", "label": "C", "type": "text"},
                headers=auth,
            )

        assert rejected.status_code == 409, rejected.text
        problem = rejected.json()
        assert problem["code"] == "custom_field_limit_reached"
        assert problem["limit"] == 2
        assert (
            "SALESCYCLE_CUSTOM_FIELD_MAX_DEFINITIONS_PER_OBJECT_TYPE is 2"
            in problem["detail"]
        )
        assert after_delete.status_code == 201, after_delete.text
        count = select(func.count()).select_from(CustomFieldDefinition)
        assert await session.scalar(count) == 2

    async def test_limit_per_object_type_and_workspace(
        self,
        auth: dict[str, str],
        settings: Settings,
        database: TestDatabase,
        queue: JobQueue,
        session: AsyncSession,
    ) -> None:
        _, other = await make_workspace_key(session)

        async with limited_app(settings, database, queue, 1) as api:
            await define_field(api, auth, key="a", label="A", type="text")
            customer = await api.post(
                "/v1/custom-fields",
                json={
                    "key": "a",
                    "label": "A",
                    "type": "text",
                    "object_type": "customer",
                },
                headers=auth,
            )
            elsewhere = await api.post(
                "/v1/custom-fields",
                json={"key": "a", "label": "A", "type": "text"},
                headers=other,
            )

        assert customer.status_code == 201, customer.text
        assert elsewhere.status_code == 201, elsewhere.text

    def test_default_limit(self) -> None:
        field = Settings.model_fields["custom_field_max_definitions_per_object_type"]

        assert field.default == 500


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

    async def test_removing_used_choice_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        field = await define_field(
            client,
            auth,
            key="industry",
            label="Industry",
            type="choice",
            choices=["saas", "retail", "banking"],
        )
        await create_lead(client, auth, attributes={"industry": "retail"})

        response = await client.patch(
            f"/v1/custom-fields/{field['id']}",
            json={"choices": ["saas"]},
            headers=auth,
        )

        assert response.status_code == 409, response.text
        problem = response.json()
        assert problem["code"] == "custom_field_in_use"
        assert problem["choices_in_use"] == ["retail"]
        assert "'retail'" in problem["detail"]
        assert "banking" not in problem["detail"]
        unchanged = (
            await client.get(f"/v1/custom-fields/{field['id']}", headers=auth)
        ).json()
        assert unchanged["choices"] == ["saas", "retail", "banking"]

    async def test_removing_unused_choice(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        field = await define_field(
            client,
            auth,
            key="industry",
            label="Industry",
            type="choice",
            choices=["saas", "retail"],
        )
        await create_lead(client, auth, attributes={"industry": "saas"})

        response = await client.patch(
            f"/v1/custom-fields/{field['id']}",
            json={"choices": ["saas", "banking"]},
            headers=auth,
        )

        assert response.status_code == 200, response.text
        assert response.json()["choices"] == ["saas", "banking"]

    async def test_removed_choice_matches_strings_only(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        field = await define_field(
            client, auth, key="tier", label="Tier", type="choice", choices=["1", "2"]
        )
        await client.delete(f"/v1/custom-fields/{field['id']}", headers=auth)
        await create_lead(client, auth, attributes={"tier": 2})
        field = await define_field(
            client, auth, key="tier", label="Tier", type="choice", choices=["1", "2"]
        )

        response = await client.patch(
            f"/v1/custom-fields/{field['id']}", json={"choices": ["1"]}, headers=auth
        )

        assert response.status_code == 200, response.text

    async def test_max_length_below_values_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        field = await define_field(
            client, auth, key="nickname", label="Nickname", type="text", max_length=20
        )
        await create_lead(client, auth, attributes={"nickname": "Ada"})
        await post_ok(
            client,
            "/v1/leads",
            auth,
            {"email": "grace@example.com", "attributes": {"nickname": "Gracie Hopper"}},
        )

        response = await client.patch(
            f"/v1/custom-fields/{field['id']}", json={"max_length": 5}, headers=auth
        )

        assert response.status_code == 409, response.text
        problem = response.json()
        assert problem["code"] == "custom_field_in_use"
        assert problem["longest_value_length"] == 13
        assert "13 characters" in problem["detail"]
        unchanged = (
            await client.get(f"/v1/custom-fields/{field['id']}", headers=auth)
        ).json()
        assert unchanged["max_length"] == 20

    async def test_max_length_set_below_values_is_409(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        field = await define_field(
            client, auth, key="nickname", label="Nickname", type="text"
        )
        await create_lead(client, auth, attributes={"nickname": "Adelaide"})

        response = await client.patch(
            f"/v1/custom-fields/{field['id']}", json={"max_length": 7}, headers=auth
        )

        assert response.status_code == 409, response.text
        assert response.json()["longest_value_length"] == 8

    async def test_max_length_at_longest_value(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        field = await define_field(
            client, auth, key="nickname", label="Nickname", type="text", max_length=20
        )
        await create_lead(client, auth, attributes={"nickname": "Adelaide"})

        response = await client.patch(
            f"/v1/custom-fields/{field['id']}", json={"max_length": 8}, headers=auth
        )

        assert response.status_code == 200, response.text
        assert response.json()["max_length"] == 8

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
