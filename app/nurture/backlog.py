"""How many due enrollments one sweep may lease, from the length of the job queue.

A sweep leases each enrollment it queues a job for, for ``step_lease_seconds``. When
the queue already holds more work than the workers can start within that lease, the
leases lapse before their jobs run, and the next sweep leases the same enrollments
again. The sweep therefore only tops the queue up to a backlog of a few batches per
job slot.
"""

from __future__ import annotations

import structlog

from app.core.jobs import JobQueue
from app.settings import Settings

log = structlog.get_logger(__name__)

# The ready jobs a sweep tops the queue up to, per job a worker runs at once. At 50
# slots that is 200 jobs, which a worker sending 10 emails a second starts within 20 s,
# well inside the default step lease of 45 s. The next sweep, seconds later, tops it up.
BACKLOG_PER_JOB_SLOT = 4


async def sweep_limit(queue: JobQueue, settings: Settings) -> int:
    """Return how many due enrollments a sweep may lease now; 0 when Redis is down."""
    ready = await queue.ready_count()
    if ready is None:
        # Jobs could not be queued either, and leasing rows without a job only
        # delays them until the lease lapses.
        return 0
    backlog = settings.worker_max_jobs * BACKLOG_PER_JOB_SLOT
    limit = max(backlog - ready, 0)
    if limit == 0:
        log.info("enrollment.sweep_deferred", ready_jobs=ready, backlog=backlog)
    return limit
