from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
import structlog
from arq.worker import Worker, func
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import PendingJob, defer_job
from app.core.jobs import QUEUE_NAME, JobQueue, with_request_id


async def _run_burst(queue: JobQueue, functions: list[Any]) -> None:
    worker = Worker(
        functions=functions,
        redis_pool=await queue.pool(),
        queue_name=QUEUE_NAME,
        burst=True,
        poll_delay=0.01,
        handle_signals=False,
        keep_result=60,
    )
    await worker.main()


class TestEnqueue:
    async def test_job_runs_on_arq_worker(self, queue: JobQueue) -> None:
        calls: list[tuple[Any, ...]] = []

        async def record(ctx: dict[str, Any], name: str, *, count: int) -> None:
            calls.append((name, count, ctx["job_id"], ctx["job_try"]))

        await queue.enqueue(
            PendingJob("record", ("lead",), job_id="record:1", kwargs={"count": 3})
        )
        await _run_burst(queue, [func(record, name="record")])

        assert calls == [("lead", 3, "record:1", 1)]

    async def test_deferred_until_scored_at_start(
        self, queue: JobQueue, redis_client: aioredis.Redis
    ) -> None:
        start = datetime.now(UTC) + timedelta(hours=1)

        await queue.enqueue(
            PendingJob(
                "record",
                ("lead",),
                job_id="record:later",
                kwargs={"_defer_until": start},
            )
        )

        score = await redis_client.zscore(QUEUE_NAME, "record:later")
        assert score == round(start.timestamp() * 1000)
        assert await redis_client.pttl("arq:job:record:later") > 3_600_000

    async def test_deferred_by_not_a_kwarg(self, queue: JobQueue) -> None:
        calls: list[dict[str, Any]] = []

        async def record(ctx: dict[str, Any], name: str, **kwargs: Any) -> None:
            calls.append(kwargs)

        await queue.enqueue(
            PendingJob(
                "record", ("lead",), job_id="record:soon", kwargs={"_defer_by": 0.05}
            )
        )
        await _run_burst(queue, [func(record, name="record")])

        assert calls == [{}]

    async def test_same_id_queued_once(
        self, queue: JobQueue, redis_client: aioredis.Redis
    ) -> None:
        job = PendingJob("record", ("lead",), job_id="record:2")

        await queue.enqueue(job)
        await queue.enqueue(job)

        assert await redis_client.zcard(QUEUE_NAME) == 1
        assert await redis_client.pttl("arq:job:record:2") > 0

    async def test_finished_id_not_queued_again(
        self, queue: JobQueue, redis_client: aioredis.Redis
    ) -> None:
        async def record(ctx: dict[str, Any]) -> None:
            return None

        job = PendingJob("record", (), job_id="record:3")
        await queue.enqueue(job)
        await _run_burst(queue, [func(record, name="record")])

        await queue.enqueue(job)

        assert await redis_client.exists("arq:result:record:3") == 1
        assert await redis_client.zcard(QUEUE_NAME) == 0

    async def test_generated_id_without_one(
        self, queue: JobQueue, redis_client: aioredis.Redis
    ) -> None:
        await queue.enqueue(PendingJob("record", ()))

        queued = await redis_client.zrange(QUEUE_NAME, 0, -1)
        assert len(queued) == 1
        assert len(queued[0]) == 32

    async def test_unreachable_redis_does_not_raise(self) -> None:
        queue = JobQueue("redis://127.0.0.1:1/0")

        await queue.enqueue(PendingJob("record", ()))

        assert await queue.ping() is False
        await queue.close()


class TestEnqueueMany:
    async def test_batch_runs_each_job_once(
        self, queue: JobQueue, redis_client: aioredis.Redis
    ) -> None:
        calls: list[str] = []

        async def record(ctx: dict[str, Any], name: str) -> None:
            calls.append(name)

        await queue.enqueue(PendingJob("record", ("a",), job_id="record:a"))
        await queue.enqueue_many(
            [
                PendingJob("record", ("a",), job_id="record:a"),
                PendingJob("record", ("b",), job_id="record:b"),
                PendingJob("record", ("c",), job_id="record:c"),
                PendingJob("record", ("c",), job_id="record:c"),
            ]
        )
        queued = sorted(await redis_client.zrange(QUEUE_NAME, 0, -1))
        await _run_burst(queue, [func(record, name="record")])

        assert queued == [b"record:a", b"record:b", b"record:c"]
        assert sorted(calls) == ["a", "b", "c"]

    async def test_batch_keeps_start_times(
        self, queue: JobQueue, redis_client: aioredis.Redis
    ) -> None:
        start = datetime.now(UTC) + timedelta(hours=1)

        await queue.enqueue_many(
            [
                PendingJob("record", (), job_id="record:now"),
                PendingJob(
                    "record",
                    (),
                    job_id="record:later",
                    kwargs={"_defer_until": start},
                ),
            ]
        )

        assert await redis_client.zscore(QUEUE_NAME, "record:later") == round(
            start.timestamp() * 1000
        )
        assert await queue.ready_count() == 1

    async def test_unless_queued_skips_while_other_waits(
        self, queue: JobQueue, redis_client: aioredis.Redis
    ) -> None:
        async def record(ctx: dict[str, Any]) -> None:
            return None

        await queue.enqueue(PendingJob("record", (), job_id="record:first"))
        second = PendingJob(
            "record", (), job_id="record:second", unless_queued="record:first"
        )

        await queue.enqueue(second)
        skipped = await redis_client.zrange(QUEUE_NAME, 0, -1)
        await _run_burst(queue, [func(record, name="record")])
        await queue.enqueue(second)

        assert skipped == [b"record:first"]
        assert await redis_client.zrange(QUEUE_NAME, 0, -1) == [b"record:second"]

    async def test_unreachable_redis_does_not_raise(self) -> None:
        queue = JobQueue("redis://127.0.0.1:1/0")

        await queue.enqueue_many(
            [PendingJob("record", ()), PendingJob("record", ("b",))]
        )

        assert await queue.ready_count() is None
        await queue.close()


class TestRequestId:
    async def test_deferred_job_runs_with_the_request_id(
        self, queue: JobQueue, session: AsyncSession
    ) -> None:
        calls: list[tuple[Any, ...]] = []

        async def record(ctx: dict[str, Any], name: str, **kwargs: Any) -> None:
            calls.append((name, kwargs, ctx.get("request_id")))

        structlog.contextvars.bind_contextvars(request_id="req-9")
        try:
            job = defer_job(session, "record", "lead", job_id="record:req")
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
        await queue.enqueue(job)
        await _run_burst(queue, [func(with_request_id(record), name="record")])

        assert job.request_id == "req-9"
        assert calls == [("lead", {}, "req-9")]

    async def test_job_outside_a_request_has_none(
        self, queue: JobQueue, session: AsyncSession
    ) -> None:
        calls: list[tuple[Any, ...]] = []

        async def record(ctx: dict[str, Any], name: str, **kwargs: Any) -> None:
            calls.append((name, kwargs, ctx.get("request_id")))

        job = defer_job(session, "record", "lead", job_id="record:plain", count=2)
        await queue.enqueue(job)
        await _run_burst(queue, [func(with_request_id(record), name="record")])

        assert job.request_id is None
        assert calls == [("lead", {"count": 2}, None)]
