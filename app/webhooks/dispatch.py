"""Fanning events out to webhook endpoints, and the sweep that finds lost work.

Each worker's delivery loop (``app.webhooks.loop``) dispatches undispatched events in
bulk, at most ``DISPATCH_BATCH`` at a time, creating one pending delivery per subscribed
endpoint. A running loop creates most of them already leased to itself (``NewLeases``);
the loop leases the other due deliveries from PostgreSQL. ``emit`` also defers a
``dispatch_event`` job after the commit of each event that an enabled endpoint
subscribes to, which wakes the loop, or in a worker without one dispatches the events.
That job is a hint: every loop finds undispatched events in PostgreSQL on its own, and
in a worker without a loop the sweep enqueues them again, so a Redis flush or a lost
enqueue delays work but does not lose it. The sweep also marks dispatched, in bulk, the
undispatched events that no endpoint subscribes to, and queues again the recoveries that
stopped advancing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.core.db import defer_job
from app.core.events import DISPATCH_JOB
from app.webhooks.delivery import (
    DeliveryClaim,
    NewLeases,
    choose_new_leases,
    lease_seconds,
    new_claims,
)
from app.webhooks.recovery import RECOVER_JOB, recover_job_id
from app.webhooks.repository import (
    EventRepository,
    WebhookDeliveryRepository,
    WebhookEndpointRepository,
    WebhookRecoveryRepository,
)
from app.webhooks.service import CATCH_UP_JOB, catch_up_job_id

log = structlog.get_logger(__name__)

# Work younger than this still has its own job in flight; the sweep leaves it alone.
SWEEP_GRACE = timedelta(seconds=5)
SWEEP_BATCH = 500
# Events one dispatch by the delivery loop takes.
DISPATCH_BATCH = 500
# Bounds one sweep run; a larger backlog drains over the following runs.
SWEEP_MAX_ROWS = 10_000
# A pending recovery that no batch advanced for this long lost its job, or its worker.
# The same holds for a new endpoint not caught up this long after its creation.
RECOVERY_STALE_AFTER = timedelta(minutes=1)


@dataclass(frozen=True)
class SweepResult:
    """Jobs the sweep queued again, and events it marked dispatched with no delivery."""

    events: int
    settled: int = 0
    recoveries: int = 0
    catch_ups: int = 0


async def dispatch_event(
    session: AsyncSession, event_id: uuid.UUID
) -> list[uuid.UUID] | None:
    """Create the deliveries of one event; return their ids.

    Returns None when the event is already dispatched, missing, or being dispatched
    by another worker. Running it twice never creates a second delivery.
    """
    events = EventRepository.from_session(session)
    event = await events.lock_undispatched(event_id)
    if event is None:
        log.debug("webhook.dispatch_skipped", event_id=str(event_id))
        return None

    endpoint_ids = await WebhookEndpointRepository.from_session(session).subscribed_ids(
        event
    )
    now = utcnow()
    delivery_ids = list(
        await WebhookDeliveryRepository.from_session(session).create_for_event(
            event, endpoint_ids, due_at=now
        )
    )
    await events.mark_dispatched(event.id)
    log.info(
        "webhook.event_dispatched",
        event_id=str(event.id),
        event_type=event.type,
        deliveries=len(delivery_ids),
    )
    return delivery_ids


@dataclass(frozen=True)
class Dispatch:
    """The result of one dispatch: the events it took, the deliveries it created
    leased, ready to send, and how many it created unleased, for a lease to take."""

    events: int
    claims: list[DeliveryClaim] = field(default_factory=list)
    unleased: int = 0


async def dispatch_pending(
    session: AsyncSession, *, limit: int, lease_new: NewLeases | None = None
) -> Dispatch:
    """Create the deliveries of up to ``limit`` undispatched events.

    Events another transaction has locked are skipped. The subscribers are read once per
    workspace and event type; an endpoint created after an event is left out, as in
    ``dispatch_event``. With ``lease_new``, the new deliveries that
    ``choose_new_leases`` allows are created leased, and returned as claims to send
    once the transaction commits.
    """
    now = utcnow()
    events = EventRepository.from_session(session)
    batch = await events.claim_undispatched_batch(
        limit, with_payload=lease_new is not None
    )
    if not batch:
        return Dispatch(events=0)
    endpoints = WebhookEndpointRepository.from_session(session)
    subscribers: dict[tuple[uuid.UUID, str], Sequence[tuple[uuid.UUID, datetime]]] = {}
    pairs: list[tuple[Any, uuid.UUID]] = []
    for event in batch:
        key = (event.workspace_id, event.type)
        if key not in subscribers:
            subscribers[key] = await endpoints.subscribers(*key)
        pairs.extend(
            (event, endpoint_id)
            for endpoint_id, created_at in subscribers[key]
            if created_at <= event.created_at
        )
    deliveries = WebhookDeliveryRepository.from_session(session)
    claims: list[DeliveryClaim] = []
    if lease_new is None:
        delivery_ids = await deliveries.create_many(pairs, due_at=now)
    else:
        flags, leased_endpoints = await choose_new_leases(
            session, lease_new, pairs, now
        )
        claimed_until = now + timedelta(seconds=lease_seconds(lease_new.settings))
        delivery_ids = await deliveries.create_many(
            pairs,
            due_at=now,
            leased=flags,
            owner=lease_new.owner,
            claimed_until=claimed_until,
        )
        claims = new_claims(
            lease_new.settings,
            pairs,
            delivery_ids,
            flags,
            leased_endpoints,
            now,
            claimed_until,
        )
    created = sum(1 for delivery_id in delivery_ids if delivery_id is not None)
    log.info(
        "webhook.events_dispatched",
        events=len(batch),
        deliveries=created,
        leased=len(claims),
    )
    return Dispatch(events=len(batch), claims=claims, unleased=created - len(claims))


async def sweep(session: AsyncSession, *, requeue_events: bool = True) -> SweepResult:
    """Enqueue again every undispatched event, every stalled recovery, and the
    catch-up of every endpoint whose job was lost.

    First it marks dispatched the undispatched events no endpoint subscribes to, for
    which ``emit`` queued no job. A dispatch job carries the id first enqueued, so arq
    drops it while that job is still queued. Due deliveries need no job: the delivery
    loop of every worker leases them from PostgreSQL. Without ``requeue_events`` no
    dispatch job is queued, for a caller whose delivery loop dispatches the events
    itself.
    """
    now = utcnow()
    due_before = now - SWEEP_GRACE
    events = EventRepository.from_session(session)

    settled = await events.settle_unsubscribed(
        created_before=due_before, limit=SWEEP_MAX_ROWS
    )

    event_count = 0
    after_event: uuid.UUID | None = None
    while requeue_events and event_count < SWEEP_MAX_ROWS:
        event_ids = await events.undispatched_ids(
            created_before=due_before, after_id=after_event, limit=SWEEP_BATCH
        )
        for event_id in event_ids:
            defer_job(
                session, DISPATCH_JOB, str(event_id), job_id=f"dispatch:{event_id}"
            )
        event_count += len(event_ids)
        if len(event_ids) < SWEEP_BATCH:
            break
        after_event = event_ids[-1]

    recoveries = await WebhookRecoveryRepository.from_session(
        session
    ).stale_pending_ids(updated_before=now - RECOVERY_STALE_AFTER, limit=SWEEP_BATCH)
    for recovery_id in recoveries:
        defer_job(
            session, RECOVER_JOB, str(recovery_id), job_id=recover_job_id(recovery_id)
        )

    catch_ups = await WebhookEndpointRepository.from_session(
        session
    ).catch_up_pending_ids(created_before=now - RECOVERY_STALE_AFTER, limit=SWEEP_BATCH)
    for endpoint_id in catch_ups:
        defer_job(
            session, CATCH_UP_JOB, str(endpoint_id), job_id=catch_up_job_id(endpoint_id)
        )

    if event_count or settled or recoveries or catch_ups:
        log.info(
            "webhook.sweep_enqueued",
            events=event_count,
            settled=settled,
            recoveries=len(recoveries),
            catch_ups=len(catch_ups),
        )
    return SweepResult(
        events=event_count,
        settled=settled,
        recoveries=len(recoveries),
        catch_ups=len(catch_ups),
    )
