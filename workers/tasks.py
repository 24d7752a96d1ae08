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
from typing import Any

import structlog
from arq import cron
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import Database, drop_pending_jobs
from app.core.idempotency import prune_expired
from app.core.jobs import JobQueue
from app.nurture.mailer import Mailer, create_mailer
from app.nurture.runner import SWEEP_BATCH, step_runner
from app.settings import Settings

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


async def run_enrollment_step(ctx: dict[str, Any], enrollment_id: str) -> str:
    mailer: Mailer = ctx.get("mailer") or create_mailer(ctx["settings"])
    return await step_runner.run(
        lambda: unit_of_work(ctx), mailer, ctx["settings"], uuid.UUID(enrollment_id)
    )


# At most this many batches per sweep, so one run stays well inside its job timeout.
# The next sweep, seconds later, takes the rest.
MAX_SWEEP_BATCHES = 20


async def sweep_due_enrollments(ctx: dict[str, Any]) -> int:
    claimed = 0
    for _ in range(MAX_SWEEP_BATCHES):
        async with unit_of_work(ctx) as session:
            count = await step_runner.sweep(session, ctx["settings"])
        claimed += count
        if count < SWEEP_BATCH:
            break
    return claimed


async def start_mailer(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    ctx["mailer"] = create_mailer(settings)
    log.info("mailer.started", mailer=type(ctx["mailer"]).__name__)
    default_secret = Settings.model_fields["signing_secret"].default
    if settings.signing_secret == default_secret and settings.env == "production":
        log.error(
            "mailer.default_signing_secret",
            hint="Set SALESCYCLE_SIGNING_SECRET, or anyone can forge unsubscribe links.",
        )


Hook = Callable[[dict[str, Any]], Awaitable[None]]

# Features add their entry points, cron jobs and per-process resources (an HTTP client,
# a mailer) here.
FUNCTIONS: list[Any] = [prune_idempotency_keys, run_enrollment_step]
CRON_JOBS: list[Any] = [
    cron(sweep_due_enrollments, second=set(range(0, 60, 5)), run_at_startup=True),
]
STARTUP_HOOKS: list[Hook] = [start_mailer]
SHUTDOWN_HOOKS: list[Hook] = []
