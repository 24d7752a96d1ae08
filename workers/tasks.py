"""Thin arq entry points: each binds the job's log context, opens a session, calls a
feature service, commits, and sends the jobs the service deferred.

arq may run a job more than once (a retry, a killed worker, a duplicate enqueue),
so every service called here is idempotent: it claims its row in PostgreSQL first and
does nothing when the work is already done.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import structlog
from arq import cron
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.providers.inbox import provider_event_service
from app.core.db import Database, drop_pending_jobs
from app.core.idempotency import prune_expired
from app.core.jobs import JobQueue

log = structlog.get_logger(__name__)


@asynccontextmanager
async def unit_of_work(ctx: dict[str, Any]) -> AsyncIterator[AsyncSession]:
    """Open a session for a job; commit on success, then enqueue deferred jobs."""
    database: Database = ctx["db"]
    queue: JobQueue = ctx["queue"]
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        job_id=ctx.get("job_id"),
        job_try=ctx.get("job_try"),
        request_id=ctx.get("request_id"),
    )
    async with database.sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            drop_pending_jobs(session)
            await session.rollback()
            raise
    await queue.send_pending(session)


async def prune_idempotency_keys(ctx: dict[str, Any]) -> int:
    async with unit_of_work(ctx) as session:
        removed = await prune_expired(session)
    if removed:
        log.info("idempotency.pruned", count=removed)
    return removed


def _lease(ctx: dict[str, Any]) -> timedelta:
    return timedelta(seconds=ctx["settings"].claim_lease_seconds)


async def process_provider_event(
    ctx: dict[str, Any], provider_event_id: str
) -> str | None:
    """Apply one stored payment provider event, unless it is done or leased elsewhere."""
    event_id = uuid.UUID(provider_event_id)
    async with unit_of_work(ctx) as session:
        claimed = await provider_event_service.claim(session, event_id, _lease(ctx))
    if not claimed:
        log.info("provider_event.not_claimed", provider_event_id=provider_event_id)
        return None
    return await _run_provider_event(ctx, event_id)


async def sweep_provider_events(ctx: dict[str, Any]) -> int:
    """Process received provider events whose job was lost or whose lease lapsed."""
    async with unit_of_work(ctx) as session:
        claimed = await provider_event_service.claim_due(session, _lease(ctx))
    for event_id in claimed:
        await _run_provider_event(ctx, event_id)
    if claimed:
        log.info("provider_event.swept", count=len(claimed))
    return len(claimed)


async def _run_provider_event(ctx: dict[str, Any], event_id: uuid.UUID) -> str | None:
    try:
        async with unit_of_work(ctx) as session:
            return await provider_event_service.process(session, event_id)
    except Exception as error:
        # The claim committed, so the attempt counts; the sweep retries after the lease.
        log.exception("provider_event.process_failed", provider_event_id=str(event_id))
        async with unit_of_work(ctx) as session:
            return await provider_event_service.record_failure(
                session, event_id, repr(error)
            )


Hook = Callable[[dict[str, Any]], Awaitable[None]]

# Features add their entry points, cron jobs and per-process resources (an HTTP client,
# a mailer) here.
FUNCTIONS: list[Any] = [
    prune_idempotency_keys,
    process_provider_event,
    sweep_provider_events,
]
CRON_JOBS: list[Any] = [
    # NOTE: every 15 s, the default of settings.sweep_interval_seconds; cron times are
    # fixed when this module is imported, before the worker's settings exist.
    cron(sweep_provider_events, second={0, 15, 30, 45}, run_at_startup=True),
]
STARTUP_HOOKS: list[Hook] = []
SHUTDOWN_HOOKS: list[Hook] = []
