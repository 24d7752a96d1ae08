"""Leasing due webhook deliveries in batches and recording their outcomes.

An attempt runs in three steps, so no transaction stays open during a request. First
the delivery is leased: ``lease`` takes a batch of due deliveries with SKIP LOCKED,
counts an attempt on each and leases it (``claimed_until``), in one short
transaction, and a running delivery loop's dispatch creates most new deliveries
leased already (``choose_new_leases``). Then the worker sends the requests,
concurrently. Last, ``record`` stores the attempts and decides what comes next for
every delivery of the batch in one transaction. If the worker dies in between, the
leases lapse and the next lease, by any worker, takes the deliveries again. An
attempt counts when it is leased, so a receiver that crashes workers still runs out
of attempts.

One owner at a time (a delivery loop, or one ``deliver_webhook`` job) leases an
endpoint's deliveries: none while another owner holds a live lease on one of them. An
owner holds no more leases of an endpoint than it can send before they lapse, with
``webhook_max_in_flight_per_endpoint`` requests at once each taking the whole timeout,
or, for an endpoint whose recent requests were fast, each taking a few times the
slowest of them (``leases_per_endpoint``). It sends at most that many at once, so the
next request starts as soon as one ends, without waiting for a transaction. Leasing
for an endpoint happens under its slot lock, so checking the owner, counting the live
leases and taking more is one step. Nothing is queued per delivery.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.clock import utcnow
from app.core.db import DriverStatement
from app.models import WebhookEndpoint
from app.settings import Settings
from app.webhooks.backoff import next_delay_seconds, parse_retry_after
from app.webhooks.payload import build_payload
from app.webhooks.repository import (
    PAYLOAD_COLUMNS,
    WebhookDeliveryRepository,
    WebhookEndpointRepository,
)
from app.webhooks.sender import AttemptResult, OutgoingRequest
from app.webhooks.service import webhook_endpoint_service

log = structlog.get_logger(__name__)

LEASE_MARGIN_SECONDS = 30
GONE_STATUS = 410
# A fast endpoint's requests are each assumed to take this many times its slowest
# recent request, and never less than MIN_PACE_SECONDS, when counting the leases an
# owner may hold.
PACE_FACTOR = 4.0
MIN_PACE_SECONDS = 1.0
# Endpoints looked at in one lease; the next lease looks at others.
ENDPOINTS_PER_LEASE = 100
# Characters of a redirect's Location that the delivery's error keeps; the receiver
# chooses the header, which may run to aiohttp's limit of 8 KB.
MAX_LOCATION_CHARS = 200

Outcome = Literal["succeeded", "retrying", "failed", "lost"]

DISABLED_ERROR = (
    "The endpoint is disabled, so nothing was sent. Enable it, then retry the delivery."
)
STOPPED_ERROR = (
    "The last attempt did not finish because its worker stopped. Retry the delivery "
    "to send it again."
)


@dataclass(frozen=True)
class DeliveryClaim:
    """A delivery leased to one worker for one attempt, with the request to send."""

    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    attempt: int
    attempt_limit: int
    # When the lease was taken, before the transaction that took it read anything.
    leased_at: datetime
    claimed_until: datetime
    # The endpoint's version that the request was built from.
    endpoint_version: int
    request: OutgoingRequest
    # Whether the endpoint was failing when the delivery was leased.
    endpoint_failing: bool = False

    @property
    def is_final(self) -> bool:
        return self.attempt >= self.attempt_limit


def signing_secrets(endpoint: Any, now: datetime) -> tuple[str, ...]:
    """Return the secrets to sign with: the current one, and the previous in grace.

    ``endpoint`` is a WebhookEndpoint, or a row with its secret columns.
    """
    if (
        endpoint.previous_secret is not None
        and endpoint.previous_secret_expires_at is not None
        and endpoint.previous_secret_expires_at > now
    ):
        return (endpoint.secret, endpoint.previous_secret)
    return (endpoint.secret,)


def lease_seconds(settings: Settings) -> float:
    """Return how long a lease lasts: longer than any request can take."""
    return max(
        float(settings.claim_lease_seconds),
        settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS,
    )


def leases_per_endpoint(settings: Settings, slowest: float | None = None) -> int:
    """Return how many leases of one endpoint a delivery loop may hold at once.

    Leases beyond the requests in flight wait in the loop's memory. Without
    ``slowest``, even if every request takes the whole timeout, the last one still
    starts before its lease leaves too little time for it. ``slowest`` is the
    duration in seconds of the endpoint's slowest recent request: each request is
    then assumed to take ``PACE_FACTOR`` times that, at least ``MIN_PACE_SECONDS``
    and at most the timeout. A lease that still runs short is not sent (the loop
    checks before each request); it is released, with its attempt, and leased again.
    """
    timeout = settings.webhook_timeout_seconds
    per_request = timeout
    if slowest is not None:
        per_request = min(timeout, max(MIN_PACE_SECONDS, PACE_FACTOR * slowest))
    rounds = int((lease_seconds(settings) - timeout) // per_request)
    return settings.webhook_max_in_flight_per_endpoint * max(1, rounds)


async def lease(
    session: AsyncSession,
    settings: Settings,
    *,
    limit: int,
    owner: uuid.UUID,
    only: Sequence[uuid.UUID] | None = None,
    slowest: Mapping[uuid.UUID, float] | None = None,
) -> list[DeliveryClaim]:
    """Lease up to ``limit`` due deliveries for ``owner``, one attempt each.

    Endpoints whose slot lock another worker holds, or whose deliveries another
    owner holds, are left for a later lease. A due delivery of a disabled endpoint,
    or one whose last attempt's worker stopped, fails here without an attempt.
    ``only`` restricts the lease to those deliveries, for an owner that sends them
    at once: it takes no more than the endpoint's requests in flight. ``slowest``
    gives, by endpoint, the seconds the owner's slowest recent request to it took
    (see ``leases_per_endpoint``).
    """
    now = utcnow()
    deliveries = WebhookDeliveryRepository.from_session(session)
    slots = settings.webhook_max_in_flight_per_endpoint
    if only is not None:
        locked = await deliveries.try_lock_endpoint_slots(
            await deliveries.endpoints_of(only)
        )
        max_leased: dict[uuid.UUID, int] = {}
    else:
        locked = await deliveries.lock_endpoints_with_due(
            now, limit=ENDPOINTS_PER_LEASE
        )
        paces = slowest or {}
        max_leased = {
            endpoint_id: leases_per_endpoint(settings, paces.get(endpoint_id))
            for endpoint_id in locked
        }
    if not locked:
        return []
    endpoints = await WebhookEndpointRepository.from_session(session).get_many(locked)
    max_attempts = settings.webhook_max_attempts
    disabled = [
        endpoint_id
        for endpoint_id in locked
        if endpoint_id not in endpoints or not endpoints[endpoint_id].enabled
    ]
    for delivery_id in await deliveries.fail_unsendable(
        disabled, now, max_attempts=max_attempts, disabled=True, error=DISABLED_ERROR
    ):
        log.info(
            "webhook.delivery_skipped",
            reason="endpoint_disabled",
            delivery_id=str(delivery_id),
        )
    enabled = [endpoint_id for endpoint_id in locked if endpoint_id not in disabled]
    for delivery_id in await deliveries.fail_unsendable(
        enabled, now, max_attempts=max_attempts, disabled=False, error=STOPPED_ERROR
    ):
        log.warning("webhook.delivery_failed", delivery_id=str(delivery_id))

    claimed_until = now + timedelta(seconds=lease_seconds(settings))
    leased: list[tuple[WebhookEndpoint, Any]] = []
    for endpoint_id in enabled:
        if len(leased) >= limit:
            break
        rows = await deliveries.lease_due(
            endpoint_id,
            now,
            claimed_until=claimed_until,
            owner=owner,
            max_leased=max_leased.get(endpoint_id, slots),
            max_attempts=max_attempts,
            limit=limit - len(leased),
            only=only,
        )
        leased.extend((endpoints[endpoint_id], row) for row in rows)
    if not leased:
        return []

    events = await _events(session, [row.event_id for _, row in leased])
    build = _ClaimBuilder(now, claimed_until, max_attempts)
    return [
        build(endpoint, row.id, events[row.event_id], row.attempts, row.attempt_limit)
        for endpoint, row in leased
    ]


class _ClaimBuilder:
    """Builds the claims of one lease, reading what the requests to one endpoint
    share once per endpoint."""

    def __init__(
        self, now: datetime, claimed_until: datetime, max_attempts: int
    ) -> None:
        self._now = now
        self._claimed_until = claimed_until
        self._max_attempts = max_attempts
        self._shared: dict[
            uuid.UUID, tuple[str, tuple[str, ...], dict[str, str], bool, int]
        ] = {}

    def __call__(
        self,
        # A WebhookEndpoint, or a row with the columns its requests read.
        endpoint: Any,
        delivery_id: uuid.UUID,
        event: Any,
        attempt: int,
        attempt_limit: int | None,
    ) -> DeliveryClaim:
        shared = self._shared.get(endpoint.id)
        if shared is None:
            shared = self._shared[endpoint.id] = (
                endpoint.url,
                signing_secrets(endpoint, self._now),
                dict(endpoint.headers),
                endpoint.failing_since is not None,
                endpoint.version,
            )
        url, secrets, headers, failing, version = shared
        return DeliveryClaim(
            delivery_id=delivery_id,
            endpoint_id=endpoint.id,
            event_id=event.id,
            attempt=attempt,
            attempt_limit=attempt_limit or self._max_attempts,
            leased_at=self._now,
            claimed_until=self._claimed_until,
            endpoint_version=version,
            request=OutgoingRequest(
                url=url,
                message_id=ids.encode("webhook_delivery", delivery_id),
                body=build_payload(event),
                signing_secrets=secrets,
                headers=headers,
            ),
            endpoint_failing=failing,
        )


@dataclass(frozen=True)
class NewLeases:
    """Asks a dispatch to lease the deliveries it creates to ``owner``, up to
    ``limit`` of them, so that they need no lease of their own.

    ``slowest`` is as in ``lease``.
    """

    settings: Settings
    owner: uuid.UUID
    limit: int
    slowest: Mapping[uuid.UUID, float] = field(default_factory=dict)


async def choose_new_leases(
    session: AsyncSession,
    new_leases: NewLeases,
    pairs: Sequence[tuple[Any, uuid.UUID]],
    now: datetime,
) -> tuple[list[bool], dict[uuid.UUID, Any]]:
    """Choose which new deliveries, one per (event, endpoint) pair, start leased.

    An endpoint's new deliveries are leased only under its slot lock and while no
    other owner holds a live lease on one of its deliveries. None of its deliveries
    may be due and unleased either, so that new ones do not pass an older one. The owner then holds no more
    than ``leases_per_endpoint`` of the endpoint's deliveries. Returns a flag per
    pair, and the endpoints with a delivery to lease, each a row with the columns
    its requests read.
    """
    if new_leases.limit <= 0 or not pairs:
        return [False] * len(pairs), {}
    deliveries = WebhookDeliveryRepository.from_session(session)
    slots = await deliveries.lock_slots_for_new(
        list({endpoint_id for _, endpoint_id in pairs}), now, new_leases.owner
    )
    room = {
        slot.id: leases_per_endpoint(
            new_leases.settings, new_leases.slowest.get(slot.id)
        )
        - slot.leased
        for slot in slots
        if not (slot.held_elsewhere or slot.backlog)
    }
    endpoints = {slot.id: slot for slot in slots if room.get(slot.id, 0) > 0}
    flags = []
    left = new_leases.limit
    for _, endpoint_id in pairs:
        take = left > 0 and room.get(endpoint_id, 0) > 0 and endpoint_id in endpoints
        if take:
            room[endpoint_id] -= 1
            left -= 1
        flags.append(take)
    return flags, endpoints


def new_claims(
    settings: Settings,
    pairs: Sequence[tuple[Any, uuid.UUID]],
    delivery_ids: Sequence[uuid.UUID | None],
    flags: Sequence[bool],
    endpoints: Mapping[uuid.UUID, Any],
    now: datetime,
    claimed_until: datetime,
) -> list[DeliveryClaim]:
    """Build the claims of the deliveries a dispatch created leased; each event of
    ``pairs`` has the columns its payload reads."""
    build = _ClaimBuilder(now, claimed_until, settings.webhook_max_attempts)
    return [
        build(endpoints[endpoint_id], delivery_id, event, 1, None)
        for (event, endpoint_id), delivery_id, leased in zip(
            pairs, delivery_ids, flags, strict=True
        )
        if leased and delivery_id is not None
    ]


_PAYLOAD_EVENTS = DriverStatement.compile(
    text(
        f"""
        SELECT {", ".join(PAYLOAD_COLUMNS)} FROM events
        WHERE id = ANY(CAST(:ids AS uuid[]))
        """
    ),
    PAYLOAD_COLUMNS,
)


async def _events(
    session: AsyncSession, event_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Any]:
    """Load the events of leased deliveries; a delivery's foreign key keeps its event.

    Each is a row with the attributes the payload reads rather than an ORM object,
    to spare the loop the cost of building objects it only reads.
    """
    rows = await _PAYLOAD_EVENTS.fetch(session, {"ids": list(set(event_ids))})
    return {row.id: row for row in rows}


def _failure_message(result: AttemptResult) -> str:
    if result.error is not None:
        return result.error
    status = result.status_code
    if status is not None and 300 <= status < 400:
        location = result.location
        if location is not None and len(location) > MAX_LOCATION_CHARS:
            location = location[:MAX_LOCATION_CHARS] + "…"
        target = f" to {location}" if location else ""
        return (
            f"The endpoint responded {status}{target}, and redirects are not followed. "
            "Point the endpoint at the final URL."
        )
    return f"The endpoint responded {status}."


async def _update_endpoint_health(
    session: AsyncSession,
    endpoint: WebhookEndpoint,
    results: Sequence[AttemptResult],
    now: datetime,
    settings: Settings,
) -> None:
    """Track failing_since and disable an endpoint that is gone or failing for days.

    The results are taken in the order they were attempted. An endpoint is disabled
    by the first failed attempt that comes ``webhook_disable_after_failing_seconds``
    or more after the first failure since its last success. A 410 disables it at
    once, and counts as a failure in ``failing_since``.
    """
    repository = WebhookEndpointRepository.from_session(session)
    failing_since = endpoint.failing_since
    for result in sorted(results, key=lambda result: result.attempted_at):
        if result.succeeded:
            failing_since = None
            continue
        if result.status_code == GONE_STATUS:
            if failing_since is None:
                failing_since = now
            if failing_since != endpoint.failing_since:
                await repository.set_failing_since(endpoint.id, failing_since)
            await webhook_endpoint_service.disable(session, endpoint.id, "gone")
            return
        if failing_since is None:
            failing_since = now
            continue
        failing_for = now - failing_since
        if (
            failing_for.total_seconds()
            >= settings.webhook_disable_after_failing_seconds
        ):
            await webhook_endpoint_service.disable(session, endpoint.id, "failing")
            return
    if failing_since != endpoint.failing_since:
        await repository.set_failing_since(endpoint.id, failing_since)


def _next_state(
    claim: DeliveryClaim,
    result: AttemptResult,
    now: datetime,
    rng: random.Random | None,
) -> tuple[Outcome, dict[str, Any]]:
    """Return the outcome of an attempt and the delivery's columns after it."""
    values: dict[str, Any] = {
        "id": claim.delivery_id,
        "leased_until": claim.claimed_until,
        "last_status_code": result.status_code,
        "updated_at": now,
    }
    finished = {"completed_at": now, "next_attempt_at": None}
    if result.succeeded:
        return "succeeded", {
            **values,
            **finished,
            "status": "succeeded",
            "last_error": None,
        }
    values["last_error"] = _failure_message(result)
    if result.status_code == GONE_STATUS or claim.is_final:
        return "failed", {**values, **finished, "status": "failed"}
    delay = next_delay_seconds(
        claim.attempt,
        claim.attempt_limit,
        status_code=result.status_code,
        retry_after=parse_retry_after(result.retry_after, now),
        rng=rng,
    )
    values["next_attempt_at"] = now + timedelta(seconds=delay)
    return "retrying", {**values, "status": "pending", "completed_at": None}


async def endpoint_versions(
    session: AsyncSession, endpoint_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """Return the current version of each endpoint, leaving out deleted ones."""
    return await WebhookEndpointRepository.from_session(session).versions(endpoint_ids)


async def release(session: AsyncSession, claims: Sequence[DeliveryClaim]) -> int:
    """Give back the leases of claims that were never sent; return how many.

    Each delivery is due again at once, and the attempt its lease counted no longer
    counts. A lease that lapsed and was taken by another owner is left alone.
    """
    if not claims:
        return 0
    deliveries = WebhookDeliveryRepository.from_session(session)
    leases = await deliveries.lock_leased([claim.delivery_id for claim in claims])
    still_leased = [
        claim.delivery_id
        for claim in claims
        if leases.get(claim.delivery_id) == claim.claimed_until
    ]
    await deliveries.release_leases(still_leased, utcnow())
    return len(still_leased)


async def record(
    session: AsyncSession,
    settings: Settings,
    outcomes: Sequence[tuple[DeliveryClaim, AttemptResult]],
    *,
    rng: random.Random | None = None,
) -> list[Outcome]:
    """Store the attempts of a batch, then finish or reschedule each delivery.

    Returns the outcome of each attempt, in order. Locks are taken endpoints first,
    the same order as deleting an endpoint, which cascades to its deliveries. An
    attempt whose lease lapsed and was taken by another worker is stored, but that
    worker's attempt decides what happens next ("lost").
    """
    if not outcomes:
        return []
    now = utcnow()
    by_endpoint: dict[uuid.UUID, list[tuple[DeliveryClaim, AttemptResult]]] = {}
    for claim, result in outcomes:
        by_endpoint.setdefault(claim.endpoint_id, []).append((claim, result))
    # Successes at an endpoint that was healthy when leased change nothing.
    touched = {
        claim.endpoint_id
        for claim, result in outcomes
        if claim.endpoint_failing or not result.succeeded
    }
    endpoints = await WebhookEndpointRepository.from_session(session).get_many(
        sorted(touched)
    )
    for endpoint_id in sorted(touched):
        endpoint = endpoints.get(endpoint_id)
        if endpoint is None:
            continue
        # A request built from an older version of the endpoint, such as one sent
        # before a PATCH of its URL, went to settings that no longer apply, so its
        # outcome neither disables the endpoint nor changes failing_since.
        current = [
            result
            for claim, result in by_endpoint[endpoint_id]
            if claim.endpoint_version >= endpoint.version
        ]
        if current:
            await _update_endpoint_health(session, endpoint, current, now, settings)

    planned = [
        (claim, result, *_next_state(claim, result, now, rng))
        for claim, result in outcomes
    ]
    deliveries = WebhookDeliveryRepository.from_session(session)
    stored = await deliveries.record_states([values for *_, values in planned])
    # The rest lost their lease, or were deleted; their current leases tell which.
    leases = await deliveries.lock_leased(
        [claim.delivery_id for claim, *_ in planned if claim.delivery_id not in stored]
    )
    attempts: list[dict[str, Any]] = []
    results: list[Outcome] = []
    # A success is logged at info level. At a higher level, its fields are not built.
    log_successes = log.is_enabled_for(logging.INFO)
    for claim, result, outcome, values in planned:
        if claim.delivery_id in stored:
            results.append(outcome)
            if outcome != "succeeded" or log_successes:
                _log_outcome(outcome, values, _log_fields(claim, result))
        elif claim.delivery_id in leases:
            # The lease lapsed and another worker leased the delivery; its own
            # attempt decides what happens next.
            log.warning("webhook.claim_lost", **_log_fields(claim, result))
            results.append("lost")
        else:
            log.info(
                "webhook.attempt_discarded",
                reason="delivery_deleted",
                **_log_fields(claim, result),
            )
            results.append("lost")
            continue
        attempts.append(
            {
                "delivery_id": claim.delivery_id,
                "attempted_at": result.attempted_at,
                "status_code": result.status_code,
                "error": result.error,
                "duration_ms": result.duration_ms,
                "response_excerpt": result.response_excerpt,
            }
        )
    await deliveries.add_attempts(attempts)
    return results


def _log_fields(claim: DeliveryClaim, result: AttemptResult) -> dict[str, Any]:
    return {
        "delivery_id": str(claim.delivery_id),
        "endpoint_id": str(claim.endpoint_id),
        "event_id": str(claim.event_id),
        "attempt": claim.attempt,
        "status_code": result.status_code,
        "duration_ms": result.duration_ms,
    }


def _log_outcome(
    outcome: Outcome, values: dict[str, Any], fields: dict[str, Any]
) -> None:
    if outcome == "succeeded":
        log.info("webhook.attempt_succeeded", **fields)
    elif outcome == "failed":
        log.warning(
            "webhook.attempt_failed", error=values["last_error"], final=True, **fields
        )
        log.warning("webhook.delivery_failed", **fields)
    else:
        log.warning(
            "webhook.attempt_failed",
            error=values["last_error"],
            final=False,
            next_attempt_at=values["next_attempt_at"].isoformat(),
            **fields,
        )
