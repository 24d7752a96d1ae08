"""Operator commands on the provider event inbox: list events and retry failed ones.

The worker reports an event that ends ``failed`` or ``needs_review`` only in its log,
and many such events name no workspace. So these functions serve the command line,
not the tenant API.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import structlog
from arq.utils import timestamp_ms
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.providers.inbox import drain_job
from app.billing.repository import ProviderEventRepository
from app.core.errors import Conflict, NotFound
from app.core.jobs import JobQueue
from app.models import ProviderEvent

log = structlog.get_logger(__name__)

RETRYABLE = "failed"
# The reason each other status cannot be retried, with what to do instead.
RETRY_REJECTIONS = {
    "received": "it is already waiting for the worker, so there is nothing to do",
    "processed": "it was already applied, so there is nothing to do",
    "ignored": "it needed no change, so there is nothing to do",
    "needs_review": "it was applied, but something did not match. Applying it again "
    "could record the payment twice, so correct the invoice or payment by hand",
    "held": "it waits for the payment it refers to and is applied once that payment "
    "is recorded, so there is nothing to do",
}


async def list_events(
    session: AsyncSession,
    *,
    statuses: Sequence[str] = (),
    provider: str | None = None,
    workspace_id: uuid.UUID | None = None,
    limit: int,
) -> list[ProviderEvent]:
    """List inbox events newest first; each filter left empty matches every event."""
    return await ProviderEventRepository.from_session(session).list_newest(
        statuses=statuses, provider=provider, workspace_id=workspace_id, limit=limit
    )


async def retry_failed(
    session: AsyncSession, provider: str, event_id: str
) -> ProviderEvent:
    """Set a ``failed`` event back to ``received`` so that the worker applies it again.

    The row stays locked until the session commits, so a concurrent retry waits and
    then finds the event ``received``. The worker takes only ``received`` rows, so it
    never applies the event while it is still ``failed``. Raises ``NotFound`` for an
    unknown event and ``Conflict`` for any other status.
    """
    event = await ProviderEventRepository.from_session(session).get_by_event_id(
        provider, event_id, for_update=True
    )
    if event is None:
        raise NotFound(f"The {provider} event {event_id} was not found.")
    if event.status != RETRYABLE:
        reason = RETRY_REJECTIONS.get(
            event.status, "only a failed event can be retried"
        )
        raise Conflict(
            f"The {provider} event {event_id} is {event.status} and cannot be "
            f"retried: {reason}."
        )
    event.status = "received"
    event.attempts = 0
    event.error = None
    event.claimed_until = None
    event.processed_at = None
    await session.flush()
    log.info(
        "provider_event.retried",
        provider=event.provider,
        provider_event_id=str(event.id),
        event_id=event.event_id,
        event_type=event.type,
    )
    return event


async def notify_worker(queue: JobQueue) -> bool:
    """Enqueue the drain job, as storing an event does; call after the commit.

    Returns False when Redis failed. The sweep then applies the received event.
    """
    return await queue.enqueue(drain_job(timestamp_ms()))
