"""Settings of one harness run, and the targets it reports against."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Targets:
    """The figures the full stack should reach; reported as met or missed, never asserted."""

    get_ratio: float = 0.6
    post_ratio: float = 0.7
    peak_rss_mb: float = 150.0
    job_start_p95_ms: float = 100.0
    import_ratio: float = 0.25
    nurture_ratio: float = 0.5
    conversion_ratio: float = 0.4
    stripe_ratio: float = 0.4


@dataclass(frozen=True)
class BenchConfig:
    """Sizes, durations and bounds of one run."""

    leads: int = 100_000
    # How many seeded lead ids the GET workload picks from at random.
    sample_ids: int = 10_000
    concurrency: int = 32
    warmup_seconds: float = 2.0
    duration_seconds: float = 6.0
    # Upper bound on measured requests per run, in case a server is far faster than
    # expected; the duration bounds the run as well.
    max_requests: int = 500_000
    # Each round runs bare and full once, in alternating order (bare first, then full
    # first), so a drift of the machine during the run hits both alike.
    rounds: int = 3
    workers: int = 1
    jobs: int = 200
    # Jobs are deferred at random intervals averaging this rate, far below what the
    # worker can run, so each job finds an idle worker.
    job_rate_per_second: float = 10.0
    tuned_poll_delay_seconds: float | None = None
    baseline_poll_delay_seconds: float = 0.5
    # Rows of the CSV import workload, imported once per round of its own.
    import_rows: int = 100_000
    import_rounds: int = 3
    # Enrollments of the nurture workload, all due at once, each sending one email.
    nurture_enrollments: int = 10_000
    # Bound on each run of the nurture workload (the worker's and each bare one's),
    # from the start of its process. A run that takes longer fails the benchmark.
    nurture_timeout_seconds: float = 1800.0
    # Leads of the conversion workload, each converted and moved through to won, in
    # each of the bare run before, the full run and the bare run after.
    conversion_leads: int = 1_000
    # Deliveries of the Stripe workload in each of its three runs: half as many
    # distinct events, each delivered twice, and one open invoice per event.
    stripe_events: int = 10_000
    # Bound on each delivery run of the Stripe workload and, in the full run, on the
    # time until the worker applied every event. A run that takes longer fails.
    stripe_timeout_seconds: float = 300.0
    targets: Targets = Targets()

    def smoke(self) -> BenchConfig:
        """Shrink the run to a few requests and jobs, to check that the harness works."""
        return replace(
            self,
            leads=200,
            sample_ids=50,
            concurrency=4,
            warmup_seconds=0.2,
            duration_seconds=0.5,
            max_requests=200,
            rounds=1,
            jobs=5,
            job_rate_per_second=50.0,
            import_rows=200,
            import_rounds=1,
            nurture_enrollments=50,
            nurture_timeout_seconds=120.0,
            conversion_leads=10,
            stripe_events=40,
            stripe_timeout_seconds=120.0,
        )


def positive_int(text: str) -> int:
    """Parse a command-line count of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value
