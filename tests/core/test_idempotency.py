from __future__ import annotations

from collections.abc import Awaitable

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Event, Lead


class TestIdempotencyKey:
    async def test_replays_first_response(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        headers = {**auth, "Idempotency-Key": "create-ada"}
        body = {"email": "ada@example.com"}

        first = await client.post("/v1/leads", json=body, headers=headers)
        second = await client.post("/v1/leads", json=body, headers=headers)

        assert first.status_code == 201
        assert second.status_code == 201
        assert second.json() == first.json()
        assert second.headers["idempotent-replayed"] == "true"
        assert second.headers["etag"] == first.headers["etag"]
        assert "idempotent-replayed" not in first.headers
        assert await session.scalar(select(func.count()).select_from(Lead)) == 1
        assert await session.scalar(select(func.count()).select_from(Event)) == 1

    async def test_other_body_is_422(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        headers = {**auth, "Idempotency-Key": "k1"}
        await client.post("/v1/leads", json={"email": "a@example.com"}, headers=headers)

        response = await client.post(
            "/v1/leads", json={"email": "b@example.com"}, headers=headers
        )

        assert response.status_code == 422
        assert response.json()["code"] == "idempotency_key_reused"

    async def test_failure_not_stored(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        headers = {**auth, "Idempotency-Key": "k2"}
        invalid = await client.post(
            "/v1/leads", json={"email": "nope"}, headers=headers
        )

        valid = await client.post(
            "/v1/leads", json={"email": "ok@example.com"}, headers=headers
        )

        assert invalid.status_code == 422
        assert valid.status_code == 201
        assert "idempotent-replayed" not in valid.headers

    async def test_scoped_to_api_key(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        from tests.conftest import make_workspace_key

        _, other = await make_workspace_key(session)
        body = {"email": "a@example.com"}

        first = await client.post(
            "/v1/leads", json=body, headers={**auth, "Idempotency-Key": "same"}
        )
        second = await client.post(
            "/v1/leads", json=body, headers={**other, "Idempotency-Key": "same"}
        )

        assert first.status_code == 201
        assert second.status_code == 201
        assert second.json()["id"] != first.json()["id"]

    async def test_overlong_key(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        response = await client.post(
            "/v1/leads",
            json={"email": "a@example.com"},
            headers={**auth, "Idempotency-Key": "k" * 256},
        )

        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "header.Idempotency-Key"


def _post_raw(
    client: httpx.AsyncClient, auth: dict[str, str], key: str, content: bytes
) -> Awaitable[httpx.Response]:
    headers = {**auth, "Idempotency-Key": key, "Content-Type": "application/json"}
    return client.post("/v1/leads", content=content, headers=headers)


class TestIdempotencyCanonicalJson:
    async def test_reordered_keys_replay(
        self, client: httpx.AsyncClient, auth: dict[str, str], session: AsyncSession
    ) -> None:
        first = await _post_raw(
            client, auth, "order", b'{"email": "ada@example.com", "first_name": "Ada"}'
        )
        second = await _post_raw(
            client, auth, "order", b'{"first_name":"Ada","email":"ada@example.com"}'
        )

        assert first.status_code == 201, first.text
        assert second.status_code == 201, second.text
        assert second.headers["idempotent-replayed"] == "true"
        assert second.json()["id"] == first.json()["id"]
        assert await session.scalar(select(func.count()).select_from(Lead)) == 1

    async def test_whitespace_and_escapes_replay(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        first = await _post_raw(
            client,
            auth,
            "space",
            b'{"email":"zoe@example.com","first_name":"Zo\xc3\xab"}',
        )
        second = await _post_raw(
            client,
            auth,
            "space",
            b'{\n  "first_name" : "Zo\\u00eb",\n  "email" : "zoe@example.com"\n}\n',
        )

        assert first.status_code == 201, first.text
        assert second.status_code == 201, second.text
        assert second.headers["idempotent-replayed"] == "true"

    async def test_nested_reorder_replays(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        first = await _post_raw(
            client,
            auth,
            "nested",
            b'{"email": "n@example.com", "attributes": {"seats": 5, "plan": "pro"}}',
        )
        second = await _post_raw(
            client,
            auth,
            "nested",
            b'{"attributes": {"plan": "pro", "seats": 5}, "email": "n@example.com"}',
        )

        assert first.status_code == 201, first.text
        assert second.status_code == 201, second.text
        assert second.headers["idempotent-replayed"] == "true"

    async def test_other_number_literal_is_422(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        first = await _post_raw(
            client,
            auth,
            "seats",
            b'{"email": "s@example.com", "attributes": {"seats": 5}}',
        )
        second = await _post_raw(
            client,
            auth,
            "seats",
            b'{"email": "s@example.com", "attributes": {"seats": 5.0}}',
        )

        assert first.status_code == 201, first.text
        assert second.status_code == 422
        assert second.json()["code"] == "idempotency_key_reused"

    async def test_reordered_other_value_is_422(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        first = await _post_raw(
            client, auth, "value", b'{"email": "x@example.com", "first_name": "X"}'
        )
        second = await _post_raw(
            client, auth, "value", b'{"first_name": "X", "email": "y@example.com"}'
        )

        assert first.status_code == 201, first.text
        assert second.status_code == 422
        assert second.json()["code"] == "idempotency_key_reused"

    async def test_body_without_content_type_replays(
        self, client: httpx.AsyncClient, auth: dict[str, str]
    ) -> None:
        headers = {**auth, "Idempotency-Key": "bare"}
        first = await client.post(
            "/v1/leads",
            json={"email": "b@example.com", "first_name": "B"},
            headers=headers,
        )
        second = await client.post(
            "/v1/leads",
            content=b'{"first_name": "B", "email": "b@example.com"}',
            headers=headers,
        )

        assert first.status_code == 201, first.text
        assert second.status_code == 201, second.text
        assert second.headers["idempotent-replayed"] == "true"
