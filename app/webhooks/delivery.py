"""Claiming a webhook delivery and recording the outcome of each attempt.

An attempt runs in three steps, so no transaction stays open during the request. First
``claim_delivery`` locks the due row with SKIP LOCKED, counts the attempt and takes a
lease (``claimed_until``) in a short transaction. Then the worker sends the request.
Last, ``record_attempt`` stores the attempt and decides what comes next in a second
transaction. If the worker dies in between, the lease lapses and the sweep hands the
delivery to another worker. An attempt counts when it is claimed, so a receiver that
crashes workers still runs out of attempts.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.clock import utcnow
from app.core.db import defer_job
from app.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.settings import Settings
from app.webhooks.backoff import next_delay_seconds, parse_retry_after
from app.webhooks.payload import build_payload
from app.webhooks.repository import (
    EventRepository,
    WebhookDeliveryRepository,
    WebhookEndpointRepository,
)
from app.webhooks.sender import AttemptResult, OutgoingRequest
from app.webhooks.service import (
    DELIVER_JOB,
    deliver_job_id,
    webhook_endpoint_service,
)

log = structlog.get_logger(__name__)

LEASE_MARGIN_SECONDS = 30
GONE_STATUS = 410

Outcome = Literal["succeeded", "retrying", "failed", "lost"]


@dataclass(frozen=True)
class DeliveryClaim:
    """A delivery leased to one worker for one attempt, with the request to send."""

    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    attempt: int
    attempt_limit: int
    claimed_until: datetime
    request: OutgoingRequest

    @property
    def is_final(self) -> bool:
        return self.attempt >= self.attempt_limit


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> tuple[str, ...]:
    """Return the secrets to sign with: the current one, and the previous in grace."""
    if (
        endpoint.previous_secret is not None
        and endpoint.previous_secret_expires_at is not None
        and endpoint.previous_secret_expires_at > now
    ):
        return (endpoint.secret, endpoint.previous_secret)
    return (endpoint.secret,)


def lease_seconds(settings: Settings) -> float:
    """Return how long a claim lasts: longer than any request can take."""
    return max(
        float(settings.claim_lease_seconds),
        settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS,
    )


def _finish(delivery: WebhookDelivery, status: str, now: datetime) -> None:
    delivery.status = status
    delivery.completed_at = now
    delivery.next_attempt_at = None
    delivery.claimed_until = None


async def claim_delivery(
    session: AsyncSession, delivery_id: uuid.UUID, settings: Settings
) -> DeliveryClaim | None:
    """Lease a due delivery for one attempt; return None if there is nothing to send.

    Nothing is sent for a delivery that is finished, not yet due, leased to another
    worker, or whose endpoint is disabled (that delivery fails without an attempt).
    """
    now = utcnow()
    delivery = await WebhookDeliveryRepository.from_session(session).claim_due(
        delivery_id, now
    )
    if delivery is None:
        log.debug("webhook.delivery_not_claimed", delivery_id=str(delivery_id))
        return None
    fields = {
        "delivery_id": str(delivery.id),
        "endpoint_id": str(delivery.endpoint_id),
        "event_id": str(delivery.event_id),
    }

    attempt_limit = delivery.attempt_limit or settings.webhook_max_attempts
    if delivery.attempts >= attempt_limit:
        # The lease of the last attempt lapsed: its worker stopped mid-request.
        _finish(delivery, "failed", now)
        delivery.last_error = (
            "The last attempt did not finish because its worker stopped. Retry the "
            "delivery to send it again."
        )
        log.warning("webhook.delivery_failed", attempts=delivery.attempts, **fields)
        return None
    endpoint = await WebhookEndpointRepository.from_session(session).get_by_id(
        delivery.endpoint_id
    )
    if endpoint is None or not endpoint.enabled:
        _finish(delivery, "failed", now)
        delivery.last_error = (
            "The endpoint is disabled, so nothing was sent. Enable it, then retry "
            "the delivery."
        )
        log.info("webhook.delivery_skipped", reason="endpoint_disabled", **fields)
        return None
    event = await EventRepository.from_session(session).get_by_id(delivery.event_id)
    if event is None:
        _finish(delivery, "failed", now)
        delivery.last_error = "The event no longer exists."
        log.warning("webhook.delivery_skipped", reason="event_missing", **fields)
        return None
    if not await _take_slot(session, delivery, now, settings):
        log.info("webhook.delivery_throttled", **fields)
        return None

    delivery.attempts += 1
    delivery.claimed_until = now + timedelta(seconds=lease_seconds(settings))
    await session.flush()
    return DeliveryClaim(
        delivery_id=delivery.id,
        endpoint_id=endpoint.id,
        event_id=event.id,
        attempt=delivery.attempts,
        attempt_limit=attempt_limit,
        claimed_until=delivery.claimed_until,
        request=OutgoingRequest(
            url=endpoint.url,
            message_id=ids.encode("webhook_delivery", delivery.id),
            body=build_payload(event),
            signing_secrets=signing_secrets(endpoint, now),
            headers=dict(endpoint.headers),
        ),
    )


async def _take_slot(
    session: AsyncSession,
    delivery: WebhookDelivery,
    now: datetime,
    settings: Settings,
) -> bool:
    """Return whether the endpoint has a free slot for ``delivery``, else mark it.

    The advisory lock, held until the claim commits its lease, makes counting the
    live leases and taking one atomic. A delivery left waiting gets ``throttled_at``,
    so the attempt that frees a slot queues it (``_queue_throttled``).
    """
    repository = WebhookDeliveryRepository.from_session(session)
    await repository.lock_endpoint_slots(delivery.endpoint_id)
    in_flight = await repository.count_in_flight(
        delivery.endpoint_id, now, excluding=delivery.id
    )
    if in_flight >= settings.webhook_max_in_flight_per_endpoint:
        delivery.throttled_at = now
        await session.flush()
        return False
    delivery.throttled_at = None
    return True


async def _queue_throttled(
    session: AsyncSession, endpoint_id: uuid.UUID, now: datetime, settings: Settings
) -> None:
    """Queue the due deliveries that wait for the slots the endpoint now has free.

    Two attempts ending at once may queue the same delivery; the job id names the
    time it was throttled, so arq runs one job per wait.
    """
    # NOTE: when two attempts end at once, each may see one free slot and queue the
    # same delivery, so one freed slot stays idle until the next attempt ends.
    repository = WebhookDeliveryRepository.from_session(session)
    in_flight = await repository.count_in_flight(endpoint_id, now)
    free = settings.webhook_max_in_flight_per_endpoint - in_flight
    if free <= 0:
        return
    for delivery_id, attempts, throttled_at in await repository.throttled(
        endpoint_id, now, limit=free
    ):
        defer_job(
            session,
            DELIVER_JOB,
            str(delivery_id),
            job_id=deliver_job_id(delivery_id, attempts + 1, throttled_at),
        )


def _failure_message(result: AttemptResult) -> str:
    if result.error is not None:
        return result.error
    status = result.status_code
    if status is not None and 300 <= status < 400:
        target = f" to {result.location}" if result.location else ""
        return (
            f"The endpoint responded {status}{target}, and redirects are not followed. "
            "Point the endpoint at the final URL."
        )
    return f"The endpoint responded {status}."


async def _update_endpoint_health(
    session: AsyncSession,
    result: AttemptResult,
    endpoint: WebhookEndpoint,
    now: datetime,
    settings: Settings,
) -> None:
    """Track failing_since and disable an endpoint that is gone or failing for days.

    An endpoint is disabled by the first failed attempt that comes
    ``webhook_disable_after_failing_seconds`` or more after the first failure since
    its last success. Runs before the delivery row is locked, so locks are taken
    endpoint first, the same order as deleting an endpoint, which cascades to its
    deliveries.
    """
    repository = WebhookEndpointRepository.from_session(session)
    if result.succeeded:
        if endpoint.failing_since is not None:
            await repository.mark_healthy(endpoint.id)
        return
    if result.status_code == GONE_STATUS:
        await webhook_endpoint_service.disable(session, endpoint.id, "gone")
        return
    if endpoint.failing_since is None:
        await repository.mark_failing(endpoint.id, now)
        return
    failing_for = now - endpoint.failing_since
    if failing_for.total_seconds() >= settings.webhook_disable_after_failing_seconds:
        await webhook_endpoint_service.disable(session, endpoint.id, "failing")


async def record_attempt(
    session: AsyncSession,
    claim: DeliveryClaim,
    result: AttemptResult,
    settings: Settings,
    *,
    rng: random.Random | None = None,
) -> Outcome:
    """Store the attempt, then finish the delivery or schedule its next attempt."""
    now = utcnow()
    fields = {
        "delivery_id": str(claim.delivery_id),
        "endpoint_id": str(claim.endpoint_id),
        "event_id": str(claim.event_id),
        "attempt": claim.attempt,
        "status_code": result.status_code,
        "duration_ms": result.duration_ms,
    }
    endpoint = await WebhookEndpointRepository.from_session(session).get_by_id(
        claim.endpoint_id
    )
    if endpoint is None:
        log.info("webhook.attempt_discarded", reason="endpoint_deleted", **fields)
        return "lost"
    await _update_endpoint_health(session, result, endpoint, now, settings)

    delivery = await WebhookDeliveryRepository.from_session(
        session
    ).get_by_id_for_update(claim.delivery_id)
    if delivery is None:
        log.info("webhook.attempt_discarded", reason="delivery_deleted", **fields)
        return "lost"
    session.add(
        WebhookAttempt(
            delivery_id=delivery.id,
            attempted_at=result.attempted_at,
            status_code=result.status_code,
            error=result.error,
            duration_ms=result.duration_ms,
            response_excerpt=result.response_excerpt,
        )
    )
    if delivery.claimed_until != claim.claimed_until:
        # The lease lapsed and another worker claimed the delivery; its own attempt
        # decides what happens next.
        await session.flush()
        log.warning("webhook.claim_lost", **fields)
        return "lost"

    delivery.claimed_until = None
    delivery.last_status_code = result.status_code
    if result.succeeded:
        _finish(delivery, "succeeded", now)
        delivery.last_error = None
        await session.flush()
        await _queue_throttled(session, delivery.endpoint_id, now, settings)
        log.info("webhook.attempt_succeeded", **fields)
        return "succeeded"

    delivery.last_error = _failure_message(result)
    if result.status_code == GONE_STATUS or claim.is_final:
        _finish(delivery, "failed", now)
        await session.flush()
        await _queue_throttled(session, delivery.endpoint_id, now, settings)
        log.warning(
            "webhook.attempt_failed", error=delivery.last_error, final=True, **fields
        )
        log.warning("webhook.delivery_failed", attempts=delivery.attempts, **fields)
        return "failed"

    delay = next_delay_seconds(
        claim.attempt,
        claim.attempt_limit,
        status_code=result.status_code,
        retry_after=parse_retry_after(result.retry_after, now),
        rng=rng,
    )
    delivery.next_attempt_at = now + timedelta(seconds=delay)
    await session.flush()
    await _queue_throttled(session, delivery.endpoint_id, now, settings)
    defer_job(
        session,
        DELIVER_JOB,
        str(delivery.id),
        job_id=deliver_job_id(delivery.id, claim.attempt + 1),
        _defer_until=delivery.next_attempt_at,
    )
    log.warning(
        "webhook.attempt_failed",
        error=delivery.last_error,
        final=False,
        next_attempt_at=delivery.next_attempt_at.isoformat(),
        **fields,
    )
    return "retrying"
