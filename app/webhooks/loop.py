"""The delivery loop: each worker process sends webhooks in batches beside its jobs.

Three transactions run side by side, each on its own connection. One dispatches new
events in bulk as room in the batch comes, creating their deliveries, most of them
already leased to the loop. One leases the other due deliveries, up to
``webhook_batch_size`` held by the loop, and leases again once half of them ended or
a dispatch left deliveries unleased. The last records the outcomes of the requests
that ended since it last ran, letting them gather for a moment first, so that one
transaction records many. Meanwhile the loop sends the leased requests
concurrently over the worker's one aiohttp session, so no transaction delays a
request. Each endpoint has a queue of its leased requests and at most
``webhook_max_in_flight_per_endpoint`` tasks that take the next one as soon as theirs
ended; a task ends when the queue is empty or the loop stops, so no task waits for a
lease. An endpoint whose recent requests were fast may have more leases waiting in
the loop (``leases_per_endpoint``). The loop finds its work in PostgreSQL, so a Redis
flush costs it nothing, and a worker killed mid-batch leaves leases that lapse and
are taken again by any worker. ``run(until_idle=True)`` dispatches in the lease
transaction instead, leasing nothing at dispatch, so that it can tell when no work
is left.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.core.ids import new_uuid
from app.settings import Settings
from app.webhooks.delivery import (
    GONE_STATUS,
    DeliveryClaim,
    NewLeases,
    endpoint_versions,
    lease,
    lease_seconds,
    record,
    release,
)
from app.webhooks.dispatch import DISPATCH_BATCH, Dispatch, dispatch_pending
from app.webhooks.sender import AttemptResult, WebhookSender

log = structlog.get_logger(__name__)

UnitOfWork = Callable[[], AbstractAsyncContextManager[AsyncSession]]
# Seconds the loop waits for the requests in flight when the worker stops, beyond
# the request timeout.
STOP_MARGIN_SECONDS = 5.0
# Seconds a running loop lets outcomes gather before it records them, unless a
# record batch of them ended sooner. Each record is a transaction, whose fixed cost
# then spreads over many outcomes. No request waits for a record.
RECORD_WAIT_SECONDS = 0.02


class DeliveryLoop:
    """Leases, sends and records webhook deliveries until stopped."""

    def __init__(
        self,
        unit_of_work: UnitOfWork,
        sender: WebhookSender,
        settings: Settings,
        *,
        serial_transactions: bool = False,
    ) -> None:
        self._unit_of_work = unit_of_work
        # Taken around each transaction when the sessions share one connection,
        # which cannot run the lease and the record at once.
        self._serial = asyncio.Lock() if serial_transactions else None
        self._sender = sender
        self._settings = settings
        self.owner = new_uuid()
        # By endpoint, the leased requests not yet taken by a sending task, and how
        # many tasks send them. A task counts until it finds its queue empty.
        self._queues: dict[uuid.UUID, deque[DeliveryClaim]] = {}
        self._sending: dict[uuid.UUID, int] = {}
        self._senders: set[asyncio.Task[None]] = set()
        # Leased requests not yet ended: queued, or being sent.
        self._unfinished = 0
        # Places in the batch held for the dispatch running, which may lease them.
        self._reserved = 0
        # Endpoints that returned 410, mapped to the time until which their leased
        # deliveries stay unsent.
        self._gone: dict[uuid.UUID, float] = {}
        # By endpoint, when the record that stored its 410 committed. A lease taken
        # later saw the endpoint disabled, so it was enabled again and its
        # deliveries are sent.
        self._gone_recorded: dict[uuid.UUID, datetime] = {}
        # By endpoint with queued claims, its version when the recorder last read
        # it, or None once it was deleted. A queued claim built from an older
        # version is released unsent, so the next lease builds it from the
        # endpoint's current URL, secrets and headers, or fails it if disabled.
        self._endpoint_versions: dict[uuid.UUID, int | None] = {}
        # By endpoint, the seconds its slowest recent request took; halved at each
        # round that records its requests, unless a slower one comes.
        self._slowest: dict[uuid.UUID, float] = {}
        self._done: list[tuple[DeliveryClaim, AttemptResult]] = []
        # When the oldest outcome in ``_done`` was added.
        self._first_outcome_at = 0.0
        # A running loop records once this many outcomes ended, or the oldest is
        # ``RECORD_WAIT_SECONDS`` old.
        self._record_batch = max(1, settings.webhook_batch_size // 4)
        # Set when a record batch of outcomes ended, a lease ran short, or the loop
        # stops, so that the recorder stops waiting.
        self._record_now = asyncio.Event()
        # Leased requests not sent, because their lease ran short or their endpoint
        # returned 410, to release.
        self._to_release: list[DeliveryClaim] = []
        self._wake = asyncio.Event()
        # Set when an outcome is added to ``_done``, a claim to ``_to_release``, or
        # leasing ends.
        self._outcomes = asyncio.Event()
        self._leasing = False
        self._recording = False
        # The loop leases again once this many requests of a batch ended, so each
        # lease takes a sizeable batch rather than one delivery per ended request.
        self._lease_threshold = max(1, settings.webhook_batch_size // 2)
        # Why the next lease should not wait for the poll: half the batch ended
        # (``_room``), the last lease was full (``_more_due``), or a job reported
        # new events (``_dispatch_requested``).
        self._room = False
        self._more_due = False
        self._dispatch_requested = False
        self._stopping = False
        self._task: asyncio.Task[int] | None = None
        self._last_dispatch = -float("inf")
        self._dispatch_backlog = False
        # Whether the lease transaction dispatches too (``run(until_idle=True)``),
        # rather than a dispatch task of its own.
        self._inline_dispatch = True
        # Set when a job reports new events, half the batch ended, a lease took
        # fewer than it could, or the loop stops.
        self._dispatch_wake = asyncio.Event()
        # Whether a job reported new events since the last dispatch.
        self._events_reported = False
        # Set when deliveries came due that no lease has looked for: a dispatch left
        # some unleased, or short leases were released. Cleared when a lease begins.
        self._new_due = False
        self._last_lease = -float("inf")

    @property
    def _occupied(self) -> int:
        """Return the batch's places taken: by requests not ended, and held for the
        deliveries a dispatch may lease."""
        return self._unfinished + self._reserved

    @property
    def in_flight(self) -> int:
        """Return how many leased requests have not ended: queued, or being sent."""
        return self._unfinished

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="webhook-delivery-loop")

    def wake(self) -> None:
        """Dispatch new events and look for work now rather than at the next poll."""
        self._events_reported = True
        self._dispatch_wake.set()
        if self._inline_dispatch:
            self._dispatch_requested = True
            self._wake.set()

    async def stop(self) -> None:
        """Stop leasing, let the requests in flight end, and record them.

        Leased requests that have not started are not sent: their leases are
        released, with their attempts, so that any worker sends them at once.
        """
        self._stopping = True
        self._wake.set()
        self._record_now.set()
        if self._task is None:
            return
        timeout = self._settings.webhook_timeout_seconds + STOP_MARGIN_SECONDS
        try:
            await asyncio.wait_for(self._task, timeout)
        except TimeoutError:
            log.warning("webhook.loop_stop_timed_out", in_flight=self._unfinished)
            # Their leases lapse, and the deliveries are sent again.
            for task in set(self._senders):
                task.cancel()

    async def run(self, *, until_idle: bool = False) -> int:
        """Run until stopped, or with ``until_idle`` until no work is due.

        Dispatching, leasing and recording run side by side, each in its own
        transaction, and the requests run in tasks of their own, which await none of
        them. With ``until_idle`` the lease transaction dispatches too, so that an
        empty lease after a dispatch that found nothing means no work is left.
        Returns how many attempts it recorded.
        """
        self._leasing = True
        self._inline_dispatch = until_idle
        recorder = asyncio.create_task(self._record_until_done(), name="webhook-record")
        dispatcher = None
        if not until_idle:
            dispatcher = asyncio.create_task(
                self._dispatch_until_done(), name="webhook-dispatch"
            )
        try:
            await self._lease_until_done(until_idle=until_idle)
        finally:
            self._leasing = False
            if dispatcher is not None:
                # It ends after the dispatch it is running, if any.
                self._dispatch_wake.set()
                await asyncio.gather(dispatcher, return_exceptions=True)
            while self._senders:
                await asyncio.wait(set(self._senders))
            await self._release_unsent()
            self._outcomes.set()
            self._record_now.set()
        return await recorder

    async def _release_unsent(self) -> None:
        """Release the leases of the requests that stopping left unsent."""
        unsent = [claim for queue in self._queues.values() for claim in queue]
        if not unsent:
            return
        for queue in self._queues.values():
            queue.clear()
        self._unfinished -= len(unsent)
        try:
            async with self._transaction() as session:
                released = await release(session, unsent)
        except Exception:
            # The leases lapse instead, and the deliveries are sent again later.
            log.exception("webhook.release_failed", unsent=len(unsent))
            return
        log.info("webhook.leases_released", unsent=len(unsent), released=released)

    async def _lease_until_done(self, *, until_idle: bool) -> None:
        poll = self._settings.webhook_poll_interval_seconds
        batch_size = self._settings.webhook_batch_size
        while not self._stopping:
            self._wake.clear()
            capacity = batch_size - self._occupied
            if self._inline_dispatch:
                since = time.monotonic() - self._last_dispatch
                dispatch_now = (
                    until_idle
                    or self._dispatch_backlog
                    or self._dispatch_requested
                    or since >= poll
                )
                # Between dispatches, lease only when half the batch ended or the
                # last lease was full, so each lease takes many deliveries.
                lease_now = (self._room or self._more_due) and (
                    capacity >= self._lease_threshold
                )
            else:
                # Retries come due without a signal, so the loop leases once every
                # poll interval. Between polls it waits for half the batch to end,
                # a full last lease or newly dispatched deliveries.
                since = time.monotonic() - self._last_lease
                dispatch_now = False
                lease_now = capacity > 0 and (
                    since >= poll
                    or (
                        (self._room or self._more_due or self._new_due)
                        and capacity >= self._lease_threshold
                    )
                )
            if not (dispatch_now or lease_now):
                # A poll interval may have passed with the batch full: the loop then
                # waits for a request to end, up to another interval, rather than spin.
                await self._wait(poll - since if since < poll else poll)
                continue
            self._dispatch_requested = False
            self._room = False
            # Cleared before the lease reads, so that deliveries committed while it
            # runs call for another lease.
            self._new_due = False
            # With nothing in flight and nothing left to record, every earlier
            # outcome is committed, so an empty lease means no work is due.
            settled = not (
                self._unfinished or self._done or self._to_release or self._recording
            )
            # The capacity is held for this lease, so that a dispatch meanwhile
            # leases no more than the rest.
            self._reserved += capacity
            try:
                claims, dispatched = await self._lease_cycle(capacity, dispatch_now)
            except Exception:
                log.exception("webhook.lease_failed")
                self._reserved -= capacity
                await asyncio.sleep(poll)
                continue
            self._reserved -= capacity
            if dispatch_now:
                self._last_dispatch = time.monotonic()
                self._dispatch_backlog = dispatched >= DISPATCH_BATCH
            self._last_lease = time.monotonic()
            self._queue(claims)
            self._more_due = capacity > 0 and len(claims) >= capacity
            if not self._more_due:
                # Fewer were due than it could take: the dispatch may go on.
                self._dispatch_wake.set()

            if until_idle and settled and not claims and not dispatched:
                return
            if not (claims or dispatched):
                await self._wait(poll)

    async def _dispatch_until_done(self) -> None:
        """Create the deliveries of new events, as room comes, until leasing ends.

        Each dispatch takes no more events than the batch has room for, and leases
        the deliveries it creates to this loop where it may (``choose_new_leases``),
        so they need no lease of their own. It runs once half the batch is free and
        new events may be waiting: at once while a backlog remains, and otherwise
        when a job reports new events (``wake``) or a poll interval passed. With less
        room it waits for room, or a poll interval, so that a backlog of events stays
        undispatched, for any worker with room, rather than become deliveries that
        wait for a lease. While due deliveries wait for the lease (a dispatch left
        some unleased, or the last lease was full), it waits for the lease to take
        them, so that new deliveries do not pile up behind them.
        """
        poll = self._settings.webhook_poll_interval_seconds
        batch_size = self._settings.webhook_batch_size
        last = -float("inf")
        backlog = False
        while self._leasing and not self._stopping:
            self._dispatch_wake.clear()
            room = batch_size - self._occupied
            since = time.monotonic() - last
            ready = backlog or since >= poll or self._events_reported
            # Deliveries a dispatch left unleased, or that a full lease left, are
            # due: the lease takes them before more events come. So are retries and
            # lapsed leases, which come due without a signal: a lease a poll
            # interval old goes first.
            lease_overdue = time.monotonic() - self._last_lease >= poll
            leasing_first = self._new_due or self._more_due or lease_overdue
            if lease_overdue:
                self._wake.set()
            if (
                room <= 0
                or not ready
                or leasing_first
                or (room < self._lease_threshold and since < poll)
            ):
                await self._wait_for_dispatch(poll - since if since < poll else poll)
                continue
            self._events_reported = False
            limit = min(DISPATCH_BATCH, room)
            # The room is held for this dispatch, so that a lease meanwhile takes
            # no more.
            self._reserved += room
            try:
                async with self._transaction() as session:
                    dispatch = await dispatch_pending(
                        session,
                        limit=limit,
                        lease_new=NewLeases(
                            self._settings, self.owner, room, self._slowest
                        ),
                    )
            except Exception:
                log.exception("webhook.dispatch_failed")
                dispatch = Dispatch(events=0)
            finally:
                self._reserved -= room
            last = time.monotonic()
            backlog = dispatch.events >= limit
            # Committed: the claims are this loop's to send.
            self._queue(dispatch.claims)
            if dispatch.unleased:
                self._new_due = True
                self._wake.set()

    async def _wait_for_dispatch(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._dispatch_wake.wait(), seconds)
        except TimeoutError:
            pass

    async def _wait(self, poll: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), poll)
        except TimeoutError:
            pass

    async def _lease_cycle(
        self, capacity: int, dispatch_now: bool
    ) -> tuple[list[DeliveryClaim], int]:
        async with self._transaction() as session:
            dispatched = 0
            if dispatch_now:
                dispatched = (
                    await dispatch_pending(session, limit=DISPATCH_BATCH)
                ).events
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

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        if self._serial is None:
            async with self._unit_of_work() as session:
                yield session
            return
        async with self._serial, self._unit_of_work() as session:
            yield session

    def _queue(self, claims: list[DeliveryClaim]) -> None:
        """Queue the claims by endpoint, and start the senders each queue may have."""
        self._unfinished += len(claims)
        touched = set()
        for claim in claims:
            queue = self._queues.get(claim.endpoint_id)
            if queue is None:
                queue = self._queues[claim.endpoint_id] = deque()
            queue.append(claim)
            touched.add(claim.endpoint_id)
        limit = self._settings.webhook_max_in_flight_per_endpoint
        for endpoint_id in touched:
            sending = self._sending.get(endpoint_id, 0)
            start = min(len(self._queues[endpoint_id]), limit - sending)
            self._sending[endpoint_id] = sending + max(0, start)
            for _ in range(start):
                task = asyncio.create_task(self._send_queued(endpoint_id))
                self._senders.add(task)
                task.add_done_callback(self._senders.discard)

    async def _send_queued(self, endpoint_id: uuid.UUID) -> None:
        """Send the endpoint's queued requests one after another, until none is left
        or the loop stops."""
        queue = self._queues[endpoint_id]
        room_at = self._settings.webhook_batch_size - self._lease_threshold
        try:
            while queue and not self._stopping:
                claim = queue.popleft()
                try:
                    await self._send_leased(claim)
                finally:
                    self._unfinished -= 1
                    if self._unfinished == room_at:
                        self._room = True
                        self._wake.set()
                        self._dispatch_wake.set()
        finally:
            # In the same step as the empty check, so a claim queued later finds
            # this task no longer counted and starts another.
            self._sending[endpoint_id] -= 1
            if not self._sending[endpoint_id] and not queue:
                # Forget the endpoint until its next lease, so a long-running
                # worker keeps no entry per endpoint it ever sent to.
                del self._sending[endpoint_id]
                del self._queues[endpoint_id]
                self._endpoint_versions.pop(endpoint_id, None)

    async def _record_until_done(self) -> int:
        """Record the outcomes as they come, and release the leases left unsent,
        until leasing ended and none is left.

        A claim skipped because its endpoint returned 410 is released in the same
        transaction as that 410 or a later one, never before the endpoint is
        disabled, so the next lease fails it without an attempt.
        """
        recorded = 0
        while True:
            self._outcomes.clear()
            if not (self._done or self._to_release):
                if not self._leasing and not self._unfinished:
                    return recorded
                await self._outcomes.wait()
                continue
            await self._let_outcomes_gather()
            finished, self._done = self._done, []
            unsent, self._to_release = self._to_release, []
            self._recording = True
            try:
                async with self._transaction() as session:
                    if unsent:
                        await release(session, unsent)
                    await record(session, self._settings, finished)
                    await self._read_endpoint_versions(session)
            except Exception:
                # Recorded nothing: the leases of the finished attempts lapse, and
                # the deliveries are sent again. The unsent claims are released at
                # the next round.
                log.exception("webhook.record_failed", lost_outcomes=len(finished))
                self._to_release[:0] = unsent
                await asyncio.sleep(self._settings.webhook_poll_interval_seconds)
                continue
            finally:
                self._recording = False
            recorded += len(finished)
            self._note_durations(finished)
            self._note_gone_recorded(finished)
            if unsent:
                log.info("webhook.leases_released", unsent=len(unsent))
                # The released deliveries are due at once.
                self._new_due = True
                self._wake.set()

    async def _let_outcomes_gather(self) -> None:
        """Wait until a record batch of outcomes ended, or the oldest is
        ``RECORD_WAIT_SECONDS`` old, so that one transaction records them all.

        It does not wait with a lease to release, once the loop stops, or in
        ``run(until_idle=True)``, which records each outcome as it comes.
        """
        if (
            self._inline_dispatch
            or not self._leasing
            or self._stopping
            or self._to_release
        ):
            return
        remaining = self._first_outcome_at + RECORD_WAIT_SECONDS - time.monotonic()
        if remaining <= 0 or len(self._done) >= self._record_batch:
            return
        self._record_now.clear()
        try:
            await asyncio.wait_for(self._record_now.wait(), remaining)
        except TimeoutError:
            pass

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

    def _note_gone_recorded(
        self, finished: list[tuple[DeliveryClaim, AttemptResult]]
    ) -> None:
        """Note when the 410s among the committed outcomes were recorded."""
        committed_at = utcnow()
        for claim, result in finished:
            if result.status_code == GONE_STATUS and claim.endpoint_id in self._gone:
                self._gone_recorded[claim.endpoint_id] = committed_at

    def _is_gone(self, claim: DeliveryClaim) -> bool:
        """Return whether the claim was leased before its endpoint's last 410 was
        recorded, within a lease's length of that 410.

        A claim leased after the 410 was recorded saw the endpoint disabled, so the
        endpoint was enabled again since, and the claim is sent.
        """
        until = self._gone.get(claim.endpoint_id)
        if until is None:
            return False
        if until <= time.monotonic():
            del self._gone[claim.endpoint_id]
            self._gone_recorded.pop(claim.endpoint_id, None)
            return False
        recorded_at = self._gone_recorded.get(claim.endpoint_id)
        return recorded_at is None or claim.leased_at < recorded_at

    async def _read_endpoint_versions(self, session: AsyncSession) -> None:
        """Note the current version of each endpoint with queued claims.

        NOTE: a sending task takes its next claim as soon as its request ends. So
        after an endpoint changes, its sending tasks go on sending requests built
        from the older version until the next record reads the change. That takes
        about ``RECORD_WAIT_SECONDS`` and one transaction while requests are ending,
        enough for many requests to a receiver that responds in a few milliseconds.
        """
        queued = [endpoint_id for endpoint_id, queue in self._queues.items() if queue]
        if not queued:
            return
        versions = await endpoint_versions(session, queued)
        for endpoint_id in queued:
            # A queue emptied meanwhile is forgotten, with its entry here.
            if endpoint_id in self._queues:
                self._endpoint_versions[endpoint_id] = versions.get(endpoint_id)

    def _is_outdated(self, claim: DeliveryClaim) -> bool:
        """Return whether the claim's endpoint was changed or deleted after the
        claim's request was built."""
        if claim.endpoint_id not in self._endpoint_versions:
            return False
        current = self._endpoint_versions[claim.endpoint_id]
        return current is None or current > claim.endpoint_version

    def _release_soon(self, claim: DeliveryClaim) -> None:
        """Leave a leased request unsent, for the recorder to release at once."""
        self._to_release.append(claim)
        self._outcomes.set()
        self._record_now.set()

    async def _send_leased(self, claim: DeliveryClaim) -> None:
        if self._is_gone(claim):
            # The endpoint is being disabled. Released with its attempt, the
            # delivery is failed by the next lease without an attempt, or sent if
            # the endpoint was enabled again.
            log.info(
                "webhook.delivery_skipped",
                reason="endpoint_gone",
                delivery_id=str(claim.delivery_id),
            )
            self._release_soon(claim)
            return
        if self._is_outdated(claim):
            # Released with its attempt, the delivery is leased again at once with
            # the endpoint's current settings, failed if it was disabled, or gone
            # with it if it was deleted.
            log.info(
                "webhook.delivery_skipped",
                reason="endpoint_changed",
                delivery_id=str(claim.delivery_id),
            )
            self._release_soon(claim)
            return
        timeout = timedelta(seconds=self._settings.webhook_timeout_seconds)
        if utcnow() + timeout >= claim.claimed_until:
            # The lease could lapse mid-request and another worker send it too. Left
            # unsent, it is released with its attempt, and leased again at once.
            log.warning("webhook.lease_too_short", delivery_id=str(claim.delivery_id))
            self._release_soon(claim)
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
            # Until this 410 is recorded, no leased request to the endpoint is sent.
            self._gone_recorded.pop(claim.endpoint_id, None)
        if not self._done:
            self._first_outcome_at = time.monotonic()
        self._done.append((claim, result))
        self._outcomes.set()
        if len(self._done) >= self._record_batch:
            self._record_now.set()
