"""Recovering an endpoint's failed deliveries: each gets one more attempt.

``POST /v1/webhook-endpoints/{id}/recover`` stores a recovery row and queues a
``recover_webhook_deliveries`` job. The job makes the failed deliveries pending again
in batches, one transaction each, and saves how far it got with every batch. With
``include_missing`` it then creates a delivery of each event of the window that the
endpoint subscribes to and has none of, such as the events emitted while it was
disabled. A job lost with Redis, or killed midway, is queued again by the webhook
sweep, and the next run resumes after the last batch committed.

The same query of missing deliveries serves a new endpoint's catch-up: a
``catch_up_webhook_endpoint`` job, queued by the endpoint's creation, gives it a
delivery of each event that the dispatch took before the endpoint was committed. A
PATCH of ``enabled`` or ``event_types`` before the job ran catches the endpoint up
itself, because the job, run after the change, would read the changed subscription.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.db import defer_job
from app.core.errors import FieldError, InvalidInput
from app.models import WebhookEndpoint, WebhookRecovery
from app.webhooks import catalog
from app.webhooks.errors import WebhookEndpointDisabled, WebhookRecoveryNotFound
from app.webhooks.repository import (
    EventRepository,
    WebhookDeliveryRepository,
    WebhookEndpointRepository,
    WebhookRecoveryRepository,
)
from app.webhooks.service import (
    DELIVER_JOB,
    deliver_job_id,
    webhook_endpoint_service,
)

log = structlog.get_logger(__name__)

RECOVER_JOB = "recover_webhook_deliveries"
RECOVERY_BATCH = 500


def recover_job_id(recovery_id: uuid.UUID) -> str:
    return f"recover:{recovery_id}"


@dataclass(frozen=True)
class MissingBatch:
    """The outcome of one batch of missing deliveries: how many it created, the last
    event it looked at, and whether no event is left."""

    created: int
    last_event_id: uuid.UUID | None
    finished: bool


@dataclass(frozen=True)
class RecoveryBatch:
    """The outcome of one batch: deliveries queued again, and whether the recovery is done."""

    requeued: int
    finished: bool
    created: int = 0


class WebhookRecoveryService:
    async def create(
        self,
        session: AsyncSession,
        principal: Principal,
        endpoint_id: uuid.UUID,
        since: datetime,
        *,
        include_missing: bool = False,
    ) -> WebhookRecovery:
        """Store a recovery of the endpoint's failed deliveries, and with
        ``include_missing`` of the deliveries it never had, and queue its job."""
        # The lock makes a concurrent delete wait until the recovery is inserted. A
        # delete that committed first makes the lookup raise WebhookEndpointNotFound.
        endpoint = await webhook_endpoint_service.get(
            session, principal.workspace_id, endpoint_id, for_key_share=True
        )
        now = utcnow()
        if since > now:
            raise InvalidInput(
                "since is in the future. Pass a past time, such as when the "
                "receiver started failing.",
                errors=[FieldError("since", "in the future", "in_future")],
            )
        if not endpoint.enabled:
            shown = ids.encode("webhook_endpoint", endpoint.id)
            raise WebhookEndpointDisabled(
                f"The endpoint {shown} is disabled. Enable it with PATCH, then "
                "recover its deliveries.",
                endpoint_id=shown,
            )

        recovery = WebhookRecovery(
            id=ids.new_uuid(),
            workspace_id=principal.workspace_id,
            endpoint_id=endpoint.id,
            since=since,
            status="pending",
            recovered_count=0,
            include_missing=include_missing,
            stage="failed",
            missing_count=0,
        )
        session.add(recovery)
        await session.flush()
        await session.refresh(recovery)

        defer_job(
            session, RECOVER_JOB, str(recovery.id), job_id=recover_job_id(recovery.id)
        )
        log.info(
            "webhook_recovery.created",
            recovery_id=str(recovery.id),
            endpoint_id=str(endpoint.id),
            since=since.isoformat(),
            include_missing=include_missing,
        )
        return recovery

    async def get(
        self, session: AsyncSession, workspace_id: uuid.UUID, recovery_id: uuid.UUID
    ) -> WebhookRecovery:
        recovery = await WebhookRecoveryRepository.from_session(session).get(
            workspace_id, recovery_id
        )
        if recovery is None:
            shown = ids.encode("webhook_recovery", recovery_id)
            raise WebhookRecoveryNotFound(
                f"No webhook recovery with id {shown} exists in this workspace."
            )
        return recovery

    async def run_batch(
        self, session: AsyncSession, recovery_id: uuid.UUID
    ) -> RecoveryBatch | None:
        """Run the next batch of a recovery; None if nothing is left to do.

        Returns None when the recovery is finished, missing, or run by another worker.
        Only deliveries that failed before the recovery was requested are taken, so a
        delivery that fails again afterwards is not sent a third time. Likewise only
        events emitted before it was requested get a missing delivery.
        """
        recovery = await WebhookRecoveryRepository.from_session(session).lock_pending(
            recovery_id
        )
        if recovery is None:
            return None

        now = utcnow()
        requeued = created = 0
        if recovery.stage == "failed":
            requeued = await self._requeue_failed(session, recovery, now)
            # A batch may hold fewer than RECOVERY_BATCH with more to come: a row
            # that another transaction changed while the batch waited for it drops
            # out. So only an empty batch ends the failed deliveries.
            if requeued:
                finished = False
            elif recovery.include_missing:
                recovery.stage = "missing"
                finished = False
            else:
                finished = True
        else:
            created, finished = await self._create_missing(session, recovery, now)
        if finished:
            recovery.status = "succeeded"
            recovery.completed_at = now
        recovery.updated_at = now
        await session.flush()

        log.info(
            "webhook_recovery.batch_done",
            recovery_id=str(recovery.id),
            endpoint_id=str(recovery.endpoint_id),
            requeued=requeued,
            created=created,
            recovered_count=recovery.recovered_count,
            missing_count=recovery.missing_count,
            finished=finished,
        )
        return RecoveryBatch(requeued=requeued, finished=finished, created=created)

    async def _requeue_failed(
        self, session: AsyncSession, recovery: WebhookRecovery, now: datetime
    ) -> int:
        """Make the next batch of failed deliveries pending again; return how many."""
        requeued = await WebhookDeliveryRepository.from_session(session).requeue_failed(
            recovery.endpoint_id,
            created_since=recovery.since,
            failed_before=recovery.created_at,
            after_id=recovery.last_delivery_id,
            limit=RECOVERY_BATCH,
            now=now,
        )
        for delivery_id, attempts in requeued:
            defer_job(
                session,
                DELIVER_JOB,
                str(delivery_id),
                job_id=f"{deliver_job_id(delivery_id, attempts + 1)}:recovery",
            )
        recovery.recovered_count += len(requeued)
        if requeued:
            recovery.last_delivery_id = requeued[-1][0]
        return len(requeued)

    async def _create_missing(
        self, session: AsyncSession, recovery: WebhookRecovery, now: datetime
    ) -> tuple[int, bool]:
        """Create the deliveries missing among the next batch of events; return how
        many it created, and whether no event is left."""
        endpoint = await session.get(WebhookEndpoint, recovery.endpoint_id)
        if endpoint is None or not endpoint.enabled:
            # A disabled endpoint gets no new delivery: it would fail unsent, as the
            # dispatch gives a disabled endpoint none.
            return 0, True
        batch = await create_missing_deliveries(
            session,
            endpoint,
            emitted_since=recovery.since,
            emitted_until=recovery.created_at,
            after_id=recovery.last_event_id,
            now=now,
        )
        recovery.missing_count += batch.created
        if batch.last_event_id is not None:
            recovery.last_event_id = batch.last_event_id
        return batch.created, batch.finished

    async def catch_up_until(self, session: AsyncSession) -> datetime:
        """Return the end of a catch-up's window: now, by PostgreSQL's clock, which
        stamps the events and the endpoint, and which a worker's clock may trail."""
        return await EventRepository.from_session(session).transaction_started_at()

    async def catch_up_batch(
        self,
        session: AsyncSession,
        endpoint_id: uuid.UUID,
        *,
        until: datetime,
        after_id: uuid.UUID | None,
    ) -> MissingBatch | None:
        """Give a new endpoint the deliveries its creation raced with, a batch at a
        time; None if it needs none.

        The events are those emitted from the endpoint's ``created_at`` (the start of
        its transaction) until ``until`` that it has no delivery of: an event of that
        time that the dispatch took before the endpoint committed got none. A
        disabled endpoint gets none, as the dispatch gives it none.
        """
        # The lock makes a PATCH of the endpoint wait for the batch, and the batch for
        # the PATCH, which catches the endpoint up itself (``catch_up_before_change``).
        endpoint = await WebhookEndpointRepository.from_session(session).get_by_id(
            endpoint_id, for_no_key_update=True
        )
        if endpoint is None or not endpoint.catch_up_pending:
            return None
        batch = MissingBatch(created=0, last_event_id=None, finished=True)
        if endpoint.enabled:
            batch = await create_missing_deliveries(
                session,
                endpoint,
                emitted_since=endpoint.created_at,
                emitted_until=until,
                after_id=after_id,
                now=utcnow(),
            )
        if batch.finished:
            await WebhookEndpointRepository.from_session(session).caught_up(endpoint.id)
        log.info(
            "webhook_endpoint.catch_up_batch_done",
            endpoint_id=str(endpoint.id),
            created=batch.created,
            finished=batch.finished,
        )
        return batch


async def create_missing_deliveries(
    session: AsyncSession,
    endpoint: WebhookEndpoint,
    *,
    emitted_since: datetime,
    emitted_until: datetime,
    after_id: uuid.UUID | None,
    now: datetime,
) -> MissingBatch:
    """Create the endpoint's missing deliveries among the next batch of its events.

    Takes the next ``RECOVERY_BATCH`` events after ``after_id`` emitted in the window
    that the endpoint's current event types cover, and gives a pending delivery, due
    ``now``, to each one it has none of. A delivery that the dispatch creates
    meanwhile is kept, and none is created beside it.
    """
    event_types = [
        event_type.name
        for event_type in catalog.EVENT_TYPES
        if any(
            catalog.matches(pattern, event_type.name)
            for pattern in endpoint.event_types
        )
    ]
    deliveries = WebhookDeliveryRepository.from_session(session)
    events, missing = await deliveries.missing_events(
        endpoint,
        event_types=event_types,
        emitted_since=emitted_since,
        emitted_until=emitted_until,
        after_id=after_id,
        limit=RECOVERY_BATCH,
    )
    inserted = await deliveries.create_many(
        [(event, endpoint.id) for event in missing], due_at=now
    )
    new_ids = [delivery_id for delivery_id in inserted if delivery_id is not None]
    for delivery_id in new_ids:
        defer_job(
            session,
            DELIVER_JOB,
            str(delivery_id),
            job_id=f"{deliver_job_id(delivery_id, 1)}:missing",
        )
    return MissingBatch(
        created=len(new_ids),
        last_event_id=events[-1].id if events else None,
        finished=len(events) < RECOVERY_BATCH,
    )


async def catch_up_before_change(
    session: AsyncSession, endpoint: WebhookEndpoint, *, stays_enabled: bool
) -> int:
    """Give a new endpoint the deliveries its creation raced with, before a change
    to its ``enabled`` or ``event_types``; return how many it created.

    The catch-up job takes the events emitted until it runs. Run after such a change,
    it would also take events the dispatch rightly left out: those emitted while the
    endpoint was disabled, or of a type it did not subscribe to then. An endpoint that
    the change leaves disabled gets none, as the job would give it none.
    """
    created = 0
    if stays_enabled:
        until = await EventRepository.from_session(session).transaction_started_at()
        now = utcnow()
        after_id: uuid.UUID | None = None
        while True:
            batch = await create_missing_deliveries(
                session,
                endpoint,
                emitted_since=endpoint.created_at,
                emitted_until=until,
                after_id=after_id,
                now=now,
            )
            created += batch.created
            if batch.finished:
                break
            after_id = batch.last_event_id
    await WebhookEndpointRepository.from_session(session).caught_up(endpoint.id)
    log.info(
        "webhook_endpoint.caught_up_before_change",
        endpoint_id=str(endpoint.id),
        created=created,
    )
    return created


webhook_recovery_service = WebhookRecoveryService()
