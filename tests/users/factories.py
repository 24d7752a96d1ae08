from __future__ import annotations

import itertools
from typing import Any

import httpx

_numbers = itertools.count(1)


async def create_user(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: object
) -> dict[str, Any]:
    number = next(_numbers)
    body = {"name": f"Rep {number}", "email": f"rep{number}@sales.example", **fields}
    response = await client.post("/v1/users", json=body, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def create_team(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    members: list[dict[str, Any]],
    name: str = "Inside sales",
) -> dict[str, Any]:
    response = await client.post(
        "/v1/teams", json={"name": name, "members": members}, headers=auth
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data
