"""Objections on an opportunity, and the workspace's lost reasons."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.models import Event
from tests.conftest import make_workspace_key
from tests.opportunities.factories import (
    create_lost_reason,
    create_opportunity,
    stage_ids,
)


async def create_objection(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    opportunity_id: str,
    **fields: object,
) -> dict[str, Any]:
    body = {"category": "price", "text": "Twice what we budgeted", **fields}
    response = await client.post(
        f"/v1/opportunities/{opportunity_id}/objections", json=body, headers=auth
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def event_types(session: AsyncSession, kind: str, object_id: str) -> list[str]:
    rows = await session.scalars(
        select(Event.type)
        .where(Event.object_id == ids.decode(kind, object_id))
        .order_by(Event.sequence)
    )
    return list(rows.all())


class TestObjections:
    async def test_created(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        opportunity = await create_opportunity(client, auth)

        response = await client.post(
            f"/v1/opportunities/{opportunity['id']}/objections",
            json={
                "category": "competitor",
                "text": "Napier is cheaper",
                "blocking": True,
            },
            headers={**auth, "On-Behalf-Of": "rep_3"},
        )

        assert response.status_code == 201, response.text
        objection = response.json()
        assert objection["id"].startswith("objn_")
        assert objection["opportunity_id"] == opportunity["id"]
        assert objection["status"] == "open"
        assert objection["blocking"] is True
        assert objection["created_by"] == "rep_3"
        assert objection["resolved_at"] is None
        assert response.headers["etag"] == '"1"'
        assert response.headers["location"].endswith(objection["id"])
        assert await event_types(session, "objection", objection["id"]) == [
            "objection.created"
        ]

    async def test_idempotency_key_replays(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        opportunity = await create_opportunity(client, auth)
        keyed = {**auth, "Idempotency-Key": "objection-1"}
        body = {"category": "timing", "text": "Not before April"}
        base = f"/v1/opportunities/{opportunity['id']}/objections"

        first = await client.post(base, json=body, headers=keyed)
        second = await client.post(base, json=body, headers=keyed)
        listed = await client.get(base, headers=auth)

        assert first.status_code == 201
        assert second.status_code == 201
        assert second.headers["idempotent-replayed"] == "true"
        assert second.json()["id"] == first.json()["id"]
        assert len(listed.json()["data"]) == 1

    async def test_resolve_and_reopen(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        opportunity = await create_opportunity(client, auth)
        objection = await create_objection(client, auth, opportunity["id"])
        path = f"/v1/opportunities/{opportunity['id']}/objections/{objection['id']}"

        resolved = await client.patch(
            path,
            json={"status": "resolved", "resolution_notes": "Annual plan discount"},
            headers={**auth, "If-Match": '"1"'},
        )
        stale = await client.patch(
            path, json={"status": "open"}, headers={**auth, "If-Match": '"1"'}
        )
        reopened = await client.patch(path, json={"status": "open"}, headers=auth)

        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["status"] == "resolved"
        assert resolved.json()["resolution_notes"] == "Annual plan discount"
        assert resolved.json()["resolved_at"] is not None
        assert stale.status_code == 412
        assert reopened.json()["resolved_at"] is None
        assert await event_types(session, "objection", objection["id"]) == [
            "objection.created",
            "objection.updated",
            "objection.resolved",
            "objection.updated",
        ]

    async def test_list_filter_and_get(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        opportunity = await create_opportunity(client, auth)
        first = await create_objection(client, auth, opportunity["id"])
        second = await create_objection(
            client, auth, opportunity["id"], category="timing", status="lost_on"
        )
        base = f"/v1/opportunities/{opportunity['id']}/objections"

        everything = await client.get(base, headers=auth)
        lost_on = await client.get(base, params={"status": "lost_on"}, headers=auth)
        fetched = await client.get(f"{base}/{first['id']}", headers=auth)

        assert [item["id"] for item in everything.json()["data"]] == [
            second["id"],
            first["id"],
        ]
        assert [item["id"] for item in lost_on.json()["data"]] == [second["id"]]
        assert fetched.json() == first

    async def test_invalid_input(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        opportunity = await create_opportunity(client, auth)
        objection = await create_objection(client, auth, opportunity["id"])
        base = f"/v1/opportunities/{opportunity['id']}/objections"
        bodies: list[dict[str, Any]] = [
            {"category": "colour", "text": "Too blue"},
            {"category": "price", "text": ""},
            {"category": "price", "text": "x", "status": "pending"},
            {"category": "price", "text": "x", "blocking": "yes"},
        ]

        for body in bodies:
            response = await client.post(base, json=body, headers=auth)
            assert response.status_code == 422, body
        nulled = await client.patch(
            f"{base}/{objection['id']}", json={"text": None}, headers=auth
        )
        assert nulled.status_code == 422

    async def test_delete(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        opportunity = await create_opportunity(client, auth)
        objection = await create_objection(client, auth, opportunity["id"])
        path = f"/v1/opportunities/{opportunity['id']}/objections/{objection['id']}"

        response = await client.delete(path, headers={**auth, "If-Match": '"1"'})
        fetched = await client.get(path, headers=auth)

        assert response.status_code == 204
        assert fetched.status_code == 404
        assert fetched.json()["code"] == "objection_not_found"
        assert (await event_types(session, "objection", objection["id"]))[-1] == (
            "objection.deleted"
        )

    async def test_other_opportunity_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        opportunity = await create_opportunity(client, auth)
        other_opportunity = await create_opportunity(client, auth)
        objection = await create_objection(client, auth, opportunity["id"])
        _, other = await make_workspace_key(session)

        wrong_parent = await client.get(
            f"/v1/opportunities/{other_opportunity['id']}/objections/{objection['id']}",
            headers=auth,
        )
        wrong_workspace = await client.get(
            f"/v1/opportunities/{opportunity['id']}/objections", headers=other
        )

        assert wrong_parent.status_code == 404
        assert wrong_workspace.status_code == 404


class TestLostReasons:
    async def test_crud(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        created = await client.post(
            "/v1/lost-reasons",
            json={"name": "Price", "description": "Too expensive for them"},
            headers=auth,
        )
        reason = created.json()
        path = f"/v1/lost-reasons/{reason['id']}"

        updated = await client.patch(
            path,
            json={"name": "Price too high", "description": None},
            headers={**auth, "If-Match": '"1"'},
        )
        listed = await client.get("/v1/lost-reasons", headers=auth)
        deleted = await client.delete(path, headers={**auth, "If-Match": '"2"'})

        assert created.status_code == 201, created.text
        assert reason["id"].startswith("lrsn_")
        assert reason["active"] is True
        assert updated.json()["name"] == "Price too high"
        assert updated.json()["description"] is None
        assert [item["id"] for item in listed.json()["data"]] == [reason["id"]]
        assert deleted.status_code == 204
        assert (await client.get(path, headers=auth)).status_code == 404
        assert await event_types(session, "lost_reason", reason["id"]) == [
            "lost_reason.created",
            "lost_reason.updated",
            "lost_reason.deleted",
        ]

    async def test_duplicate_name(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        await create_lost_reason(client, auth, "Timing")
        other = await create_lost_reason(client, auth, "Budget")

        created = await client.post(
            "/v1/lost-reasons", json={"name": "Timing"}, headers=auth
        )
        renamed = await client.patch(
            f"/v1/lost-reasons/{other['id']}", json={"name": "Timing"}, headers=auth
        )

        assert created.status_code == 409
        assert created.json()["code"] == "duplicate_name"
        assert renamed.status_code == 409

    async def test_delete_in_use(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        stages = await stage_ids(client, auth)
        reason = await create_lost_reason(client, auth)
        for _ in range(2):
            opportunity = await create_opportunity(client, auth)
            await client.post(
                f"/v1/opportunities/{opportunity['id']}/move",
                json={
                    "stage_id": stages["Closed lost"],
                    "lost_reason_id": reason["id"],
                },
                headers=auth,
            )

        response = await client.delete(f"/v1/lost-reasons/{reason['id']}", headers=auth)
        inactive = await client.patch(
            f"/v1/lost-reasons/{reason['id']}", json={"active": False}, headers=auth
        )
        active_only = await client.get(
            "/v1/lost-reasons", params={"active": "true"}, headers=auth
        )

        assert response.status_code == 409
        assert response.json()["code"] == "in_use"
        assert response.json()["opportunity_count"] == 2
        assert inactive.status_code == 200
        assert active_only.json()["data"] == []

    async def test_other_workspace_is_404(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        reason = await create_lost_reason(client, auth)
        _, other = await make_workspace_key(session)

        response = await client.get(f"/v1/lost-reasons/{reason['id']}", headers=other)

        assert response.status_code == 404
