"""arq worker settings: functions, cron jobs, startup and shutdown.

arq's defaults poll Redis every 0.5 s and run 10 jobs at once. Both are tuned from
settings, so a job enqueued after a commit starts within tens of milliseconds (49.5 ms
at p95 on an idle worker, in benchmarks/RESULTS.md).
"""

from __future__ import annotations

import gc
from typing import Any

import structlog
from arq import cron

from app.core.db import Database
from app.core.jobs import QUEUE_NAME, JobQueue, redis_settings, with_request_id
from app.core.logging import configure_logging
from app.settings import Settings, get_settings
from workers import tasks

log = structlog.get_logger(__name__)


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx.get("settings") or get_settings()
    ctx["settings"] = settings
    ctx["db"] = Database(settings)
    ctx["queue"] = JobQueue(settings.redis_url)
    for hook in tasks.STARTUP_HOOKS:
        await hook(ctx)
    # The modules, settings and pools loaded so far live as long as the process:
    # moved out of the collector's generations, they are not scanned again at every
    # full collection.
    gc.freeze()
    log.info("worker.started")


async def shutdown(ctx: dict[str, Any]) -> None:
    for hook in tasks.SHUTDOWN_HOOKS:
        await hook(ctx)
    await ctx["queue"].close()
    await ctx["db"].dispose()
    log.info("worker.stopped")


def worker_functions() -> list[Any]:
    """Return the worker's job functions, each run with its request id."""
    return [with_request_id(function) for function in tasks.FUNCTIONS]


def worker_settings(settings: Settings | None = None) -> dict[str, Any]:
    """Build the keyword arguments of ``arq.Worker`` from our settings."""
    settings = settings or get_settings()
    configure_logging(settings.log_format, settings.log_level)
    sweep_seconds = set(range(0, 60, settings.sweep_interval_seconds))
    return {
        "functions": worker_functions(),
        "cron_jobs": [
            cron(
                tasks.prune_idempotency_keys,
                minute=set(range(0, 60, 10)),
                run_at_startup=False,
            ),
            *(
                cron(sweep, second=sweep_seconds, run_at_startup=True)
                for sweep in tasks.SWEEPS
            ),
            *tasks.CRON_JOBS,
        ],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": redis_settings(settings.redis_url),
        "queue_name": QUEUE_NAME,
        "poll_delay": settings.worker_poll_delay_seconds,
        "max_jobs": settings.worker_max_jobs,
        "job_timeout": settings.worker_job_timeout_seconds,
        "keep_result": 60,
        "ctx": {"settings": settings},
    }
