"""Typed helpers that create customers and contacts through the API."""

from __future__ import annotations

from typing import Any

import httpx


async def create_customer(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: object
) -> dict[str, Any]:
    body = {"name": "Analytical Engines Ltd", **fields}
    response = await client.post("/v1/customers", json=body, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def create_contact(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    customer_id: str,
    **fields: object,
) -> dict[str, Any]:
    body = {"email": "ada@analytical.example", "first_name": "Ada", **fields}
    response = await client.post(
        f"/v1/customers/{customer_id}/contacts", json=body, headers=auth
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data
