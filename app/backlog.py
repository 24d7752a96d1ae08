"""Gauges of the work waiting in PostgreSQL and Redis, served on ``/metrics``.

The request counters of ``/metrics`` belong to each api process. These gauges are
read from the shared database and queue, so every process reports the same values.

A scrape reads them again only when the last reading is older than
``REFRESH_SECONDS``, in one statement with a timeout, so frequent scrapes cost the
database little. When the database or Redis does not respond, the gauges keep their
last values and ``salescycle_backlog_up`` is 0.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import structlog
from prometheus_client import Gauge
from sqlalchemy import text

from app.core.clock import utcnow
from app.core.db import Database
from app.core.jobs import JobQueue

log = structlog.get_logger(__name__)

REFRESH_SECONDS = 5.0
# Milliseconds the reading statement may run before PostgreSQL cancels it.
STATEMENT_TIMEOUT_MS = 2000

# Each figure reads a partial index or a small table. The oldest undispatched event is
# the one with the smallest id, as ids are UUIDv7 and begin with their creation time.
_BACKLOG = text(
    """
    SELECT
        (SELECT count(*) FROM undispatched_events) AS events_undispatched,
        (
            SELECT events.created_at FROM undispatched_events AS queued
            JOIN events ON events.id = queued.event_id
            ORDER BY queued.event_id LIMIT 1
        ) AS oldest_undispatched_at,
        (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending')
            AS deliveries_pending,
        (
            SELECT min(next_attempt_at) FROM webhook_deliveries
            WHERE status = 'pending'
              AND next_attempt_at <= :now
              AND (claimed_until IS NULL OR claimed_until < :now)
        ) AS oldest_due_at,
        (SELECT count(*) FROM provider_events WHERE status = 'received')
            AS provider_received,
        (SELECT count(*) FROM provider_events WHERE status = 'held')
            AS provider_held,
        (SELECT count(*) FROM provider_events WHERE status = 'failed')
            AS provider_failed,
        (SELECT min(received_at) FROM provider_events WHERE status = 'held')
            AS oldest_held_at
    """
)

BACKLOG_UP = Gauge(
    "salescycle_backlog_up",
    "1 when the last reading of the backlog gauges succeeded, 0 when the database "
    "or Redis did not answer.",
)
EVENTS_UNDISPATCHED = Gauge(
    "salescycle_webhook_events_undispatched",
    "Events not yet fanned out to webhook deliveries, or, with no subscriber, not "
    "yet settled by the sweep.",
)
OLDEST_UNDISPATCHED = Gauge(
    "salescycle_webhook_oldest_undispatched_event_age_seconds",
    "Age of the oldest undispatched event; 0 when there is none.",
)
DELIVERIES_PENDING = Gauge(
    "salescycle_webhook_deliveries_pending",
    "Webhook deliveries not yet succeeded or failed: due, leased, or waiting to be "
    "retried.",
)
OLDEST_DUE = Gauge(
    "salescycle_webhook_oldest_due_delivery_age_seconds",
    "How long the longest-waiting due, unleased delivery has been due; 0 when none.",
)
PROVIDER_EVENTS = Gauge(
    "salescycle_provider_events",
    "Payment provider events by status: received (waiting to be applied), held "
    "(waiting for the payment they refer to) and failed.",
    ["status"],
)
OLDEST_HELD = Gauge(
    "salescycle_provider_oldest_held_event_age_seconds",
    "Age of the oldest held provider event; 0 when none is held.",
)
JOBS_READY = Gauge(
    "salescycle_jobs_ready",
    "Queued jobs whose start time has come, running ones included.",
)


def _age_seconds(since: datetime | None, now: datetime) -> float:
    if since is None:
        return 0.0
    return max(0.0, (now - since).total_seconds())


class BacklogGauges:
    """Refreshes the backlog gauges from the database and the job queue."""

    def __init__(self, database: Database, queue: JobQueue) -> None:
        self._database = database
        self._queue = queue
        # When the last reading ended, on the monotonic clock.
        self._read_at = -float("inf")
        self._refreshing = asyncio.Lock()

    async def refresh(self) -> None:
        """Read the backlog again unless the last reading is recent.

        Concurrent scrapes wait for the one reading in progress.
        """
        async with self._refreshing:
            if time.monotonic() - self._read_at < REFRESH_SECONDS:
                return
            up = await self._read_database()
            jobs = await self._queue.ready_count()
            if jobs is None:
                up = False
            else:
                JOBS_READY.set(jobs)
            BACKLOG_UP.set(1 if up else 0)
            self._read_at = time.monotonic()

    async def _read_database(self) -> bool:
        now = utcnow()
        try:
            async with self._database.session() as session:
                await session.execute(
                    text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
                )
                row: Any = (await session.execute(_BACKLOG, {"now": now})).one()
                await session.rollback()
        except Exception as error:
            log.warning("backlog.read_failed", error=repr(error))
            return False
        EVENTS_UNDISPATCHED.set(row.events_undispatched)
        OLDEST_UNDISPATCHED.set(_age_seconds(row.oldest_undispatched_at, now))
        DELIVERIES_PENDING.set(row.deliveries_pending)
        OLDEST_DUE.set(_age_seconds(row.oldest_due_at, now))
        PROVIDER_EVENTS.labels(status="received").set(row.provider_received)
        PROVIDER_EVENTS.labels(status="held").set(row.provider_held)
        PROVIDER_EVENTS.labels(status="failed").set(row.provider_failed)
        OLDEST_HELD.set(_age_seconds(row.oldest_held_at, now))
        return True
