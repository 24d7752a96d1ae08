"""Job start latency: from the commit that defers a job to the job starting.

Each sample follows the path of a request: a session runs a statement, defers
``bench_job_started`` with ``defer_job``, commits, and ``JobQueue.send_pending`` hands
the job to arq. The time runs from the end of the commit to the first line of the job
in the worker process. Jobs are deferred at random intervals averaging
``job_rate_per_second``, so they arrive at random points of the poll cycle and never
queue up behind each other.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from arq.connections import ArqRedis
from sqlalchemy import text

from app.core.db import Database, defer_job
from app.core.jobs import JobQueue
from app.settings import Settings
from benchmarks.environment import BenchServers, app_env
from benchmarks.load import percentile
from benchmarks.servers import log_tail, start_process
from benchmarks.worker import BENCH_JOB, STARTS_KEY

WORKER_READY_TIMEOUT_SECONDS = 60.0
# How long the last jobs may take to start, on top of a few poll delays.
DRAIN_MARGIN_SECONDS = 10.0


class JobsFailed(RuntimeError):
    """Some deferred jobs never started."""


@dataclass(frozen=True)
class JobLatency:
    """Start latencies of one worker configuration, in milliseconds."""

    label: str
    poll_delay_seconds: float
    jobs: int
    p50_ms: float
    p95_ms: float
    max_ms: float


async def _commit_with_job(
    database: Database, queue: JobQueue, number: int, run_id: str
) -> float:
    async with database.session() as session:
        await session.execute(text("SELECT 1"))
        defer_job(session, BENCH_JOB, number, job_id=f"bench:{run_id}:{number}")
        await session.commit()
        committed = time.monotonic()
    await queue.send_pending(session)
    return committed


async def _take_starts(
    redis: ArqRedis, numbers: range, seconds: float
) -> dict[int, float]:
    """Pop start records until each job in ``numbers`` has one, within ``seconds``.

    A record of another number, such as a second start of the warm-up job, is
    dropped, so that it cannot take the place of a job that has not started yet.
    """
    starts: dict[int, float] = {}
    try:
        async with asyncio.timeout(seconds):
            while len(starts) < len(numbers):
                entry = await cast(
                    Awaitable[list[bytes] | None], redis.blpop([STARTS_KEY], timeout=1)
                )
                if entry is None:
                    continue
                number, _, started_at = entry[1].decode().partition(" ")
                if int(number) in numbers:
                    starts.setdefault(int(number), float(started_at))
    except TimeoutError:
        raise JobsFailed(
            f"{len(starts)} of {len(numbers)} jobs started within {seconds:.0f} s"
        ) from None
    return starts


async def measure_job_latency(
    servers: BenchServers,
    *,
    label: str,
    poll_delay_seconds: float,
    jobs: int,
    rate_per_second: float,
    log_dir: Path,
) -> JobLatency:
    """Run a worker with ``poll_delay_seconds`` and time ``jobs`` jobs through it."""
    settings = Settings(
        database_url=servers.database_url,
        redis_url=servers.redis_url,
        database_pool_size=2,
    )
    database = Database(settings)
    queue = JobQueue(servers.redis_url)
    redis = await queue.pool()
    await redis.delete(STARTS_KEY)
    worker = await start_process(
        f"worker-{label}",
        [
            sys.executable,
            "-m",
            "benchmarks.worker",
            "--poll-delay",
            repr(poll_delay_seconds),
        ],
        app_env(servers),
        log_dir,
    )
    rng = random.Random(jobs)
    run_id = secrets.token_hex(4)
    commits: dict[int, float] = {}
    try:
        # The first job shows that the worker is polling; it is not counted.
        await _commit_with_job(database, queue, 0, run_id)
        await _take_starts(redis, range(1), WORKER_READY_TIMEOUT_SECONDS)
        for number in range(1, jobs + 1):
            await asyncio.sleep(rng.expovariate(rate_per_second))
            commits[number] = await _commit_with_job(database, queue, number, run_id)
        starts = await _take_starts(
            redis, range(1, jobs + 1), 4 * poll_delay_seconds + DRAIN_MARGIN_SECONDS
        )
    except JobsFailed as error:
        raise JobsFailed(
            f"{error}; worker output:\n{log_tail(worker.log_path)}"
        ) from None
    finally:
        await worker.stop()
        await queue.close()
        await database.dispose()

    latencies = sorted(
        (starts[number] - committed) * 1000 for number, committed in commits.items()
    )
    return JobLatency(
        label=label,
        poll_delay_seconds=poll_delay_seconds,
        jobs=len(latencies),
        p50_ms=round(percentile(latencies, 0.50), 2),
        p95_ms=round(percentile(latencies, 0.95), 2),
        max_ms=round(latencies[-1], 2) if latencies else 0.0,
    )
