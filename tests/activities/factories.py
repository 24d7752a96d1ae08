from __future__ import annotations

from typing import Any

import httpx


async def create_activity(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: object
) -> dict[str, Any]:
    response = await client.post("/v1/activities", json=fields, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data
