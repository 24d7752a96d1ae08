"""Typed helpers that create products, line items and proposals through the API."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.models import Event


async def create_product(
    client: httpx.AsyncClient, auth: dict[str, str], **fields: object
) -> dict[str, Any]:
    body: dict[str, object] = {
        "name": "Analytical engine",
        "prices": [{"currency": "USD", "unit_amount": 10000}],
        **fields,
    }
    response = await client.post("/v1/products", json=body, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def add_line_item(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    opportunity_id: str,
    **fields: object,
) -> dict[str, Any]:
    body: dict[str, object] = {"quantity": "1", **fields}
    if "product_id" not in body:
        body.setdefault("description", "Consulting")
        if "unit_amount_decimal" not in body:
            body.setdefault("unit_amount", 1000)
    response = await client.post(
        f"/v1/opportunities/{opportunity_id}/line-items", json=body, headers=auth
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
