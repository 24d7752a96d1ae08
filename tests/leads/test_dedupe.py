"""Duplicate detection on create, merge on duplicate, and candidate listing."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import Event, Lead, Workspace
from tests.conftest import make_workspace_key


async def post_lead(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: Any
) -> dict[str, Any]:
    response = await client.post("/v1/leads", json=fields, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


class TestDuplicateCreate:
    async def test_email_blocks_with_candidates(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        first = await post_lead(client, auth, email="ada@acme.com", phone="+4930123456")
        colleague = await post_lead(client, auth, email="bob@acme.com")

        response = await client.post(
            "/v1/leads",
            json={"email": "ADA@acme.com", "phone": "+49 30 123456"},
            headers=auth,
        )

        assert response.status_code == 409
        problem = response.json()
        assert problem["code"] == "duplicate_lead"
        assert problem["existing_id"] == first["id"]
        assert problem["matched_key"] == "email"
        candidates = {c["lead_id"]: c["matched_keys"] for c in problem["candidates"]}
        assert candidates[first["id"]] == ["email", "phone", "company_domain"]
        assert candidates[colleague["id"]] == ["company_domain"]
        assert problem["candidates"][0]["lead_id"] == first["id"]
        assert await session.scalar(select(func.count()).select_from(Lead)) == 2

    async def test_phone_match_does_not_block(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await post_lead(client, auth, email="ada@acme.com", phone="+4930123456")

        response = await client.post(
            "/v1/leads",
            json={"email": "other@gmail.com", "phone": "+4930123456"},
            headers=auth,
        )

        assert response.status_code == 201

    async def test_closed_lead_does_not_block(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        first = await post_lead(client, auth, email="ada@acme.com")
        junked = await client.patch(
            f"/v1/leads/{first['id']}", json={"status": "junk"}, headers=auth
        )
        assert junked.status_code == 200, junked.text

        response = await client.post(
            "/v1/leads", json={"email": "ada@acme.com"}, headers=auth
        )

        assert response.status_code == 201

    async def test_other_workspace_does_not_block(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        await post_lead(client, auth, email="ada@acme.com")
        _, other = await make_workspace_key(session)

        response = await client.post(
            "/v1/leads", json={"email": "ada@acme.com"}, headers=other
        )

        assert response.status_code == 201

    async def test_invalid_on_duplicate(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads",
            json={"email": "ada@acme.com", "on_duplicate": "replace"},
            headers=auth,
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "on_duplicate"


class TestMergeOnDuplicate:
    async def test_updates_existing(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        first = await post_lead(
            client,
            auth,
            email="ada@acme.com",
            first_name="Ada",
            title="CTO",
            attributes={"size": 10, "plan": "free"},
        )

        response = await client.post(
            "/v1/leads",
            json={
                "email": "Ada@Acme.com",
                "last_name": "Lovelace",
                "title": "CEO",
                "attributes": {"plan": "pro", "seats": ""},
                "on_duplicate": "merge",
            },
            headers=auth,
        )

        assert response.status_code == 200, response.text
        lead = response.json()
        assert lead["id"] == first["id"]
        assert lead["first_name"] == "Ada"
        assert lead["last_name"] == "Lovelace"
        assert lead["title"] == "CEO"
        assert lead["attributes"] == {"size": 10, "plan": "pro"}
        assert lead["version"] == 2
        assert response.headers["etag"] == '"2"'
        types = (await session.scalars(select(Event.type).order_by(Event.id))).all()
        assert types == ["lead.created", "lead.updated"]

    async def test_same_fields_record_only_a_touch(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        first = await post_lead(client, auth, email="ada@acme.com", first_name="Ada")

        response = await client.post(
            "/v1/leads",
            json={
                "email": "ada@acme.com",
                "first_name": "Ada",
                "on_duplicate": "merge",
                "attribution": {"utm_source": "newsletter"},
            },
            headers=auth,
        )

        assert response.status_code == 200
        lead = response.json()
        assert lead["first_name"] == "Ada"
        assert lead["last_touch_id"] != first["first_touch_id"]
        touches = await client.get(f"/v1/leads/{first['id']}/touches", headers=auth)
        assert [touch["utm_source"] for touch in touches.json()["data"]] == [
            "newsletter",
            None,
        ]
        types = (await session.scalars(select(Event.type).order_by(Event.id))).all()
        assert types == ["lead.created", "lead.updated"]

    async def test_no_duplicate_creates(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads",
            json={"email": "new@acme.com", "on_duplicate": "merge"},
            headers=auth,
        )

        assert response.status_code == 201


class TestUpdateEmail:
    async def test_to_open_lead_email_409(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        first = await post_lead(client, auth, email="ada@acme.com")
        second = await post_lead(client, auth, email="bob@acme.com")

        response = await client.patch(
            f"/v1/leads/{second['id']}", json={"email": "ADA@acme.com"}, headers=auth
        )

        assert response.status_code == 409
        problem = response.json()
        assert problem["existing_id"] == first["id"]
        assert second["id"] not in [c["lead_id"] for c in problem["candidates"]]


class TestListDuplicates:
    async def test_matched_keys(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await post_lead(client, auth, email="ada@acme.com", phone="+4930123456")
        same_phone = await post_lead(
            client, auth, email="ada@gmail.com", phone="+49 30 123456"
        )
        same_domain = await post_lead(client, auth, email="bob@acme.com")
        await post_lead(client, auth, email="eve@other.com")

        response = await client.get(f"/v1/leads/{lead['id']}/duplicates", headers=auth)

        assert response.status_code == 200
        found = {c["lead_id"]: c["matched_keys"] for c in response.json()["data"]}
        assert found == {
            same_phone["id"]: ["phone"],
            same_domain["id"]: ["company_domain"],
        }

    async def test_merged_leads_left_out(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await post_lead(client, auth, email="ada@acme.com")
        other = await post_lead(client, auth, email="bob@acme.com")
        merged = await client.post(
            f"/v1/leads/{lead['id']}/merge",
            json={"duplicate_id": other["id"]},
            headers=auth,
        )
        assert merged.status_code == 200, merged.text

        response = await client.get(f"/v1/leads/{lead['id']}/duplicates", headers=auth)

        assert response.json()["data"] == []

    async def test_other_workspace_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        lead = await post_lead(client, auth, email="ada@acme.com")
        _, other = await make_workspace_key(session)

        response = await client.get(f"/v1/leads/{lead['id']}/duplicates", headers=other)

        assert response.status_code == 404


class TestConcurrentCreate:
    async def test_one_lead(
        self,
        committed_client: httpx.AsyncClient,
        committed_auth: dict[str, str],
        committed_workspace: Workspace,
        committing_sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        client, auth = committed_client, committed_auth

        responses = await asyncio.gather(
            *(
                client.post("/v1/leads", json={"email": "race@acme.com"}, headers=auth)
                for _ in range(5)
            )
        )

        statuses = sorted(response.status_code for response in responses)
        assert statuses == [201, 409, 409, 409, 409]
        winner = next(r for r in responses if r.status_code == 201).json()
        for response in responses:
            if response.status_code == 409:
                assert response.json()["existing_id"] == winner["id"]
        async with committing_sessionmaker() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(Lead)
                .where(Lead.workspace_id == committed_workspace.id)
            )
        assert count == 1

    async def test_concurrent_merges_one_lead(
        self,
        committed_client: httpx.AsyncClient,
        committed_auth: dict[str, str],
        committed_workspace: Workspace,
        committing_sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        client, auth = committed_client, committed_auth
        bodies = [
            {
                "email": "race@acme.com",
                "on_duplicate": "merge",
                "attributes": {str(i): i},
            }
            for i in range(4)
        ]

        responses = await asyncio.gather(
            *(client.post("/v1/leads", json=body, headers=auth) for body in bodies)
        )

        assert sorted(r.status_code for r in responses) == [200, 200, 200, 201]
        assert len({r.json()["id"] for r in responses}) == 1
        async with committing_sessionmaker() as session:
            lead = await session.scalar(
                select(Lead).where(Lead.workspace_id == committed_workspace.id)
            )
        assert lead is not None
        assert lead.attributes == {"0": 0, "1": 1, "2": 2, "3": 3}


class TestReopenOntoOpenEmail:
    async def test_409_names_open_lead(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        old = await post_lead(client, auth, email="ada@acme.com")
        await client.patch(
            f"/v1/leads/{old['id']}",
            json={"status": "disqualified", "status_reason": "no budget"},
            headers=auth,
        )
        new = await post_lead(client, auth, email="ada@acme.com")

        response = await client.patch(
            f"/v1/leads/{old['id']}", json={"status": "working"}, headers=auth
        )

        assert response.status_code == 409
        problem = response.json()
        assert problem["code"] == "duplicate_lead"
        assert [c["lead_id"] for c in problem["candidates"]] == [new["id"]]
        fetched = await client.get(f"/v1/leads/{old['id']}", headers=auth)
        assert fetched.json()["status"] == "disqualified"
