"""The delivery loop: each worker process sends webhooks in batches beside its jobs.

The loop repeats one short transaction that dispatches new events in bulk, records
the outcomes of the requests that ended since the last one, and leases due deliveries
up to ``webhook_batch_size``. Meanwhile it sends the leased requests concurrently over
the worker's one aiohttp session, at most ``webhook_max_in_flight_per_endpoint`` at once
to one endpoint. An endpoint whose recent requests were fast may have more leases
waiting in the loop (``leases_per_endpoint``), so one round can move more than the
in-flight limit times the rounds of the timeout. It finds its work in PostgreSQL, so a Redis flush
costs it nothing, and a worker killed mid-batch leaves leases that lapse and are taken
again by any worker.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.core.ids import new_uuid
from app.settings import Settings
from app.webhooks.delivery import (
    GONE_STATUS,
    DeliveryClaim,
    lease,
    lease_seconds,
    record,
)
from app.webhooks.dispatch import DISPATCH_BATCH, dispatch_pending
from app.webhooks.sender import AttemptResult, WebhookSender

log = structlog.get_logger(__name__)

UnitOfWork = Callable[[], AbstractAsyncContextManager[AsyncSession]]
# Seconds the loop waits for the requests in flight when the worker stops, beyond
# the request timeout.
STOP_MARGIN_SECONDS = 5.0


class DeliveryLoop:
    """Leases, sends and records webhook deliveries until stopped."""

    def __init__(
        self, unit_of_work: UnitOfWork, sender: WebhookSender, settings: Settings
    ) -> None:
        self._unit_of_work = unit_of_work
        self._sender = sender
        self._settings = settings
        self.owner = new_uuid()
        self._slots: dict[uuid.UUID, asyncio.Semaphore] = {}
        # Endpoints that returned 410, mapped to the time until which their leased
        # deliveries stay unsent.
        self._gone: dict[uuid.UUID, float] = {}
        # By endpoint, the seconds its slowest recent request took; halved at each
        # round that records its requests, unless a slower one comes.
        self._slowest: dict[uuid.UUID, float] = {}
        self._in_flight: set[asyncio.Task[None]] = set()
        self._done: list[tuple[DeliveryClaim, AttemptResult]] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[int] | None = None
        self._last_dispatch = -float("inf")
        self._dispatch_backlog = False

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="webhook-delivery-loop")

    def wake(self) -> None:
        """Look for work now rather than at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop leasing, let the requests in flight end, and record them."""
        self._stopping = True
        self._wake.set()
        if self._task is None:
            return
        timeout = self._settings.webhook_timeout_seconds + STOP_MARGIN_SECONDS
        try:
            await asyncio.wait_for(self._task, timeout)
        except TimeoutError:
            log.warning("webhook.loop_stop_timed_out", in_flight=len(self._in_flight))

    async def run(self, *, until_idle: bool = False) -> int:
        """Run until stopped, or with ``until_idle`` until no work is due.

        Returns how many attempts it recorded.
        """
        poll = self._settings.webhook_poll_interval_seconds
        recorded = 0
        while True:
            self._wake.clear()
            finished, self._done = self._done, []
            capacity = (
                0
                if self._stopping
                else self._settings.webhook_batch_size - len(self._in_flight)
            )
            dispatch_now = not self._stopping and (
                until_idle
                or self._dispatch_backlog
                or time.monotonic() - self._last_dispatch >= poll
            )
            try:
                claims, dispatched = await self._cycle(finished, capacity, dispatch_now)
            except Exception:
                # Recorded nothing: the leases of the finished attempts lapse, and
                # the deliveries are sent again.
                log.exception("webhook.loop_failed", lost_outcomes=len(finished))
                if self._stopping:
                    return recorded
                await asyncio.sleep(poll)
                continue
            recorded += len(finished)
            self._note_durations(finished)
            if dispatch_now:
                self._last_dispatch = time.monotonic()
                self._dispatch_backlog = dispatched >= DISPATCH_BATCH
            for claim in claims:
                task = asyncio.create_task(self._send(claim))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)

            idle = not (self._in_flight or self._done or claims or finished)
            if self._stopping and not self._in_flight and not self._done:
                return recorded
            if until_idle and idle and not dispatched:
                return recorded
            full = capacity > 0 and len(claims) >= capacity
            if self._done or full or self._dispatch_backlog or dispatched:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), poll)
            except TimeoutError:
                pass

    async def _cycle(
        self,
        finished: list[tuple[DeliveryClaim, AttemptResult]],
        capacity: int,
        dispatch_now: bool,
    ) -> tuple[list[DeliveryClaim], int]:
        async with self._unit_of_work() as session:
            dispatched = 0
            if dispatch_now:
                dispatched = await dispatch_pending(session, limit=DISPATCH_BATCH)
            await record(session, self._settings, finished)
            claims = []
            if capacity > 0:
                claims = await lease(
                    session,
                    self._settings,
                    limit=capacity,
                    owner=self.owner,
                    slowest=self._slowest,
                )
        return claims, dispatched

    def _note_durations(
        self, finished: list[tuple[DeliveryClaim, AttemptResult]]
    ) -> None:
        slowest: dict[uuid.UUID, float] = {}
        for claim, result in finished:
            seconds = result.duration_ms / 1000
            slowest[claim.endpoint_id] = max(
                seconds, slowest.get(claim.endpoint_id, 0.0)
            )
        for endpoint_id, seconds in slowest.items():
            before = self._slowest.get(endpoint_id)
            self._slowest[endpoint_id] = (
                seconds if before is None else max(seconds, before / 2)
            )

    async def _send(self, claim: DeliveryClaim) -> None:
        slots = self._slots.get(claim.endpoint_id)
        if slots is None:
            slots = asyncio.Semaphore(self._settings.webhook_max_in_flight_per_endpoint)
            self._slots[claim.endpoint_id] = slots
        async with slots:
            await self._send_leased(claim)

    async def _send_leased(self, claim: DeliveryClaim) -> None:
        if self._gone.get(claim.endpoint_id, 0.0) > time.monotonic():
            # The endpoint is disabled: the lease lapses, and the next lease fails the
            # delivery without an attempt.
            log.info(
                "webhook.delivery_skipped",
                reason="endpoint_gone",
                delivery_id=str(claim.delivery_id),
            )
            return
        timeout = timedelta(seconds=self._settings.webhook_timeout_seconds)
        if utcnow() + timeout >= claim.claimed_until:
            # The lease could lapse mid-request and another worker send it too; left
            # unsent, it lapses and is leased again.
            log.warning("webhook.lease_too_short", delivery_id=str(claim.delivery_id))
            return
        try:
            result = await self._sender.send(claim.request)
        except Exception:
            # Not recorded: the lease lapses and the delivery is sent again.
            log.exception("webhook.send_crashed", delivery_id=str(claim.delivery_id))
            return
        if result.status_code == GONE_STATUS:
            self._gone[claim.endpoint_id] = time.monotonic() + lease_seconds(
                self._settings
            )
        self._done.append((claim, result))
        self._wake.set()
