"""Resolving promises to pay, by the sweep or when their invoice stops collecting.

A promise pauses dunning until the sweep in ``app.billing.debt`` finds it kept or
broken. An invoice that is paid, voided or written off has nothing left to
collect, so its pending promise is resolved at once, in the same transaction. It
is ``kept`` when the invoice is paid and ``canceled`` when it is voided or written
off, each with its own event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.dunning_schemas import PromiseToPay as PromiseToPaySchema
from app.core.clock import utcnow
from app.core.events import emit
from app.models import Invoice, PromiseToPay

log = structlog.get_logger(__name__)

PromiseStatus = Literal["kept", "broken", "canceled"]


def promise_data(promise: PromiseToPay) -> dict[str, Any]:
    """Serialize a promise to pay as the API shows it, for events."""
    return PromiseToPaySchema.model_validate(promise).model_dump(mode="json")


async def resolve_promise(
    session: AsyncSession,
    promise: PromiseToPay,
    status: PromiseStatus,
    *,
    reason: str,
    now: datetime | None = None,
    actor: str | None = None,
) -> None:
    """Move a locked pending promise to ``status`` and emit ``promise_to_pay.<status>``.

    ``reason`` (``sweep``, ``paid``, ``voided`` or ``written_off``) goes to the log.
    """
    promise.status = status
    promise.resolved_at = now or utcnow()
    await session.flush()
    await session.refresh(promise)

    await emit(
        session,
        workspace_id=promise.workspace_id,
        type=f"promise_to_pay.{status}",
        object_type="promise_to_pay",
        object_id=promise.id,
        data=promise_data(promise),
        actor=actor,
    )
    log.info(
        "promise_to_pay.resolved",
        status=status,
        reason=reason,
        promise_to_pay_id=str(promise.id),
        invoice_id=str(promise.invoice_id),
    )


async def close_pending_promise(
    session: AsyncSession,
    invoice: Invoice,
    status: Literal["kept", "canceled"],
    *,
    reason: str,
    actor: str | None,
) -> PromiseToPay | None:
    """Resolve the pending promise of a locked invoice, if it has one."""
    promise = await session.scalar(
        select(PromiseToPay)
        .where(PromiseToPay.invoice_id == invoice.id, PromiseToPay.status == "pending")
        .with_for_update()
    )
    if promise is None:
        return None
    await resolve_promise(session, promise, status, reason=reason, actor=actor)
    return promise
