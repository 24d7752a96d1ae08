"""POST /v1/leads/batch: per-item results, all-or-none, limits and idempotency."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.models import Event, Lead
from tests.conftest import make_workspace_key


async def batch(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    items: list[Any],
    **fields: Any,
) -> httpx.Response:
    return await client.post(
        "/v1/leads/batch", json={"items": items, **fields}, headers=auth
    )


async def count_leads(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(Lead)) or 0


class TestBatchCreate:
    async def test_all_created(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        items = [
            {"email": f"lead{i}@acme.com", "first_name": f"L{i}"} for i in range(3)
        ]

        response = await batch(client, auth, items)

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["created"] == 3
        assert [item["index"] for item in body["items"]] == [0, 1, 2]
        assert all(item["status"] == "created" for item in body["items"])
        assert body["items"][1]["lead"]["email_normalized"] == "lead1@acme.com"
        assert body["items"][1]["error"] is None
        types = (await session.scalars(select(Event.type))).all()
        assert types == ["lead.created"] * 3

    async def test_mixed_results(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        existing = await client.post(
            "/v1/leads", json={"email": "old@acme.com"}, headers=auth
        )
        items = [
            {"email": "new@acme.com"},
            {"email": "not-an-email"},
            {"email": "OLD@acme.com"},
            {"email": "new@ACME.com"},
            {"email": "p@acme.com", "phone": "030 1234"},
        ]

        response = await batch(client, auth, items)

        assert response.status_code == 200, response.text
        body = response.json()
        statuses = [item["status"] for item in body["items"]]
        assert statuses == [
            "created",
            "invalid",
            "duplicate",
            "duplicate",
            "invalid",
        ]
        assert (body["created"], body["duplicates"], body["invalid"]) == (1, 2, 2)
        errors = [item["error"] for item in body["items"]]
        assert errors[1]["errors"][0]["field"] == "email"
        assert errors[2]["code"] == "duplicate_lead"
        assert errors[2]["candidates"][0]["lead_id"] == existing.json()["id"]
        assert errors[2]["candidates"][0]["matched_keys"] == ["email"]
        assert errors[3]["duplicate_of_index"] == 0
        assert errors[4]["errors"][0]["code"] == "phone_region_required"
        assert all(item["lead"] is None for item in body["items"][1:])
        assert await count_leads(session) == 2

    async def test_merge_item_invalid(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await batch(
            client, auth, [{"email": "a@acme.com", "on_duplicate": "merge"}]
        )

        item = response.json()["items"][0]
        assert item["status"] == "invalid"
        assert item["error"]["errors"][0]["field"] == "on_duplicate"

    async def test_thousand_items_one_lookup(
        self,
        client: httpx.AsyncClient,
        auth: dict[str, str],
        session: AsyncSession,
        connection: AsyncConnection,
    ) -> None:
        items = [{"email": f"bulk{i}@acme.com"} for i in range(1000)]
        statements: list[str] = []

        def record(*args: Any) -> None:
            statements.append(args[2])

        event.listen(connection.sync_connection, "before_cursor_execute", record)
        try:
            response = await batch(client, auth, items)
        finally:
            event.remove(connection.sync_connection, "before_cursor_execute", record)

        assert response.status_code == 200
        assert response.json()["created"] == 1000
        assert await count_leads(session) == 1000
        lookups = [
            sql for sql in statements if sql.startswith("SELECT") and "leads" in sql
        ]
        assert len(lookups) == 1


class TestBatchAllOrNone:
    async def test_success(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        items = [{"email": "a@acme.com"}, {"email": "b@acme.com"}]

        response = await batch(client, auth, items, all_or_none=True)

        assert response.status_code == 200
        assert response.json()["created"] == 2
        assert await count_leads(session) == 2

    async def test_invalid_rolls_back_all(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        items = [{"email": "a@acme.com"}, {"email": "bad"}, {"email": "a@acme.com"}]

        response = await batch(client, auth, items, all_or_none=True)

        assert response.status_code == 422
        problem = response.json()
        assert problem["code"] == "lead_batch_invalid"
        assert [item["status"] for item in problem["items"]] == [
            "not_created",
            "invalid",
            "duplicate",
        ]
        assert problem["items"][0]["lead"] is None
        assert await count_leads(session) == 0
        assert await session.scalar(select(func.count()).select_from(Event)) == 0

    async def test_duplicate_409(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        await client.post("/v1/leads", json={"email": "old@acme.com"}, headers=auth)
        items = [{"email": "new@acme.com"}, {"email": "old@acme.com"}]

        response = await batch(client, auth, items, all_or_none=True)

        assert response.status_code == 409
        problem = response.json()
        assert problem["code"] == "lead_batch_duplicate"
        assert problem["items"][1]["error"]["code"] == "duplicate_lead"
        assert await count_leads(session) == 1


class TestStoredRowChecks:
    async def test_unknown_campaign_fails_its_item(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        unknown = "cmp_01m914b0f6ed4rv8xfcv9rxq4b"
        items = [
            {"email": "a@acme.com"},
            {"email": "b@acme.com", "attribution": {"campaign_id": unknown}},
        ]

        response = await batch(client, auth, items)

        assert response.status_code == 200, response.text
        body = response.json()
        assert [item["status"] for item in body["items"]] == ["created", "invalid"]
        assert body["items"][1]["error"]["errors"][0]["field"] == (
            "attribution.campaign_id"
        )
        assert await count_leads(session) == 1

    async def test_unknown_campaign_all_or_none(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        unknown = "cmp_01m914b0f6ed4rv8xfcv9rxq4b"
        items = [
            {"email": "a@acme.com"},
            {"email": "b@acme.com", "attribution": {"campaign_id": unknown}},
        ]

        response = await batch(client, auth, items, all_or_none=True)

        assert response.status_code == 422
        statuses = [item["status"] for item in response.json()["items"]]
        assert statuses == ["not_created", "invalid"]
        assert await count_leads(session) == 0


class TestBatchLimits:
    async def test_too_many_items(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        items = [{"email": f"x{i}@a.io"} for i in range(1001)]

        response = await batch(client, auth, items)

        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["field"] == "items"
        assert "1000" in error["message"]

    async def test_item_not_object(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        response = await batch(client, auth, [{"email": "a@acme.com"}, "lead"])

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "items.1"
        assert await count_leads(session) == 0

    async def test_empty(self, client: httpx.AsyncClient, auth: dict[str, str]) -> None:
        response = await batch(client, auth, [])

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "items"

    async def test_missing_items(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post("/v1/leads/batch", json={}, headers=auth)

        assert response.status_code == 422

    async def test_needs_write_scope(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        _, reader = await make_workspace_key(session, scopes=("leads:read",))

        response = await batch(client, reader, [{"email": "a@acme.com"}])

        assert response.status_code == 403


class TestBatchPath:
    async def test_get_not_allowed(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get("/v1/leads/batch", headers=auth)

        assert response.status_code == 405
        assert response.headers["allow"] == "POST"

    async def test_lead_ids_still_route(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.get("/v1/leads/batchy", headers=auth)

        assert response.status_code == 404
        assert response.json()["code"] == "lead_not_found"


class TestBatchIdempotency:
    async def test_replay(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        headers = {**auth, "Idempotency-Key": "batch-1"}
        body = {"items": [{"email": "a@acme.com"}, {"email": "b@acme.com"}]}

        first = await client.post("/v1/leads/batch", json=body, headers=headers)
        second = await client.post("/v1/leads/batch", json=body, headers=headers)

        assert first.status_code == 200
        assert second.status_code == 200
        assert second.headers["idempotent-replayed"] == "true"
        assert second.json() == first.json()
        assert await count_leads(session) == 2
