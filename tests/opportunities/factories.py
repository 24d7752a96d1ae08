"""Typed helpers that create opportunities and read pipelines through the API."""

from __future__ import annotations

from typing import Any

import httpx

from tests.customers.factories import create_customer


async def default_pipeline(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> dict[str, Any]:
    response = await client.get("/v1/pipelines", headers=auth)
    assert response.status_code == 200, response.text
    defaults = [item for item in response.json()["data"] if item["is_default"]]
    assert len(defaults) == 1
    pipeline: dict[str, Any] = defaults[0]
    return pipeline


async def stage_ids(client: httpx.AsyncClient, auth: dict[str, str]) -> dict[str, str]:
    """Return the default pipeline's stage ids by stage name."""
    pipeline = await default_pipeline(client, auth)
    return {stage["name"]: stage["id"] for stage in pipeline["stages"]}


async def create_opportunity(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    customer_id: str | None = None,
    **fields: object,
) -> dict[str, Any]:
    if customer_id is None:
        customer_id = (await create_customer(client, auth))["id"]
    body = {"customer_id": customer_id, "name": "Difference engine", **fields}
    response = await client.post("/v1/opportunities", json=body, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def move(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    opportunity_id: str,
    stage_id: str,
    **fields: object,
) -> httpx.Response:
    return await client.post(
        f"/v1/opportunities/{opportunity_id}/move",
        json={"stage_id": stage_id, **fields},
        headers=auth,
    )


async def create_lost_reason(
    client: httpx.AsyncClient, auth: dict[str, str], name: str = "Budget cut"
) -> dict[str, Any]:
    response = await client.post("/v1/lost-reasons", json={"name": name}, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def stage_history(
    client: httpx.AsyncClient, auth: dict[str, str], opportunity_id: str
) -> list[dict[str, Any]]:
    response = await client.get(
        f"/v1/opportunities/{opportunity_id}/stage-history", headers=auth
    )
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data
