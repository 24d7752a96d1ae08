"""POST /v1/leads/{id}/merge: survivorship, enrollments, events and the rejections."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core import ids
from app.leads import merge as merge_module
from app.models import Event, Lead, Workspace
from tests.conftest import make_workspace_key
from tests.nurture.conftest import create_sequence, enroll
from tests.users.factories import create_user


async def post_lead(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: Any
) -> dict[str, Any]:
    response = await client.post("/v1/leads", json=fields, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def merge(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    survivor_id: str,
    duplicate_id: str,
    **headers: str,
) -> httpx.Response:
    return await client.post(
        f"/v1/leads/{survivor_id}/merge",
        json={"duplicate_id": duplicate_id},
        headers={**auth, **headers},
    )


class TestMergeLeads:
    async def test_survivorship(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        survivor = await post_lead(
            client,
            auth,
            email="ada@acme.com",
            first_name="Ada",
            attributes={"plan": "pro", "size": None},
        )
        duplicate = await post_lead(
            client,
            auth,
            email="ada.l@gmail.com",
            first_name="Adeline",
            last_name="Lovelace",
            phone="+4930123456",
            attributes={"plan": "free", "size": 50, "seats": 3},
        )

        response = await merge(client, auth, survivor["id"], duplicate["id"])

        assert response.status_code == 200, response.text
        lead = response.json()
        assert lead["id"] == survivor["id"]
        assert lead["email"] == "ada@acme.com"
        assert lead["first_name"] == "Ada"
        assert lead["last_name"] == "Lovelace"
        assert lead["phone_normalized"] == "+4930123456"
        assert lead["company_domain"] == "acme.com"
        assert lead["attributes"] == {"plan": "pro", "size": 50, "seats": 3}
        assert response.headers["etag"] == f'"{lead["version"]}"'

    async def test_duplicate_marked_merged(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        survivor = await post_lead(client, auth, email="a@acme.com")
        duplicate = await post_lead(client, auth, email="b@acme.com")

        await merge(client, auth, survivor["id"], duplicate["id"])
        fetched = await client.get(f"/v1/leads/{duplicate['id']}", headers=auth)

        assert fetched.json()["status"] == "merged"
        assert fetched.json()["merged_into_id"] == survivor["id"]
        assert fetched.json()["status_changed_at"] is not None

    async def test_frees_duplicate_email(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        survivor = await post_lead(client, auth, email="a@acme.com")
        duplicate = await post_lead(client, auth, email="b@acme.com")
        await merge(client, auth, survivor["id"], duplicate["id"])

        response = await client.post(
            "/v1/leads", json={"email": "b@acme.com"}, headers=auth
        )

        assert response.status_code == 201

    async def test_events(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        survivor = await post_lead(client, auth, email="a@acme.com")
        duplicate = await post_lead(client, auth, email="b@acme.com", title="CTO")

        await merge(client, auth, survivor["id"], duplicate["id"])

        events = (
            await session.execute(
                select(Event.type, Event.data)
                .where(Event.type != "lead.created")
                .order_by(Event.id)
            )
        ).all()
        assert [(type, data["id"]) for type, data in events] == [
            ("lead.merged", duplicate["id"]),
            ("lead.updated", survivor["id"]),
        ]
        assert events[1].data["title"] == "CTO"

    async def test_only_touches_join_survivor(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        survivor = await post_lead(client, auth, email="a@acme.com", title="CTO")
        duplicate = await post_lead(client, auth, email="b@acme.com")

        response = await merge(client, auth, survivor["id"], duplicate["id"])

        merged = response.json()
        assert merged["version"] == 2
        assert merged["title"] == "CTO"
        assert merged["first_touch_id"] == survivor["first_touch_id"]
        assert merged["last_touch_id"] == duplicate["first_touch_id"]
        types = (await session.scalars(select(Event.type).order_by(Event.id))).all()
        assert types == ["lead.created", "lead.created", "lead.merged", "lead.updated"]

    async def test_if_match(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        survivor = await post_lead(client, auth, email="a@acme.com")
        duplicate = await post_lead(client, auth, email="b@acme.com")

        stale = await merge(
            client, auth, survivor["id"], duplicate["id"], **{"If-Match": '"7"'}
        )
        fresh = await merge(
            client, auth, survivor["id"], duplicate["id"], **{"If-Match": '"1"'}
        )

        assert stale.status_code == 412
        assert fresh.status_code == 200

    async def test_added_mover_runs(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        calls: list[tuple[str, str, str]] = []

        async def record(
            session: AsyncSession, duplicate: Lead, survivor: Lead, actor: str | None
        ) -> None:
            calls.append((duplicate.status, str(duplicate.id), str(survivor.id)))

        monkeypatch.setattr(merge_module, "MOVERS", (*merge_module.MOVERS, record))
        survivor = await post_lead(client, auth, email="a@acme.com")
        duplicate = await post_lead(client, auth, email="b@acme.com")

        await merge(client, auth, survivor["id"], duplicate["id"])

        assert len(calls) == 1
        assert calls[0][0] == "merged"
        assert calls[0][1] == str(ids.decode("lead", duplicate["id"]))
        assert calls[0][2] == str(ids.decode("lead", survivor["id"]))


class TestMergeRejected:
    async def test_into_itself(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        lead = await post_lead(client, auth, email="a@acme.com")

        response = await merge(client, auth, lead["id"], lead["id"])

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "duplicate_id"

    async def test_already_merged(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        survivor = await post_lead(client, auth, email="a@acme.com")
        duplicate = await post_lead(client, auth, email="b@acme.com")
        await merge(client, auth, survivor["id"], duplicate["id"])

        again = await merge(client, auth, survivor["id"], duplicate["id"])
        reversed_ = await merge(client, auth, duplicate["id"], survivor["id"])

        assert again.status_code == 409
        assert again.json()["code"] == "lead_not_mergeable"
        assert again.json()["current_status"] == "merged"
        assert reversed_.status_code == 409

    async def test_converted(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        survivor = await post_lead(client, auth, email="a@acme.com")
        duplicate = await post_lead(client, auth, email="b@acme.com")
        converted = await client.post(
            f"/v1/leads/{duplicate['id']}/convert", json={}, headers=auth
        )
        assert converted.status_code == 200, converted.text

        response = await merge(client, auth, survivor["id"], duplicate["id"])

        assert response.status_code == 409
        assert response.json()["current_status"] == "converted"

    async def test_other_workspace_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        survivor = await post_lead(client, auth, email="a@acme.com")
        _, other = await make_workspace_key(session)
        foreign = await post_lead(client, other, email="b@acme.com")

        response = await merge(client, auth, survivor["id"], foreign["id"])

        assert response.status_code == 404
        assert foreign["id"] in response.json()["detail"]
        fetched = await client.get(f"/v1/leads/{foreign['id']}", headers=other)
        assert fetched.json()["status"] == "new"

    async def test_unknown_duplicate_id(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        survivor = await post_lead(client, auth, email="a@acme.com")

        response = await merge(client, auth, survivor["id"], "cus_0000")

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "duplicate_id"

    async def test_missing_body(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        survivor = await post_lead(client, auth, email="a@acme.com")

        response = await client.post(
            f"/v1/leads/{survivor['id']}/merge", json={}, headers=auth
        )

        assert response.status_code == 422


class TestMergeEnrollments:
    async def test_moved_to_survivor(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        survivor = await post_lead(client, auth, email="a@acme.com")
        duplicate = await post_lead(client, auth, email="b@acme.com")
        sequence = await create_sequence(client, auth)
        enrollment = await enroll(client, auth, sequence["id"], duplicate["id"])

        await merge(client, auth, survivor["id"], duplicate["id"])
        fetched = await client.get(f"/v1/enrollments/{enrollment['id']}", headers=auth)

        assert fetched.json()["lead_id"] == survivor["id"]
        assert fetched.json()["status"] == "active"
        types = (await session.scalars(select(Event.type))).all()
        assert "enrollment.moved" in types

    async def test_same_sequence_exits_merged(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        survivor = await post_lead(client, auth, email="a@acme.com")
        duplicate = await post_lead(client, auth, email="b@acme.com")
        sequence = await create_sequence(client, auth)
        kept = await enroll(client, auth, sequence["id"], survivor["id"])
        dropped = await enroll(client, auth, sequence["id"], duplicate["id"])

        await merge(client, auth, survivor["id"], duplicate["id"])
        kept_now = await client.get(f"/v1/enrollments/{kept['id']}", headers=auth)
        dropped_now = await client.get(f"/v1/enrollments/{dropped['id']}", headers=auth)

        assert kept_now.json()["status"] == "active"
        assert dropped_now.json()["status"] == "exited"
        assert dropped_now.json()["exit_reason"] == "merged"
        assert dropped_now.json()["lead_id"] == duplicate["id"]


class TestConcurrentMerge:
    async def test_opposite_directions(
        self,
        committed_client: httpx.AsyncClient,
        committed_auth: dict[str, str],
        committed_workspace: Workspace,
        committing_sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        client, auth = committed_client, committed_auth
        first = await post_lead(client, auth, email="a@acme.com")
        second = await post_lead(client, auth, email="b@acme.com")

        responses = await asyncio.gather(
            merge(client, auth, first["id"], second["id"]),
            merge(client, auth, second["id"], first["id"]),
        )

        assert sorted(r.status_code for r in responses) == [200, 409]
        async with committing_sessionmaker() as session:
            statuses = sorted(
                (
                    await session.scalars(
                        select(Lead.status).where(
                            Lead.workspace_id == committed_workspace.id
                        )
                    )
                ).all()
            )
        assert statuses == ["merged", "new"]


class TestMergeTagsAndOwner:
    async def test_tags_joined(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        survivor = await post_lead(client, auth, email="a@acme.com", tags=["new"])
        duplicate = await post_lead(client, auth, email="b@acme.com", tags=["vip"])

        response = await merge(client, auth, survivor["id"], duplicate["id"])

        assert response.json()["tags"] == ["new", "vip"]

    async def test_owner_taken_is_audited(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        owner = await create_user(client, auth)
        survivor = await post_lead(client, auth, email="a@acme.com")
        duplicate = await post_lead(
            client, auth, email="b@acme.com", owner_id=owner["id"]
        )

        response = await merge(client, auth, survivor["id"], duplicate["id"])

        assert response.json()["owner_id"] == owner["id"]
        audit = await client.get(
            f"/v1/leads/{survivor['id']}/assignments", headers=auth
        )
        assert [row["to_user_id"] for row in audit.json()["data"]] == [owner["id"]]

    async def test_inactive_owner_not_taken(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        owner = await create_user(client, auth)
        survivor = await post_lead(client, auth, email="a@acme.com")
        duplicate = await post_lead(
            client, auth, email="b@acme.com", owner_id=owner["id"]
        )
        await client.patch(
            f"/v1/users/{owner['id']}", json={"active": False}, headers=auth
        )

        response = await merge(client, auth, survivor["id"], duplicate["id"])

        assert response.json()["owner_id"] is None
