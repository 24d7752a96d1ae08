"""Enqueueing arq jobs after a commit.

Redis carries only hints: each job names a row in PostgreSQL that records the due work, and
the worker's sweep finds those rows on its own. A failed enqueue is therefore logged and
dropped, never raised, so a Redis outage cannot fail a committed write.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar, cast

import structlog
from arq.connections import ArqRedis, RedisSettings
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms, to_unix_ms
from redis.asyncio import BlockingConnectionPool
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import PendingJob, take_pending_jobs

log = structlog.get_logger(__name__)

QUEUE_NAME = "salescycle:queue"
# A request enqueues after its commit, one job at a time, so a process needs about as
# many connections as it serves requests at once. Past that, an enqueue waits for a
# free connection up to the connect timeout, and is then logged and dropped.
MAX_CONNECTIONS = 100
CONNECT_TIMEOUT_SECONDS = 2.0
# The keyword argument that carries a job's request id to the worker, which takes it
# out before calling the job (``with_request_id``).
REQUEST_ID_KWARG = "_request_id"

# Adds a job as arq's enqueue_job does (arq 0.28), in one round trip where arq takes
# three: a job id that already has a job or a result key is skipped, and otherwise the
# serialized job is stored with an expiry and its id queued, scored by its start time.
# An optional fourth key is the key of another job. The job is skipped too while that
# key exists, which is while the other job is queued or running.
_ENQUEUE_SCRIPT = """
if redis.call('exists', KEYS[1], KEYS[2]) > 0 then
  return 0
end
if KEYS[4] and redis.call('exists', KEYS[4]) > 0 then
  return 0
end
redis.call('psetex', KEYS[1], ARGV[1], ARGV[2])
redis.call('zadd', KEYS[3], ARGV[3], ARGV[4])
return 1
"""


def _start_ms(kwargs: dict[str, Any], enqueued_ms: int) -> int:
    """Pop arq's ``_defer_until`` or ``_defer_by`` and return the start time in ms."""
    defer_until = kwargs.pop("_defer_until", None)
    defer_by = kwargs.pop("_defer_by", None)
    if defer_until is not None:
        return max(to_unix_ms(defer_until), enqueued_ms)
    if defer_by is not None:
        seconds = (
            defer_by.total_seconds() if isinstance(defer_by, timedelta) else defer_by
        )
        return enqueued_ms + max(round(seconds * 1000), 0)
    return enqueued_ms


def _script_arguments(
    pool: ArqRedis, job: PendingJob, enqueued_ms: int
) -> tuple[list[str], list[Any]]:
    """Return the keys and arguments of ``_ENQUEUE_SCRIPT`` that add ``job``."""
    job_id = job.job_id or uuid.uuid4().hex
    kwargs = dict(job.kwargs)
    start_ms = _start_ms(kwargs, enqueued_ms)
    if job.request_id is not None:
        kwargs[REQUEST_ID_KWARG] = job.request_id
    payload = serialize_job(
        job.function,
        job.args,
        kwargs,
        None,
        enqueued_ms,
        serializer=pool.job_serializer,
    )
    # As arq does, the job key outlives the start time by expires_extra_ms.
    expires_ms = start_ms - enqueued_ms + pool.expires_extra_ms
    keys = [job_key_prefix + job_id, result_key_prefix + job_id, QUEUE_NAME]
    if job.unless_queued is not None:
        keys.append(job_key_prefix + job.unless_queued)
    return keys, [expires_ms, payload, start_ms, job_id]


JobFunction = TypeVar("JobFunction", bound=Callable[..., Awaitable[Any]])


def with_request_id(function: JobFunction) -> JobFunction:
    """Wrap a job so that it runs with the request id it was queued with.

    The id goes into the job's ``ctx`` as ``request_id``, where the worker's unit of
    work binds it to the log context, so the job's events and log lines carry it.
    """

    @functools.wraps(function)
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        request_id = kwargs.pop(REQUEST_ID_KWARG, None)
        if request_id is not None:
            ctx["request_id"] = request_id
        return await function(ctx, *args, **kwargs)

    return cast(JobFunction, run)


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
        self._connecting = asyncio.Lock()

    async def pool(self) -> ArqRedis:
        if self._pool is not None:
            return self._pool
        async with self._connecting:
            if self._pool is None:
                self._pool = await self._connect()
        return self._pool

    async def _connect(self) -> ArqRedis:
        # redis-py's default ConnectionPool (5.3) keeps one lock while it health-checks
        # each connection it hands out, and the check waits for a turn of the event
        # loop. With many requests in flight, enqueues then queue behind each other for
        # hundreds of milliseconds. BlockingConnectionPool checks outside its lock.
        connections = BlockingConnectionPool.from_url(
            self.url,
            max_connections=MAX_CONNECTIONS,
            timeout=CONNECT_TIMEOUT_SECONDS,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        )
        pool = ArqRedis(connections, default_queue_name=QUEUE_NAME)
        # Closing the client closes its connections too, as with a pool of its own.
        pool.auto_close_connection_pool = True
        try:
            await pool.ping()
        except BaseException:
            await pool.aclose()
            raise
        return pool

    async def enqueue(self, job: PendingJob) -> bool:
        """Add ``job`` unless its id is taken; return False if Redis failed (logged)."""
        try:
            pool = await self.pool()
            # register_script only hashes the text; Redis caches the script by hash.
            enqueue_script = pool.register_script(_ENQUEUE_SCRIPT)
            keys, args = _script_arguments(pool, job, timestamp_ms())
            await enqueue_script(keys=keys, args=args)
        except Exception as error:
            log.warning(
                "job.enqueue_failed",
                function=job.function,
                job_id=job.job_id,
                error=repr(error),
            )
            await self._reset()
            return False
        return True

    async def enqueue_many(self, jobs: list[PendingJob]) -> None:
        """Enqueue ``jobs`` in one pipeline: two round trips however many there are.

        The first round trip checks that Redis has the script cached. Each job is
        added or skipped on its own, as ``enqueue`` does.
        """
        if len(jobs) <= 1:
            for job in jobs:
                await self.enqueue(job)
            return
        try:
            pool = await self.pool()
            enqueue_script = pool.register_script(_ENQUEUE_SCRIPT)
            enqueued_ms = timestamp_ms()
            async with pool.pipeline(transaction=False) as pipe:
                for job in jobs:
                    keys, args = _script_arguments(pool, job, enqueued_ms)
                    await enqueue_script(keys=keys, args=args, client=pipe)
                results = await pipe.execute(raise_on_error=False)
        except Exception as error:
            log.warning(
                "job.enqueue_failed",
                function=jobs[0].function,
                job_id=jobs[0].job_id,
                count=len(jobs),
                error=repr(error),
            )
            await self._reset()
            return
        for job, result in zip(jobs, results, strict=True):
            if isinstance(result, Exception):
                log.warning(
                    "job.enqueue_failed",
                    function=job.function,
                    job_id=job.job_id,
                    error=repr(result),
                )

    async def send_pending(self, session: AsyncSession) -> None:
        """Enqueue every job deferred on ``session``; call only after it committed."""
        await self.enqueue_many(take_pending_jobs(session))

    async def ready_count(self) -> int | None:
        """Count the queued jobs whose start time has come, running ones included.

        Returns None when Redis cannot be reached.
        """
        try:
            pool = await self.pool()
            return int(await pool.zcount(QUEUE_NAME, "-inf", timestamp_ms()))
        except Exception as error:
            log.warning("job.queue_count_failed", error=repr(error))
            await self._reset()
            return None

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
