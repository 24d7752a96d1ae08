"""Enqueueing arq jobs after a commit.

Redis carries only hints: each job names a row in PostgreSQL that records the due work, and
the worker's sweep finds those rows on its own. A failed enqueue is therefore logged and
dropped, never raised, so a Redis outage cannot fail a committed write.
"""

from __future__ import annotations

import structlog
from arq.connections import ArqRedis, RedisSettings, create_pool
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import PendingJob, take_pending_jobs

log = structlog.get_logger(__name__)

QUEUE_NAME = "salescycle:queue"


def redis_settings(url: str) -> RedisSettings:
    """Build arq's connection settings from a ``redis://`` or ``unix://`` URL."""
    if url.startswith("unix://"):
        path, _, query = url[len("unix://") :].partition("?")
        database = 0
        for pair in query.split("&"):
            name, _, value = pair.partition("=")
            if name == "db" and value.isdigit():
                database = int(value)
        return RedisSettings(unix_socket_path=path, database=database)
    return RedisSettings.from_dsn(url)


class JobQueue:
    """A lazily connected arq pool that never raises on enqueue."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: ArqRedis | None = None

    async def pool(self) -> ArqRedis:
        if self._pool is None:
            settings = redis_settings(self.url)
            settings.conn_retries = 0
            settings.conn_timeout = 2
            self._pool = await create_pool(settings, default_queue_name=QUEUE_NAME)
        return self._pool

    async def enqueue(self, job: PendingJob) -> None:
        try:
            pool = await self.pool()
            await pool.enqueue_job(
                job.function, *job.args, _job_id=job.job_id, **job.kwargs
            )
        except Exception as error:
            log.warning(
                "job.enqueue_failed",
                function=job.function,
                job_id=job.job_id,
                error=repr(error),
            )
            await self._reset()

    async def send_pending(self, session: AsyncSession) -> None:
        """Enqueue every job deferred on ``session``; call only after it committed."""
        for job in take_pending_jobs(session):
            await self.enqueue(job)

    async def ping(self) -> bool:
        try:
            pool = await self.pool()
            return bool(await pool.ping())
        except Exception:
            await self._reset()
            return False

    async def _reset(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await pool.aclose()
            except Exception:  # noqa: S110 - the pool is already broken
                pass

    async def close(self) -> None:
        await self._reset()
