"""Thin arq entry points: each binds the job's log context, opens a session, calls a
feature service, commits, and sends the jobs the service deferred.

arq may run a job more than once (a retry, a killed worker, a duplicate enqueue),
so every service called here is idempotent: it claims its row in PostgreSQL first and
does nothing when the work is already done.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

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


Hook = Callable[[dict[str, Any]], Awaitable[None]]

# Features add their entry points, cron jobs and per-process resources (an HTTP client,
# a mailer) here.
FUNCTIONS: list[Any] = [prune_idempotency_keys]
CRON_JOBS: list[Any] = []
STARTUP_HOOKS: list[Hook] = []
SHUTDOWN_HOOKS: list[Hook] = []
