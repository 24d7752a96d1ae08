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

Deliveries do not get a job each. A process that stores events enqueues one drain job
per window of ``DRAIN_WINDOW_MS``, which starts when its window ends, so after every
event stored in the window has committed. The worker's drain then leases and applies
batches until no received event is left (``workers.tasks.drain_provider_events``).
Redis carries only that hint: the sweep applies what a lost job left behind.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from arq.utils import timestamp_ms
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.providers import stripe as stripe_provider
from app.billing.providers.base import Outcome, VerifiedEvent
from app.billing.providers.held import HELD
from app.billing.repository import ProviderEventRepository
from app.core.clock import utcnow
from app.core.db import Database, PendingJob
from app.core.ids import new_uuid
from app.core.jobs import JobQueue
from app.models import ProviderEvent

log = structlog.get_logger(__name__)

PROCESS_JOB = "process_provider_event"
DRAIN_JOB = "drain_provider_events"
# The events a process stores within one window share one drain job.
DRAIN_WINDOW_MS = 50
MAX_ATTEMPTS = 5
# Every status of an inbox row, as the module docstring describes them.
STATUSES = ("received", "processed", "needs_review", "ignored", "failed", HELD)
MAX_ERROR_LENGTH = 2000
# The sweep leaves fresh rows to the job enqueued after their commit.
SWEEP_GRACE = timedelta(seconds=10)
SWEEP_BATCH = 100
# Events one claim leases, applied in one transaction (or one by one after an error).
CLAIM_BATCH = 50

Handler = Callable[[AsyncSession, ProviderEvent], Awaitable[Outcome]]
HANDLERS: dict[str, Handler] = {stripe_provider.PROVIDER: stripe_provider.handle}


def job_id(provider_event_id: uuid.UUID) -> str:
    return f"{PROCESS_JOB}:{provider_event_id}"


# One statement finds the stored event or stores it, so a delivery costs one round
# trip and commits on its own. A duplicate is found by a plain read first, because an
# INSERT … ON CONFLICT that meets the row would wait for any transaction that updated
# it, such as the batch applying the event. Two deliveries of a new event may both
# miss it. The later INSERT then skips the row but cannot see it in its snapshot, so
# no row comes back, and ``_FIND`` reads it with a new snapshot.
_STORE = """
WITH existing AS (
    SELECT id, status FROM provider_events WHERE provider = $2 AND event_id = $3
),
inserted AS (
    INSERT INTO provider_events (
        id, provider, event_id, type, payload, provider_created_at, status, attempts,
        received_at
    )
    SELECT $1, $2, $3, $4, $5::jsonb, $6, 'received', 0, $7
    WHERE NOT EXISTS (SELECT FROM existing)
    ON CONFLICT (provider, event_id) DO NOTHING
    RETURNING id, status
)
SELECT id, status, true AS inserted FROM inserted
UNION ALL
SELECT id, status, false FROM existing
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


def drain_job(now_ms: int) -> PendingJob:
    """Build the drain job of the window that contains ``now_ms``, due when it ends.

    Its id names the window, so every enqueue within the window, from any process,
    adds the same job once.
    """
    window_end = (now_ms // DRAIN_WINDOW_MS + 1) * DRAIN_WINDOW_MS
    return PendingJob(
        function=DRAIN_JOB,
        args=(),
        job_id=f"{DRAIN_JOB}:{window_end}",
        kwargs={"_defer_until": datetime.fromtimestamp(window_end / 1000, UTC)},
    )


class DrainSignal:
    """Enqueue the drain job of the current window once per process.

    Call ``stored`` after an event has committed: the job starts after the window
    ends, so after the commit, and later calls in the same window send nothing to
    Redis. A failed enqueue is logged by the queue and left to the sweep.
    """

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self._last_job_id: str | None = None

    async def stored(self, now_ms: int | None = None) -> None:
        job = drain_job(timestamp_ms() if now_ms is None else now_ms)
        if job.job_id == self._last_job_id:
            return
        self._last_job_id = job.job_id
        await self.queue.enqueue(job)


class ProviderEventService:
    async def receive(
        self, database: Database, provider: str, event: VerifiedEvent
    ) -> StoredEvent:
        """Store a verified event once, committed before this returns.

        The statement runs on a connection of the autocommit pool, in a transaction
        of its own: one round trip, with no BEGIN or COMMIT, and the caller may
        acknowledge the delivery as soon as it returns.
        """
        async with database.autocommit() as connection:
            # Both drivers' codecs for jsonb take JSON text.
            row = await connection.fetchrow(
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
                row = await connection.fetchrow(_FIND, provider, event.event_id)
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

    async def claim_next(
        self, session: AsyncSession, lease: timedelta
    ) -> list[uuid.UUID]:
        """Lease up to ``CLAIM_BATCH`` received events that no one holds, oldest first.

        Unlike the sweep, it takes fresh events too: the drain runs after they are
        stored. Rows another worker has locked or leased are skipped.
        """
        now = utcnow()
        return await ProviderEventRepository.from_session(session).claim_next(
            now=now, lease_until=now + lease, limit=CLAIM_BATCH
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
        The outcomes are written to the inbox rows together at the end, in one
        flush, except ``held``: a later payment in the batch must find that row held
        to release it.
        """
        locked = await ProviderEventRepository.from_session(session).lock_many(
            provider_event_ids
        )
        outcomes: dict[uuid.UUID, str | None] = {}
        finished: list[tuple[ProviderEvent, Outcome]] = []
        for event_id in provider_event_ids:
            event = locked.get(event_id)
            outcome = await self._outcome(session, event)
            outcomes[event_id] = outcome.status if outcome is not None else None
            if event is None or outcome is None:
                continue
            if outcome.status == HELD:
                self._record(event, outcome)
                await session.flush()
            else:
                finished.append((event, outcome))
        for event, outcome in finished:
            self._record(event, outcome)
        await session.flush()
        return outcomes

    async def _apply(
        self, session: AsyncSession, event: ProviderEvent | None
    ) -> str | None:
        outcome = await self._outcome(session, event)
        if event is None or outcome is None:
            return None
        self._record(event, outcome)
        await session.flush()
        return outcome.status

    async def _outcome(
        self, session: AsyncSession, event: ProviderEvent | None
    ) -> Outcome | None:
        """Run the provider's handler on a received event; None if it is done."""
        if event is None or event.status != "received":
            return None
        handler = HANDLERS.get(event.provider)
        if handler is None:
            return Outcome("failed", f"no handler for provider {event.provider}")
        return await handler(session, event)

    @staticmethod
    def _record(event: ProviderEvent, outcome: Outcome) -> None:
        """Write an outcome to the event's row in the session, and log it."""
        event.status = outcome.status
        event.error = _truncate(outcome.error)
        event.processed_at = utcnow()
        event.claimed_until = None
        if outcome.workspace_id is not None:
            event.workspace_id = outcome.workspace_id
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
