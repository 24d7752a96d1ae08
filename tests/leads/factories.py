"""Typed factories of campaigns, partners, capture forms and publishable keys."""

from __future__ import annotations

from typing import Any

import httpx


async def create_campaign(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: Any
) -> dict[str, Any]:
    body = {"name": "Spring launch", **fields}
    response = await client.post("/v1/campaigns", json=body, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def create_partner(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: Any
) -> dict[str, Any]:
    body = {"name": "Reseller", "referral_code": "RESELL-1", **fields}
    response = await client.post("/v1/partners", json=body, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def create_form(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: Any
) -> dict[str, Any]:
    body = {
        "name": "Newsletter",
        "fields": ["email", "first_name", "company"],
        "allowed_origins": ["https://www.example.com"],
        **fields,
    }
    response = await client.post("/v1/forms", json=body, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def create_publishable_key(
    client: httpx.AsyncClient, auth: dict[str, str], form_id: str
) -> str:
    response = await client.post(
        f"/v1/forms/{form_id}/publishable-keys", json={"name": "site"}, headers=auth
    )
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key
