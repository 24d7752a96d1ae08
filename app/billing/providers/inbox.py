"""The inbox of payment provider events: store once, respond fast, process in the worker.

A verified event is inserted with ``ON CONFLICT DO NOTHING`` on ``(provider,
event_id)``, so a retried delivery is stored once. Processing claims the row with a
lease (``claimed_until``) and ends it in one of these statuses:

- ``processed``: the event was applied;
- ``needs_review``: it was applied, but something did not match (amount, currency or
  invoice status) and ``error`` describes the mismatch;
- ``ignored``: no change was needed (an unhandled type, a replay, a late older event);
- ``failed``: it cannot be applied (no such invoice, malformed object); ``error`` says
  why, and it is not retried.
- ``held``: it refers to a payment that has not succeeded yet (a refund or dispute
  that overtook its payment); recording the payment queues it again, see ``held.py``.

An unexpected exception leaves the row ``received`` for the sweep to retry after the
lease, until ``MAX_ATTEMPTS`` attempts have failed.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.providers import stripe as stripe_provider
from app.billing.providers.base import Outcome, VerifiedEvent
from app.billing.repository import ProviderEventRepository
from app.core.clock import utcnow
from app.core.db import defer_job
from app.core.ids import new_uuid
from app.models import ProviderEvent

log = structlog.get_logger(__name__)

PROCESS_JOB = "process_provider_event"
MAX_ATTEMPTS = 5
MAX_ERROR_LENGTH = 2000
# The sweep leaves fresh rows to the job enqueued after their commit.
SWEEP_GRACE = timedelta(seconds=10)
SWEEP_BATCH = 100

Handler = Callable[[AsyncSession, ProviderEvent], Awaitable[Outcome]]
HANDLERS: dict[str, Handler] = {stripe_provider.PROVIDER: stripe_provider.handle}


def job_id(provider_event_id: uuid.UUID) -> str:
    return f"{PROCESS_JOB}:{provider_event_id}"


class ProviderEventService:
    async def receive(
        self,
        session: AsyncSession,
        provider: str,
        event: VerifiedEvent,
    ) -> tuple[uuid.UUID, bool]:
        """Store a verified event once; return its row id and whether it was stored before."""
        repository = ProviderEventRepository.from_session(session)
        now = utcnow()
        inserted = await repository.insert(
            {
                "id": new_uuid(),
                "provider": provider,
                "event_id": event.event_id,
                "type": event.type,
                "payload": event.payload,
                "provider_created_at": event.created,
                "status": "received",
                "attempts": 0,
                "received_at": now,
            }
        )
        if inserted is not None:
            defer_job(session, PROCESS_JOB, str(inserted), job_id=job_id(inserted))
            log.info(
                "provider_event.received",
                provider=provider,
                provider_event_id=str(inserted),
                event_id=event.event_id,
                event_type=event.type,
            )
            return inserted, False

        existing = await repository.get_by_event_id(provider, event.event_id)
        assert existing is not None
        if existing.status == "received":
            # The first job may have been lost with Redis; the job id keeps this cheap.
            defer_job(
                session, PROCESS_JOB, str(existing.id), job_id=job_id(existing.id)
            )
        log.info(
            "provider_event.duplicate",
            provider=provider,
            provider_event_id=str(existing.id),
            event_id=event.event_id,
            status=existing.status,
        )
        return existing.id, True

    async def claim(
        self, session: AsyncSession, provider_event_id: uuid.UUID, lease: timedelta
    ) -> bool:
        """Lease a received event for one worker; False if done or leased elsewhere."""
        now = utcnow()
        event = await ProviderEventRepository.from_session(session).claim(
            provider_event_id, now=now, lease_until=now + lease
        )
        return event is not None

    async def claim_due(
        self, session: AsyncSession, lease: timedelta, *, now: datetime | None = None
    ) -> list[uuid.UUID]:
        """Lease received events that no job has finished, oldest first."""
        now = now or utcnow()
        return await ProviderEventRepository.from_session(session).claim_due(
            now=now,
            received_before=now - SWEEP_GRACE,
            lease_until=now + lease,
            limit=SWEEP_BATCH,
        )

    async def process(
        self, session: AsyncSession, provider_event_id: uuid.UUID
    ) -> str | None:
        """Apply a claimed event and record how it ended; None if it was already done."""
        repository = ProviderEventRepository.from_session(session)
        event = await repository.get(provider_event_id, for_update=True)
        if event is None or event.status != "received":
            return None
        handler = HANDLERS.get(event.provider)
        if handler is None:
            outcome = Outcome("failed", f"no handler for provider {event.provider}")
        else:
            outcome = await handler(session, event)

        event.status = outcome.status
        event.error = _truncate(outcome.error)
        event.processed_at = utcnow()
        event.claimed_until = None
        if outcome.workspace_id is not None:
            event.workspace_id = outcome.workspace_id
        await session.flush()
        log_method = (
            log.warning if outcome.status in ("failed", "needs_review") else log.info
        )
        log_method(
            "provider_event.processed",
            provider=event.provider,
            provider_event_id=str(event.id),
            event_id=event.event_id,
            event_type=event.type,
            status=outcome.status,
            error=outcome.error,
            attempt=event.attempts,
        )
        return outcome.status

    async def record_failure(
        self, session: AsyncSession, provider_event_id: uuid.UUID, error: str
    ) -> str | None:
        """Note an unexpected error; after ``MAX_ATTEMPTS`` attempts, stop retrying."""
        event = await ProviderEventRepository.from_session(session).get(
            provider_event_id, for_update=True
        )
        if event is None or event.status != "received":
            return None
        event.error = _truncate(error)
        if event.attempts >= MAX_ATTEMPTS:
            event.status = "failed"
            event.processed_at = utcnow()
            event.claimed_until = None
        await session.flush()
        log.error(
            "provider_event.attempt_failed",
            provider=event.provider,
            provider_event_id=str(event.id),
            event_id=event.event_id,
            attempt=event.attempts,
            gave_up=event.status == "failed",
            error=error,
        )
        return event.status


def _truncate(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_ERROR_LENGTH:
        return text
    return text[: MAX_ERROR_LENGTH - 1] + "…"


provider_event_service = ProviderEventService()
