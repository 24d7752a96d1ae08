from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.core.events import emit
from app.core.ids import new_uuid
from app.models import Event, UndispatchedEvent, WebhookDelivery
from workers import tasks


async def create_endpoint(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    url: str,
    *,
    event_types: list[str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    body = {"url": url, "event_types": event_types or ["*"], **fields}
    response = await client.post("/v1/webhook-endpoints", json=body, headers=auth)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def record_event(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    event_type: str = "lead.created",
    *,
    object_id: uuid.UUID | None = None,
    data: dict[str, Any] | None = None,
) -> Event:
    """Emit one event and commit it, as a feature service would."""
    object_type = event_type.split(".")[0]
    event = await emit(
        session,
        workspace_id=workspace_id,
        type=event_type,
        object_type=object_type,
        object_id=object_id or new_uuid(),
        data=data if data is not None else {"name": "Ada", "amount": 1999},
        actor="test",
    )
    await session.commit()
    return event


async def is_dispatched(session: AsyncSession, event_id: uuid.UUID) -> bool:
    """Return whether the event has left the dispatch queue, reading committed rows."""
    queued = await session.scalar(
        select(UndispatchedEvent.event_id)
        .where(UndispatchedEvent.event_id == event_id)
        .execution_options(populate_existing=True)
    )
    return queued is None


async def queue_again(session: AsyncSession, *event_ids: uuid.UUID) -> None:
    """Put dispatched events back in the dispatch queue, and commit."""
    await session.execute(
        insert(UndispatchedEvent), [{"event_id": event_id} for event_id in event_ids]
    )
    await session.commit()


async def dispatch(ctx: dict[str, Any], event: Event) -> int:
    return await tasks.dispatch_event(ctx, str(event.id))


async def drain(ctx: dict[str, Any]) -> int:
    """Run a delivery loop until nothing is due; return the attempts it recorded."""
    return await tasks.delivery_loop(ctx).run(until_idle=True)


async def deliveries_of(
    session: AsyncSession, event_id: uuid.UUID
) -> list[WebhookDelivery]:
    rows = await session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.event_id == event_id)
        .order_by(WebhookDelivery.id)
        .execution_options(populate_existing=True)
    )
    return list(rows.all())


async def make_due(session: AsyncSession, delivery_id: uuid.UUID) -> None:
    """Move a pending delivery's next attempt into the past."""
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .values(next_attempt_at=utcnow() - timedelta(seconds=1))
    )
    await session.commit()
