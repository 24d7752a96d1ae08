"""The events of the webhook workload, committed by a process of their own.

``python -m benchmarks.webhook_producer JOB TIMES`` reads a JSON document from ``JOB``.
It names the database and Redis URLs, the workspace and the number of events. It also
has ``batch``, the events per commit, emitted one by one with ``emit`` as fast as
possible, or ``rate``, the events a second, inserted together every
``PACE_TICK_SECONDS``. The producer prints ``committed`` on standard output as soon
as the first commit ends, so that the caller can start its CPU counters there. Once
every event is committed it writes to ``TIMES`` the Unix time at which each event was
committed (``committed_at``), when it began (``began``), when the first and the last
commit ended (``first``, ``last``) and the CPU seconds it used between them
(``cpu_seconds``). Then it keeps its database connections until its standard input
is closed: the caller reads PostgreSQL's CPU time first, while the server processes
of those connections still count.

It runs apart from the receiver's process so that committing events never delays the
receiver's answers: the bare loop's requests meet a receiver with nothing else to do,
and so do the worker's.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import insert

from app.core.db import Database, defer_job
from app.core.events import DISPATCH_JOB, emit
from app.core.ids import new_uuid
from app.core.jobs import JobQueue
from app.core.logging import configure_logging
from app.models import Event, UndispatchedEvent
from app.settings import Settings
from benchmarks.bare_webhooks import loop_factory
from workers import tasks

# How often the paced run commits the events whose time has come.
PACE_TICK_SECONDS = 0.01
EVENT_DATA = {"email": "ada@example.com", "status": "working"}


async def emit_each(
    ctx: dict[str, Any], workspace_id: uuid.UUID, count: int
) -> list[uuid.UUID]:
    """Emit ``count`` events one by one with ``emit``, in one commit."""
    event_ids = []
    async with tasks.unit_of_work(ctx) as session:
        for _ in range(count):
            event = await emit(
                session,
                workspace_id=workspace_id,
                type="lead.updated",
                object_type="lead",
                object_id=new_uuid(),
                data=EVENT_DATA,
            )
            event_ids.append(event.id)
    return event_ids


async def emit_bulk(
    ctx: dict[str, Any], workspace_id: uuid.UUID, count: int
) -> list[uuid.UUID]:
    """Insert ``count`` events and commit them, with one dispatch job.

    The rows are those ``emit`` writes for a new object (sequence 1), with their places
    in the dispatch queue. ``emit`` costs
    this process about 2.5 ms of CPU an event (an estimate from earlier runs), which
    caps it near 400 events a second. One multi-row insert lets it commit at the bare
    loop's rate. The one
    ``dispatch_event`` job wakes the worker's loop, which dispatches the whole batch.
    """
    event_ids = [new_uuid() for _ in range(count)]
    async with tasks.unit_of_work(ctx) as session:
        await session.execute(
            insert(Event),
            [
                {
                    "id": event_id,
                    "workspace_id": workspace_id,
                    "type": "lead.updated",
                    "object_type": "lead",
                    "object_id": new_uuid(),
                    "sequence": 1,
                    "data": EVENT_DATA,
                }
                for event_id in event_ids
            ],
        )
        await session.execute(
            insert(UndispatchedEvent),
            [{"event_id": event_id} for event_id in event_ids],
        )
        defer_job(
            session, DISPATCH_JOB, str(event_ids[0]), job_id=f"dispatch:{event_ids[0]}"
        )
    return event_ids


class Commits:
    """The commit time of each event, and of the first and the last commit, and this
    process's CPU time at each."""

    def __init__(self) -> None:
        self.committed_at: dict[str, float] = {}
        self.first: float | None = None
        self.last = 0.0
        self.cpu_at_first = 0.0
        self.cpu_at_last = 0.0

    def add(self, event_ids: list[uuid.UUID]) -> None:
        now = time.time()
        self.cpu_at_last = time.process_time()
        if self.first is None:
            self.first = now
            self.cpu_at_first = self.cpu_at_last
            # The caller starts its CPU counters on this line.
            print("committed", flush=True)
        self.last = now
        self.committed_at.update((str(event_id), now) for event_id in event_ids)


async def produce(job: dict[str, Any], target: Path) -> None:
    """Commit the job's events as the job requests, and write when each was
    committed to ``target``. Then wait until standard input is closed."""
    settings = Settings(
        database_url=job["database_url"],
        redis_url=job["redis_url"],
        log_level="WARNING",
    )
    database = Database(settings)
    queue = JobQueue(settings.redis_url)
    ctx = {"db": database, "queue": queue, "settings": settings}
    workspace_id = uuid.UUID(job["workspace_id"])
    events: int = job["events"]
    rate: float | None = job.get("rate")
    commits = Commits()
    began = time.time()
    try:
        if rate is None:
            batch: int = job["batch"]
            for start in range(0, events, batch):
                count = min(batch, events - start)
                commits.add(await emit_each(ctx, workspace_id, count))
        else:
            emitted = 0
            while emitted < events:
                # Commit every event whose time has come, however many that is, so
                # a slow commit is caught up by the next one instead of lowering
                # the rate.
                due = min(events, int((time.time() - began) * rate) + 1)
                commits.add(await emit_bulk(ctx, workspace_id, due - emitted))
                emitted = due
                wait = max(PACE_TICK_SECONDS, began + emitted / rate - time.time())
                await asyncio.sleep(min(wait, PACE_TICK_SECONDS * 5))
        report = {
            "committed_at": commits.committed_at,
            "began": began,
            "first": commits.first,
            "last": commits.last,
            "cpu_seconds": commits.cpu_at_last - commits.cpu_at_first,
        }
        await asyncio.to_thread(target.write_bytes, orjson.dumps(report))
        await asyncio.to_thread(sys.stdin.buffer.read)
    finally:
        await queue.close()
        await database.dispose()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m benchmarks.webhook_producer JOB TIMES", file=sys.stderr)
        return 2
    source, target = Path(argv[0]), Path(argv[1])
    job = orjson.loads(source.read_bytes())
    configure_logging("console", "WARNING")
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(produce(job, target))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
