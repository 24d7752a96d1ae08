"""The arq worker of the job benchmark: ``python -m benchmarks.worker --poll-delay S``.

It is the worker ``workers.settings.worker_settings()`` builds, with one more function,
``bench_job_started``, which records the moment it starts. Only the poll delay differs
between the tuned run and the baseline.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from arq.worker import Worker, func

from workers.settings import worker_settings

BENCH_JOB = "bench_job_started"
STARTS_KEY = "salescycle-bench:job-starts"


async def bench_job_started(ctx: dict[str, Any], number: int) -> None:
    """Push ``<number> <start time>`` to a Redis list; the time is ``time.monotonic()``.

    On Linux ``time.monotonic()`` reads ``CLOCK_MONOTONIC``, which every process of the
    machine shares, so the harness can subtract its own readings from it.
    """
    started = time.monotonic()
    await ctx["redis"].rpush(STARTS_KEY, f"{number} {started!r}")


def build_worker(poll_delay_seconds: float) -> Worker:
    options = worker_settings()
    options["functions"] = [
        *options["functions"],
        func(bench_job_started, name=BENCH_JOB),
    ]
    options["poll_delay"] = poll_delay_seconds
    return Worker(**options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--poll-delay",
        type=float,
        required=True,
        help="Seconds the worker sleeps between polls of the queue.",
    )
    arguments = parser.parse_args()
    build_worker(arguments.poll_delay).run()


if __name__ == "__main__":
    main()
