"""Provider events held until the payment they refer to has succeeded.

A refund or dispute event can arrive before the event that records its payment.
Its handler then returns the outcome ``held``. When the payment succeeds, the
handler that recorded it calls ``release_held`` in the same transaction: the held
events go back to ``received`` and are processed again after the commit.
"""

from __future__ import annotations

import structlog
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import defer_job
from app.models import ProviderEvent

log = structlog.get_logger(__name__)

# NOTE: an event held for a payment that never succeeds stays held; no job or
# reconciliation run reports it yet.
HELD = "held"


async def release_held(
    session: AsyncSession, provider: str, provider_payment_id: str
) -> int:
    """Queue again the held events of a provider that name this payment id."""
    # The inbox imports the provider modules, so its job names are imported here.
    from app.billing.providers.inbox import PROCESS_JOB, job_id

    released = list(
        await session.scalars(
            update(ProviderEvent)
            .where(
                ProviderEvent.status == HELD,
                ProviderEvent.provider == provider,
                ProviderEvent.payload["data"]["object"]["payment_intent"].astext
                == provider_payment_id,
            )
            .values(status="received", claimed_until=None, error=None)
            .returning(ProviderEvent.id)
        )
    )
    for event_id in released:
        defer_job(session, PROCESS_JOB, str(event_id), job_id=job_id(event_id))
    if released:
        log.info(
            "provider_event.released",
            provider=provider,
            provider_payment_id=provider_payment_id,
            count=len(released),
        )
    return len(released)
