"""One run of the harness: prepare the stores, run every workload, build the report."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path

import asyncpg

from app.core.jobs import JobQueue
from app.core.logging import configure_logging
from app.settings import Settings
from benchmarks.api import run_api_benchmarks, workloads
from benchmarks.config import BenchConfig
from benchmarks.conversion import ConversionSummary, measure_conversion
from benchmarks.environment import (
    BenchServers,
    asyncpg_dsn,
    bench_servers,
    claim_redis,
    release_redis,
)
from benchmarks.imports import measure_import
from benchmarks.jobs import JobLatency, measure_job_latency
from benchmarks.nurture import NurtureSummary, measure_nurture
from benchmarks.report import Machine, Report, build_report
from benchmarks.seed import prepare_schema, seed
from benchmarks.stripe_ingest import StripeSummary, measure_stripe

TUNED = "tuned (settings)"
BASELINE = "arq default"


async def _with_redis(servers: BenchServers, claim: bool) -> None:
    queue = JobQueue(servers.redis_url)
    try:
        client = await queue.pool()
        await (claim_redis(client) if claim else release_redis(client))
    finally:
        await queue.close()


async def _postgres_version(servers: BenchServers) -> str:
    connection = await asyncpg.connect(asyncpg_dsn(servers.database_url))
    try:
        version: str = await connection.fetchval("SHOW server_version")
        return version.split(" ")[0]
    finally:
        await connection.close()


async def _measure(
    config: BenchConfig,
    servers: BenchServers,
    log_dir: Path,
    progress: Callable[[str], None],
) -> Report:
    progress(f"seeding {config.leads} leads")
    seeded = await seed(
        servers.database_url, leads=config.leads, sample_ids=config.sample_ids
    )
    measurements = await run_api_benchmarks(config, servers, seeded, log_dir, progress)

    tuned_delay = (
        config.tuned_poll_delay_seconds or Settings().worker_poll_delay_seconds
    )
    jobs: list[JobLatency] = []
    for label, delay in (
        (TUNED, tuned_delay),
        (BASELINE, config.baseline_poll_delay_seconds),
    ):
        progress(f"timing {config.jobs} job starts, {label}, poll {delay:g} s")
        jobs.append(
            await measure_job_latency(
                servers,
                label=label,
                poll_delay_seconds=delay,
                jobs=config.jobs,
                rate_per_second=config.job_rate_per_second,
                log_dir=log_dir,
            )
        )

    imports = await measure_import(
        servers.database_url,
        rows=config.import_rows,
        rounds=config.import_rounds,
        ratio_target=config.targets.import_ratio,
        progress=progress,
    )
    nurture = await _measure_nurture(config, servers, log_dir, progress)
    conversion = await _measure_conversion(config, servers, progress)
    stripe = await _measure_stripe(config, servers, log_dir, progress)

    machine = Machine.detect(await _postgres_version(servers))
    return build_report(
        config,
        machine,
        workloads(config),
        measurements,
        jobs,
        tuned_label=TUNED,
        imports=imports,
        nurture=nurture,
        conversion=conversion,
        stripe=stripe,
    )


async def _measure_stripe(
    config: BenchConfig,
    servers: BenchServers,
    log_dir: Path,
    progress: Callable[[str], None],
) -> StripeSummary:
    return await measure_stripe(
        servers,
        events=config.stripe_events,
        concurrency=config.concurrency,
        timeout_seconds=config.stripe_timeout_seconds,
        ratio_target=config.targets.stripe_ratio,
        log_dir=log_dir,
        progress=progress,
    )


async def _measure_conversion(
    config: BenchConfig, servers: BenchServers, progress: Callable[[str], None]
) -> ConversionSummary:
    return await measure_conversion(
        servers,
        leads=config.conversion_leads,
        ratio_target=config.targets.conversion_ratio,
        progress=progress,
    )


async def _measure_nurture(
    config: BenchConfig,
    servers: BenchServers,
    log_dir: Path,
    progress: Callable[[str], None],
) -> NurtureSummary:
    return await measure_nurture(
        servers,
        enrollments=config.nurture_enrollments,
        timeout_seconds=config.nurture_timeout_seconds,
        ratio_target=config.targets.nurture_ratio,
        log_dir=log_dir,
        progress=progress,
    )


def run(
    config: BenchConfig,
    *,
    servers: BenchServers | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> Report:
    """Run every workload of ``config`` on ``servers``, or on the configured ones."""
    if servers is None:
        with bench_servers() as configured:
            return run(config, servers=configured, progress=progress)

    claim_and_prepare(servers, progress)
    try:
        with tempfile.TemporaryDirectory(prefix="salescycle-bench-") as log_dir:
            return asyncio.run(_measure(config, servers, Path(log_dir), progress))
    finally:
        release(servers)


def run_imports(
    config: BenchConfig,
    *,
    servers: BenchServers | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> Report:
    """Run only the CSV import workload of ``config``."""
    if servers is None:
        with bench_servers() as configured:
            return run_imports(config, servers=configured, progress=progress)

    claim_and_prepare(servers, progress)
    try:
        return asyncio.run(_measure_imports(config, servers, progress))
    finally:
        release(servers)


async def _measure_imports(
    config: BenchConfig, servers: BenchServers, progress: Callable[[str], None]
) -> Report:
    imports = await measure_import(
        servers.database_url,
        rows=config.import_rows,
        rounds=config.import_rounds,
        ratio_target=config.targets.import_ratio,
        progress=progress,
    )
    machine = Machine.detect(await _postgres_version(servers))
    return build_report(config, machine, [], [], [], tuned_label=TUNED, imports=imports)


def run_nurture(
    config: BenchConfig,
    *,
    servers: BenchServers | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> Report:
    """Run only the nurture workload of ``config``."""
    if servers is None:
        with bench_servers() as configured:
            return run_nurture(config, servers=configured, progress=progress)

    claim_and_prepare(servers, progress)
    try:
        with tempfile.TemporaryDirectory(prefix="salescycle-bench-") as log_dir:
            return asyncio.run(
                _measure_nurture_only(config, servers, Path(log_dir), progress)
            )
    finally:
        release(servers)


async def _measure_nurture_only(
    config: BenchConfig,
    servers: BenchServers,
    log_dir: Path,
    progress: Callable[[str], None],
) -> Report:
    nurture = await _measure_nurture(config, servers, log_dir, progress)
    machine = Machine.detect(await _postgres_version(servers))
    return build_report(config, machine, [], [], [], tuned_label=TUNED, nurture=nurture)


def run_conversion(
    config: BenchConfig,
    *,
    servers: BenchServers | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> Report:
    """Run only the conversion workload of ``config``."""
    if servers is None:
        with bench_servers() as configured:
            return run_conversion(config, servers=configured, progress=progress)

    claim_and_prepare(servers, progress)
    try:
        return asyncio.run(_measure_conversion_only(config, servers, progress))
    finally:
        release(servers)


async def _measure_conversion_only(
    config: BenchConfig, servers: BenchServers, progress: Callable[[str], None]
) -> Report:
    conversion = await _measure_conversion(config, servers, progress)
    machine = Machine.detect(await _postgres_version(servers))
    return build_report(
        config, machine, [], [], [], tuned_label=TUNED, conversion=conversion
    )


def run_stripe(
    config: BenchConfig,
    *,
    servers: BenchServers | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> Report:
    """Run only the Stripe webhook workload of ``config``."""
    if servers is None:
        with bench_servers() as configured:
            return run_stripe(config, servers=configured, progress=progress)

    claim_and_prepare(servers, progress)
    try:
        with tempfile.TemporaryDirectory(prefix="salescycle-bench-") as log_dir:
            return asyncio.run(
                _measure_stripe_only(config, servers, Path(log_dir), progress)
            )
    finally:
        release(servers)


async def _measure_stripe_only(
    config: BenchConfig,
    servers: BenchServers,
    log_dir: Path,
    progress: Callable[[str], None],
) -> Report:
    stripe = await _measure_stripe(config, servers, log_dir, progress)
    machine = Machine.detect(await _postgres_version(servers))
    return build_report(config, machine, [], [], [], tuned_label=TUNED, stripe=stripe)


def claim_and_prepare(
    servers: BenchServers, progress: Callable[[str], None] = lambda message: None
) -> None:
    """Take over the Redis database and rebuild the schema of the benchmark database."""
    configure_logging("console", "WARNING")
    asyncio.run(_with_redis(servers, claim=True))
    progress("migrating the benchmark database")
    prepare_schema(servers.database_url)


def release(servers: BenchServers) -> None:
    asyncio.run(_with_redis(servers, claim=False))
