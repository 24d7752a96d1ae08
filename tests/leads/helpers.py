"""Request helpers shared by the custom field, scoring and search tests."""

from __future__ import annotations

from typing import Any

import httpx


async def post_ok(
    client: httpx.AsyncClient, path: str, auth: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post(path, json=body, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def create_lead(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: Any
) -> dict[str, Any]:
    return await post_ok(
        client, "/v1/leads", auth, {"email": "ada@example.com", **fields}
    )


async def define_field(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: Any
) -> dict[str, Any]:
    return await post_ok(client, "/v1/custom-fields", auth, fields)


async def create_rule(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: Any
) -> dict[str, Any]:
    return await post_ok(client, "/v1/scoring-rules", auth, {"name": "rule", **fields})


async def get_lead(
    client: httpx.AsyncClient, auth: dict[str, str], lead_id: str
) -> dict[str, Any]:
    response = await client.get(f"/v1/leads/{lead_id}", headers=auth)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data
