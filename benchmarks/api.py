"""The HTTP workloads: the full stack and the bare baseline, driven alternately."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from app.core import ids
from app.settings import Settings
from benchmarks.config import BenchConfig
from benchmarks.environment import BenchServers, app_env, asyncpg_dsn
from benchmarks.load import LoadResult, LoadSpec
from benchmarks.seed import Seed
from benchmarks.servers import (
    ROOT,
    RssSampler,
    Server,
    start_uvicorn,
    tree_cpu_seconds,
)

FULL = "full"
BARE = "bare"
LOAD_TIMEOUT_MARGIN_SECONDS = 60.0
POST_BODY = (
    '{"email": "bench-{tag}-{n}@example.com", "first_name": "Ada", '
    '"last_name": "Lovelace", "company": "Analytical Engines", "title": "Analyst", '
    '"source": "api", "attributes": {"plan": "pro"}}'
)


class LoadFailed(RuntimeError):
    """The load generator failed, or a server returned an unexpected status."""


@dataclass(frozen=True)
class Workload:
    """One kind of request, and the ratio of full to bare it should reach."""

    key: str
    title: str
    method: str
    expected_status: int
    ratio_target: float


@dataclass(frozen=True)
class Measurement:
    """One run of one workload against one server."""

    workload: str
    target: str
    round: int
    load: LoadResult
    peak_rss_mb: float
    # Server CPU time over every request of the run, warm-up included: unlike
    # latency, it barely moves when other processes compete for the cores.
    cpu_ms_per_request: float


def workloads(config: BenchConfig) -> list[Workload]:
    return [
        Workload("get", "GET /v1/leads/{id}", "GET", 200, config.targets.get_ratio),
        Workload("post", "POST /v1/leads", "POST", 201, config.targets.post_ratio),
    ]


def connection_limit() -> int:
    """Return how many connections the full stack's default pool can open at once."""
    settings = Settings()
    return settings.database_pool_size + settings.database_max_overflow


def full_env(servers: BenchServers) -> dict[str, str]:
    """Keep every connection the full stack opens, as the bare app's pool does.

    With the default settings SQLAlchemy keeps 10 connections and closes each of the
    10 overflow ones as soon as it is returned, so 32 connections of load would
    measure a new PostgreSQL connection every few requests instead of the stack.
    """
    return {
        **app_env(servers),
        "SALESCYCLE_DATABASE_POOL_SIZE": str(connection_limit()),
        "SALESCYCLE_DATABASE_MAX_OVERFLOW": "0",
    }


def bare_env(servers: BenchServers, seed: Seed) -> dict[str, str]:
    """Give the bare app as many connections as the full stack's pool can open."""
    return {
        "BENCH_BARE_DATABASE_DSN": asyncpg_dsn(servers.database_url),
        "BENCH_BARE_WORKSPACE_ID": str(seed.workspace_id),
        "BENCH_BARE_POOL_SIZE": str(connection_limit()),
    }


def lead_path(target: str, lead_id: uuid.UUID) -> str:
    """Build a lead's path: prefixed ids for the full stack, plain UUIDs for bare."""
    path_id = ids.encode("lead", lead_id) if target == FULL else str(lead_id)
    return f"/v1/leads/{path_id}"


def build_spec(
    config: BenchConfig, workload: Workload, target: str, server: Server, seed: Seed
) -> LoadSpec:
    headers = {"Authorization": f"Bearer {seed.api_key}"}
    body_template = None
    if workload.method == "GET":
        paths = [lead_path(target, lead_id) for lead_id in seed.lead_ids]
    else:
        paths = ["/v1/leads"]
        headers["Content-Type"] = "application/json"
        body_template = POST_BODY.replace("{tag}", f"{target}{secrets.token_hex(4)}")
    return LoadSpec(
        port=server.port,
        method=workload.method,
        paths=paths,
        headers=headers,
        expected_status=workload.expected_status,
        concurrency=config.concurrency,
        warmup_seconds=config.warmup_seconds,
        duration_seconds=config.duration_seconds,
        max_requests=config.max_requests,
        body_template=body_template,
    )


async def run_load_process(spec: LoadSpec) -> LoadResult:
    """Run the load generator in its own process and return its result."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.load",
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    timeout = spec.warmup_seconds + spec.duration_seconds + LOAD_TIMEOUT_MARGIN_SECONDS
    try:
        output, errors = await asyncio.wait_for(
            process.communicate(json.dumps(asdict(spec)).encode()), timeout
        )
    except TimeoutError:
        process.kill()
        await process.wait()
        raise LoadFailed(f"the load generator ran past {timeout:.0f} s") from None
    if process.returncode != 0:
        raise LoadFailed(
            f"the load generator exited with status {process.returncode}:\n"
            + errors.decode(errors="replace")[-3_000:]
        )
    return LoadResult(**json.loads(output))


async def measure(
    config: BenchConfig,
    workload: Workload,
    target: str,
    round_number: int,
    server: Server,
    seed: Seed,
) -> Measurement:
    spec = build_spec(config, workload, target, server, seed)
    cpu_before = tree_cpu_seconds(server.pid)
    with RssSampler(server.pid) as sampler:
        result = await run_load_process(spec)
    cpu_seconds = tree_cpu_seconds(server.pid) - cpu_before
    served = max(result.requests + result.warmup_requests, 1)
    if result.errors:
        raise LoadFailed(
            f"{workload.title} on {target}: {result.errors} responses were not "
            f"{workload.expected_status}; the first was {result.first_error}"
        )
    return Measurement(
        workload=workload.key,
        target=target,
        round=round_number,
        load=result,
        peak_rss_mb=round(sampler.peak_mb, 1),
        cpu_ms_per_request=round(1000 * cpu_seconds / served, 3),
    )


async def run_api_benchmarks(
    config: BenchConfig,
    servers: BenchServers,
    seed: Seed,
    log_dir: Path,
    progress: Callable[[str], None],
) -> list[Measurement]:
    """Serve both apps and run every workload, alternating bare and full per round."""
    started: dict[str, Server] = {}
    try:
        started[BARE] = await start_uvicorn(
            BARE,
            "benchmarks.bare:create_app",
            bare_env(servers, seed),
            config.workers,
            log_dir,
        )
        started[FULL] = await start_uvicorn(
            FULL, "app.main:create_app", full_env(servers), config.workers, log_dir
        )
        measurements: list[Measurement] = []
        for workload in workloads(config):
            for round_number in range(config.rounds):
                order = (BARE, FULL) if round_number % 2 == 0 else (FULL, BARE)
                for target in order:
                    item = await measure(
                        config,
                        workload,
                        target,
                        round_number,
                        started[target],
                        seed,
                    )
                    progress(
                        f"{workload.title:<20} {target:<4} round {round_number + 1}: "
                        f"{item.load.requests_per_second:>8.1f} req/s, "
                        f"p50 {item.load.p50_ms:.2f} ms, p99 {item.load.p99_ms:.2f} ms, "
                        f"{item.cpu_ms_per_request:.2f} CPU ms/request"
                    )
                    measurements.append(item)
        return measurements
    finally:
        for server in started.values():
            await server.stop()
