"""Helpers of the overdue, dunning and write-off tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import date
from typing import Any

import httpx
from sqlalchemy import literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.billing.overdue import end_of_day_sql, overdue_at
from app.core import ids
from app.models import Event, Invoice

UnitOfWork = Callable[[], AbstractAsyncContextManager[AsyncSession]]


def unit_of_work(sessionmaker: async_sessionmaker[AsyncSession]) -> UnitOfWork:
    """Build a worker-style unit of work: one session, committed at the end."""

    @asynccontextmanager
    async def open_session() -> AsyncIterator[AsyncSession]:
        async with sessionmaker() as session:
            yield session
            await session.commit()

    return open_session


async def set_due_date(
    session: AsyncSession, invoice_id: str, due_date: date, timezone: str | None = None
) -> None:
    """Move an open invoice's due date, as if it had been finalized on other terms.

    Its stored ``overdue_at`` moves with it; the zone is the one given, else the
    invoice's own.
    """
    values: dict[str, Any] = {"due_date": due_date}
    if timezone is not None:
        values["timezone"] = timezone
        values["overdue_at"] = overdue_at(due_date, timezone)
    else:
        values["overdue_at"] = end_of_day_sql(literal(due_date))
    await session.execute(
        update(Invoice)
        .where(Invoice.id == ids.decode("invoice", invoice_id))
        .values(**values)
    )
    await session.commit()


async def event_types(
    session: AsyncSession, object_id: str | uuid.UUID, kind: str | None = None
) -> list[str]:
    """List the types of the events of one object, oldest first."""
    key = (
        ids.decode(kind, object_id)
        if kind and isinstance(object_id, str)
        else object_id
    )
    rows = await session.scalars(
        select(Event.type).where(Event.object_id == key).order_by(Event.sequence)
    )
    return list(rows.all())


async def record_payment(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    invoice: dict[str, Any],
    amount: int,
    method: str = "bank_transfer",
) -> dict[str, Any]:
    """Record a manual payment allocated to ``invoice`` and return it."""
    response = await client.post(
        "/v1/payments",
        json={
            "customer_id": invoice["customer_id"],
            "amount": amount,
            "currency": invoice["currency"],
            "method": method,
            "invoice_id": invoice["id"],
        },
        headers=auth,
    )
    assert response.status_code == 201, response.text
    payment: dict[str, Any] = response.json()
    return payment
