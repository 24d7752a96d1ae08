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

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.providers import stripe as stripe_provider
from app.billing.providers.base import Outcome, VerifiedEvent
from app.billing.repository import ProviderEventRepository
from app.core.clock import utcnow
from app.core.db import Database, PendingJob, driver_connection
from app.core.ids import new_uuid
from app.models import ProviderEvent

log = structlog.get_logger(__name__)

PROCESS_JOB = "process_provider_event"
MAX_ATTEMPTS = 5
MAX_ERROR_LENGTH = 2000
# The sweep leaves fresh rows to the job enqueued after their commit.
SWEEP_GRACE = timedelta(seconds=10)
SWEEP_BATCH = 100
# Events one job leases and applies in turn, each in a transaction of its own. Each
# event gets its own job after it is stored, but while a batch is applied, the jobs of
# the events in it find them leased and end at once.
CLAIM_BATCH = 50

Handler = Callable[[AsyncSession, ProviderEvent], Awaitable[Outcome]]
HANDLERS: dict[str, Handler] = {stripe_provider.PROVIDER: stripe_provider.handle}


def job_id(provider_event_id: uuid.UUID) -> str:
    return f"{PROCESS_JOB}:{provider_event_id}"


# One statement stores the event or finds the stored one, so a delivery costs one round
# trip and commits on its own. A concurrent delivery of the same event may commit after
# this statement took its snapshot. The INSERT then skips the row, but the SELECT
# cannot see it, so no row comes back, and ``_FIND`` reads it with a new snapshot.
_STORE = """
WITH inserted AS (
    INSERT INTO provider_events (
        id, provider, event_id, type, payload, provider_created_at, status, attempts,
        received_at
    )
    VALUES ($1, $2, $3, $4, $5, $6, 'received', 0, $7)
    ON CONFLICT (provider, event_id) DO NOTHING
    RETURNING id, status
)
SELECT id, status, true AS inserted FROM inserted
UNION ALL
SELECT id, status, false FROM provider_events
WHERE provider = $2 AND event_id = $3 AND NOT EXISTS (SELECT FROM inserted)
"""
_FIND = "SELECT id, status FROM provider_events WHERE provider = $1 AND event_id = $2"


@dataclass(frozen=True)
class StoredEvent:
    """The inbox row of a delivered event, and whether an earlier delivery stored it."""

    id: uuid.UUID
    status: str
    duplicate: bool


def process_job(provider_event_id: uuid.UUID) -> PendingJob:
    """Build the job that processes a stored event, with its deterministic id."""
    return PendingJob(
        function=PROCESS_JOB,
        args=(str(provider_event_id),),
        job_id=job_id(provider_event_id),
    )


class ProviderEventService:
    async def receive(
        self, database: Database, provider: str, event: VerifiedEvent
    ) -> StoredEvent:
        """Store a verified event once, committed before this returns.

        The statement goes to the driver connection of a fresh session, where it runs
        in a transaction of its own: one round trip, with no BEGIN or COMMIT, and the
        caller may acknowledge the delivery as soon as it returns.
        """
        async with database.sessionmaker() as session:
            driver = await driver_connection(session)
            # SQLAlchemy's asyncpg codec for jsonb takes JSON text.
            row = await driver.fetchrow(
                _STORE,
                new_uuid(),
                provider,
                event.event_id,
                event.type,
                json.dumps(event.payload),
                event.created,
                utcnow(),
            )
            if row is None:
                row = await driver.fetchrow(_FIND, provider, event.event_id)
            # No transaction was begun on the connection, so this sends nothing unless
            # the session joined an outer transaction, as in the tests.
            await session.commit()
        assert row is not None
        stored = StoredEvent(
            id=row["id"], status=row["status"], duplicate=not row.get("inserted")
        )
        log.info(
            "provider_event.duplicate"
            if stored.duplicate
            else "provider_event.received",
            provider=provider,
            provider_event_id=str(stored.id),
            event_id=event.event_id,
            event_type=event.type,
            status=stored.status,
        )
        return stored

    async def claim_batch(
        self, session: AsyncSession, provider_event_id: uuid.UUID, lease: timedelta
    ) -> list[uuid.UUID]:
        """Lease a received event and up to ``CLAIM_BATCH - 1`` more for one worker.

        The named event comes first. The list is empty when that event is done or
        leased elsewhere: its batch is then in another worker's hands.
        """
        now = utcnow()
        return await ProviderEventRepository.from_session(session).claim_batch(
            provider_event_id, now=now, lease_until=now + lease, limit=CLAIM_BATCH
        )

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
        return await self._apply(session, event)

    async def process_batch(
        self, session: AsyncSession, provider_event_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, str | None]:
        """Apply claimed events in turn, in one transaction, as ``process`` does.

        One statement locks them all first, in id order, instead of one per event.
        """
        locked = await ProviderEventRepository.from_session(session).lock_many(
            provider_event_ids
        )
        return {
            event_id: await self._apply(session, locked.get(event_id))
            for event_id in provider_event_ids
        }

    async def _apply(
        self, session: AsyncSession, event: ProviderEvent | None
    ) -> str | None:
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
