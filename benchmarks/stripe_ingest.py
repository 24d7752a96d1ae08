"""The Stripe workload: signed events posted twice each, stored and applied once.

The database gets one workspace, one customer, and one open invoice of 100.00 EUR per
event, made by ``invoice_service`` as the API makes them. Each event is a
``payment_intent.succeeded`` for the whole amount of its invoice, named in
``metadata.invoice_id``. Each event is delivered twice, so ``events`` deliveries carry
``events / 2`` distinct event ids. They go in a fixed shuffled order, in which some
duplicates arrive at the same moment and others far apart. Every delivery is signed with the
``stripe`` library right before its run, and the load generator
(``benchmarks.load``) posts the deliveries once each from ``concurrency``
connections.

Two servers run at once under uvicorn, as in ``benchmarks.api``: the full stack
(``app.main:create_app``) and the bare baseline (``benchmarks.bare_stripe``), which
checks the same signatures and inserts the same events into a table of its own.
The bare one runs before and after the full stack, each time with event ids of its
own, and the ratio uses the median of the two. During the full run,
``python -m app.cli worker`` applies the events. Its time runs from the first
delivery until no inbox row of the run is left ``received``.

Every delivery of a run must get a 200, and each event must be stored once. After the
full run, each event must be ``processed`` after one attempt, and each invoice paid
by exactly one payment. Anything else, or a run that outlasts ``timeout_seconds``,
fails the benchmark.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import stripe

from app.billing.schemas import InvoiceCreate
from app.billing.service import invoice_service
from app.core import ids
from app.core.auth import ALL_SCOPES, Principal, create_api_key
from app.core.db import Database, drop_pending_jobs
from app.core.ids import new_uuid
from app.core.jobs import QUEUE_NAME, JobQueue
from app.models import Customer, Workspace
from app.settings import Settings
from benchmarks.api import connection_limit, full_env, run_load_process
from benchmarks.bare_stripe import CREATE_TABLE, TABLE
from benchmarks.environment import BenchServers, app_env, asyncpg_dsn
from benchmarks.load import LoadResult, LoadSpec
from benchmarks.servers import (
    Server,
    log_tail,
    start_process,
    start_uvicorn,
    tree_cpu_seconds,
)

TITLE = "Stripe webhooks"
BARE = "bare"
FULL = "full"
PATH = "/v1/provider-webhooks/stripe"
SECRET = "whsec_bench_stripe_ingest"
INVOICE_AMOUNT = 10_000
CURRENCY = "EUR"
# Invoices created and committed per transaction while seeding.
SEED_BATCH = 200
WORKER_READY_TIMEOUT_SECONDS = 60.0
POLL_SECONDS = 0.1


class StripeIngestFailed(RuntimeError):
    """A delivery failed, or a run stored or applied an event other than once."""


@dataclass(frozen=True)
class IngestRun:
    """One run: deliveries per second, and for the full stack, the time to apply."""

    label: str
    deliveries: int
    events: int
    seconds: float
    deliveries_per_second: float
    p50_ms: float
    p99_ms: float
    # CPU time of the HTTP server's process tree per delivery, warm-up excluded.
    server_cpu_ms_per_delivery: float
    # Full stack only: seconds from the first delivery until every event was
    # applied, and the worker's CPU time per event.
    applied_seconds: float | None = None
    worker_cpu_ms_per_event: float | None = None


@dataclass(frozen=True)
class StripeSummary:
    """The full stack against the median of the bare runs before and after it."""

    title: str
    deliveries: int
    events: int
    concurrency: int
    bare_runs: list[IngestRun]
    full: IngestRun
    bare_deliveries_per_second: float
    ratio: float
    ratio_target: float


@dataclass(frozen=True)
class StripeSeed:
    workspace_id: uuid.UUID
    # The ``inv_`` ids of the open invoices, one per event of the full run.
    invoice_refs: list[str]


async def seed_stripe(database_url: str, *, invoices: int) -> StripeSeed:
    """Create a workspace, a customer and ``invoices`` open invoices of 100.00 EUR."""
    database = Database(Settings(database_url=database_url, database_pool_size=1))
    refs: list[str] = []
    try:
        async with database.session() as session:
            workspace = Workspace(id=new_uuid(), name="Stripe benchmark")
            session.add(workspace)
            await session.flush()
            key = await create_api_key(
                session, workspace_id=workspace.id, name="bench", scopes=ALL_SCOPES
            )
            customer = Customer(
                id=new_uuid(),
                workspace_id=workspace.id,
                name="Globex",
                currency=CURRENCY,
                timezone="Europe/Berlin",
                payment_terms_days=14,
            )
            session.add(customer)
            await session.commit()
        principal = Principal(
            api_key_id=key.record.id,
            workspace_id=workspace.id,
            scopes=frozenset(ALL_SCOPES),
            kind="secret",
        )
        payload = InvoiceCreate.model_validate(
            {
                "customer_id": ids.encode("customer", customer.id),
                "lines": [
                    {
                        "description": "Annual subscription",
                        "quantity": "1",
                        "unit_amount": INVOICE_AMOUNT,
                    }
                ],
            }
        )
        while len(refs) < invoices:
            async with database.session() as session:
                for _ in range(min(SEED_BATCH, invoices - len(refs))):
                    draft, _ = await invoice_service.create(session, principal, payload)
                    invoice, _ = await invoice_service.finalize(
                        session, principal, draft.id, if_match=None
                    )
                    refs.append(ids.encode("invoice", invoice.id))
                await session.commit()
                # No webhook endpoint exists, so the dispatch jobs would do nothing.
                drop_pending_jobs(session)
    finally:
        await database.dispose()
    return StripeSeed(workspace_id=workspace.id, invoice_refs=refs)


def event_body(label: str, number: int, invoice_ref: str) -> str:
    """Build the body of one ``payment_intent.succeeded`` event as Stripe sends it."""
    intent = f"pi_bench_{label}_{number:06d}"
    return json.dumps(
        {
            "id": f"evt_bench_{label}_{number:06d}",
            "object": "event",
            "api_version": "2024-06-20",
            "created": int(time.time()),
            "type": "payment_intent.succeeded",
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "data": {
                "object": {
                    "id": intent,
                    "object": "payment_intent",
                    "amount": INVOICE_AMOUNT,
                    "amount_received": INVOICE_AMOUNT,
                    "currency": CURRENCY.lower(),
                    "status": "succeeded",
                    "payment_method_types": ["card"],
                    "metadata": {"invoice_id": invoice_ref},
                }
            },
        }
    )


def deliveries(label: str, invoice_refs: list[str]) -> list[str]:
    """Return two deliveries of one event per invoice, in a fixed shuffled order."""
    bodies = [event_body(label, number, ref) for number, ref in enumerate(invoice_refs)]
    order = [*bodies, *bodies]
    random.Random(len(order)).shuffle(order)
    return order


def sign_all(bodies: list[str]) -> list[dict[str, str]]:
    """Sign each delivery with the stripe library, as Stripe signs each attempt."""
    return [
        {
            "Stripe-Signature": str(
                stripe.WebhookSignature.generate_signature_header(body, SECRET)
            )
        }
        for body in bodies
    ]


async def run_load(
    port: int, bodies: list[str], concurrency: int, timeout_seconds: float
) -> LoadResult:
    spec = LoadSpec(
        port=port,
        method="POST",
        paths=[PATH],
        headers={"Content-Type": "application/json"},
        expected_status=200,
        concurrency=concurrency,
        warmup_seconds=0.0,
        duration_seconds=timeout_seconds,
        max_requests=len(bodies),
        bodies=bodies,
        body_headers=sign_all(bodies),
    )
    result = await run_load_process(spec)
    if result.errors or result.requests != len(bodies):
        raise StripeIngestFailed(
            f"{result.requests} of {len(bodies)} deliveries got a response in time, "
            f"{result.errors} not with 200; the first was {result.first_error}"
        )
    return result


async def _ingest(
    label: str,
    server: Server,
    bodies: list[str],
    concurrency: int,
    timeout_seconds: float,
) -> tuple[LoadResult, float]:
    cpu_before = tree_cpu_seconds(server.pid)
    result = await run_load(server.port, bodies, concurrency, timeout_seconds)
    cpu_seconds = tree_cpu_seconds(server.pid) - cpu_before
    if server.process.returncode is not None:
        raise server.failure(f"exited during the {label} run")
    return result, cpu_seconds


def _run(
    label: str,
    result: LoadResult,
    events: int,
    cpu_seconds: float,
    applied_seconds: float | None = None,
    worker_cpu_seconds: float | None = None,
) -> IngestRun:
    return IngestRun(
        label=label,
        deliveries=result.requests,
        events=events,
        seconds=result.seconds,
        deliveries_per_second=result.requests_per_second,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        server_cpu_ms_per_delivery=round(cpu_seconds * 1000 / result.requests, 3),
        applied_seconds=(
            round(applied_seconds, 3) if applied_seconds is not None else None
        ),
        worker_cpu_ms_per_event=(
            round(worker_cpu_seconds * 1000 / events, 3)
            if worker_cpu_seconds is not None
            else None
        ),
    )


async def run_bare(
    connection: asyncpg.Connection,
    server: Server,
    seeded: StripeSeed,
    *,
    label: str,
    concurrency: int,
    timeout_seconds: float,
) -> IngestRun:
    slug = label.replace(" ", "_")
    bodies = deliveries(slug, seeded.invoice_refs)
    result, cpu_seconds = await _ingest(
        label, server, bodies, concurrency, timeout_seconds
    )
    stored = await connection.fetchval(
        f"SELECT count(*) FROM {TABLE} WHERE event_id LIKE $1",
        f"evt_bench_{slug}_%",
    )
    if stored != len(seeded.invoice_refs):
        raise StripeIngestFailed(
            f"{label}: {stored} events stored, expected {len(seeded.invoice_refs)}"
        )
    return _run(label, result, stored, cpu_seconds)


async def _wait_worker_ready(worker: Server, queue: JobQueue) -> None:
    # arq writes its health key on its first poll of the queue, after startup.
    pool = await queue.pool()
    deadline = time.monotonic() + WORKER_READY_TIMEOUT_SECONDS
    while not await pool.exists(f"{QUEUE_NAME}:health-check"):
        if worker.process.returncode is not None:
            raise worker.failure(
                f"exited with status {worker.process.returncode} while starting"
            )
        if time.monotonic() > deadline:
            raise worker.failure(
                f"not polling after {WORKER_READY_TIMEOUT_SECONDS:.0f} s"
            )
        await asyncio.sleep(POLL_SECONDS)


async def _inbox_counts(connection: asyncpg.Connection, prefix: str) -> dict[str, int]:
    row = await connection.fetchrow(
        "SELECT count(*) AS stored, "
        "count(*) FILTER (WHERE status = 'received') AS received, "
        "count(*) FILTER (WHERE status = 'processed') AS processed, "
        "coalesce(max(attempts), 0) AS max_attempts "
        "FROM provider_events WHERE provider = 'stripe' AND event_id LIKE $1",
        prefix,
    )
    return dict(row)


async def _wait_applied(
    connection: asyncpg.Connection,
    prefix: str,
    events: int,
    deadline: float,
    worker: Server,
) -> float:
    """Poll until no inbox row of the run is left ``received``; return when."""
    while True:
        counts = await _inbox_counts(connection, prefix)
        if counts["stored"] == events and counts["received"] == 0:
            return time.monotonic()
        if time.monotonic() > deadline or worker.process.returncode is not None:
            raise StripeIngestFailed(
                f"{worker.name}: not every event was applied in time: {counts}"
                f"\n{log_tail(worker.log_path)}"
            )
        await asyncio.sleep(POLL_SECONDS)


async def _check_applied_once(
    connection: asyncpg.Connection, seeded: StripeSeed, prefix: str
) -> None:
    events = len(seeded.invoice_refs)
    counts = await _inbox_counts(connection, prefix)
    expected = {"stored": events, "received": 0, "processed": events, "max_attempts": 1}
    if counts != expected:
        raise StripeIngestFailed(
            f"full: the inbox does not show each event applied once after one "
            f"attempt: {counts}, expected {expected}"
        )
    payments = await connection.fetchrow(
        "SELECT count(*) AS payments, "
        "count(DISTINCT provider_payment_id) AS intents, "
        "coalesce(sum(amount), 0) AS amount "
        "FROM payments WHERE workspace_id = $1 AND status = 'succeeded'",
        seeded.workspace_id,
    )
    paid = await connection.fetchval(
        "SELECT count(*) FROM invoices WHERE workspace_id = $1 AND status = 'paid' "
        "AND amount_paid = $2",
        seeded.workspace_id,
        INVOICE_AMOUNT,
    )
    expected_payments = {
        "payments": events,
        "intents": events,
        "amount": events * INVOICE_AMOUNT,
    }
    if dict(payments) != expected_payments or paid != events:
        raise StripeIngestFailed(
            f"full: {dict(payments)} and {paid} invoices paid; expected "
            f"{expected_payments} and {events} invoices paid"
        )


async def run_full(
    connection: asyncpg.Connection,
    servers: BenchServers,
    server: Server,
    seeded: StripeSeed,
    *,
    concurrency: int,
    timeout_seconds: float,
    log_dir: Path,
) -> IngestRun:
    """Deliver the events to the full stack while the worker applies them."""
    bodies = deliveries(FULL, seeded.invoice_refs)
    prefix = f"evt_bench_{FULL}_%"
    queue = JobQueue(servers.redis_url)
    worker = await start_process(
        "stripe-worker",
        [sys.executable, "-m", "app.cli", "worker"],
        stripe_env(servers),
        log_dir,
    )
    try:
        await _wait_worker_ready(worker, queue)
        worker_cpu_before = tree_cpu_seconds(worker.pid)
        result, cpu_seconds = await _ingest(
            FULL, server, bodies, concurrency, timeout_seconds
        )
        applied = await _wait_applied(
            connection,
            prefix,
            len(seeded.invoice_refs),
            result.started_monotonic + timeout_seconds,
            worker,
        )
        worker_cpu = tree_cpu_seconds(worker.pid) - worker_cpu_before
    finally:
        await worker.stop()
        await queue.close()
    await _check_applied_once(connection, seeded, prefix)
    return _run(
        FULL,
        result,
        len(seeded.invoice_refs),
        cpu_seconds,
        applied_seconds=applied - result.started_monotonic,
        worker_cpu_seconds=worker_cpu,
    )


def stripe_env(servers: BenchServers) -> dict[str, str]:
    """Settings of the full stack and its worker: the API's pool, and the secret."""
    return {**full_env(servers), "SALESCYCLE_STRIPE_WEBHOOK_SECRET": SECRET}


def bare_stripe_env(servers: BenchServers) -> dict[str, str]:
    return {
        "BENCH_BARE_DATABASE_DSN": asyncpg_dsn(servers.database_url),
        "BENCH_BARE_POOL_SIZE": str(connection_limit()),
        "BENCH_BARE_STRIPE_SECRET": SECRET,
    }


async def measure_stripe(
    servers: BenchServers,
    *,
    events: int,
    concurrency: int,
    timeout_seconds: float,
    ratio_target: float,
    log_dir: Path,
    progress: Callable[[str], None] = lambda message: None,
) -> StripeSummary:
    """Time the bare handler, the full stack with its worker, and the bare again."""
    if events < 2 or events % 2:
        raise StripeIngestFailed(
            f"The Stripe workload needs an even number of deliveries, at least 2, "
            f"because each event is delivered twice; got {events}."
        )
    distinct = events // 2
    progress(f"seeding {distinct} open invoices")
    seeded = await seed_stripe(servers.database_url, invoices=distinct)
    connection = await asyncpg.connect(asyncpg_dsn(servers.database_url))
    started: list[Server] = []
    try:
        await connection.execute(CREATE_TABLE)
        bare = await start_uvicorn(
            "stripe-bare",
            "benchmarks.bare_stripe:create_app",
            {**app_env(servers), **bare_stripe_env(servers)},
            1,
            log_dir,
        )
        started.append(bare)
        full = await start_uvicorn(
            "stripe-full", "app.main:create_app", stripe_env(servers), 1, log_dir
        )
        started.append(full)
        bare_runs: list[IngestRun] = []
        full_run: IngestRun | None = None
        for label in (f"{BARE} before", FULL, f"{BARE} after"):
            progress(
                f"delivering {events} Stripe events ({distinct} distinct): {label}, "
                f"{concurrency} connections"
            )
            if label == FULL:
                full_run = await run_full(
                    connection,
                    servers,
                    full,
                    seeded,
                    concurrency=concurrency,
                    timeout_seconds=timeout_seconds,
                    log_dir=log_dir,
                )
                continue
            bare_runs.append(
                await run_bare(
                    connection,
                    bare,
                    seeded,
                    label=label,
                    concurrency=concurrency,
                    timeout_seconds=timeout_seconds,
                )
            )
    finally:
        for server in started:
            await server.stop()
        await connection.close()
    assert full_run is not None
    bare_rate = statistics.median(run.deliveries_per_second for run in bare_runs)
    return StripeSummary(
        title=f"{TITLE} ({events} deliveries, half duplicates)",
        deliveries=events,
        events=distinct,
        concurrency=concurrency,
        bare_runs=bare_runs,
        full=full_run,
        bare_deliveries_per_second=round(bare_rate, 1),
        ratio=round(full_run.deliveries_per_second / bare_rate, 3),
        ratio_target=ratio_target,
    )


def render_stripe(summary: StripeSummary) -> list[str]:
    lines = [
        "",
        f"{summary.title}: signed payment_intent.succeeded events, each delivered "
        f"twice, {summary.concurrency} connections; the worker applies the full "
        "stack's events meanwhile",
        f"{'run':<16}{'deliveries':>11}{'events':>8}{'seconds':>9}{'deliv/s':>9}"
        f"{'p50 ms':>8}{'p99 ms':>8}{'API CPU ms':>11}{'applied s':>10}"
        f"{'worker CPU ms':>14}",
    ]
    for run in [*summary.bare_runs, summary.full]:
        applied = f"{run.applied_seconds:.2f}" if run.applied_seconds else "-"
        worker = (
            f"{run.worker_cpu_ms_per_event:.3f}" if run.worker_cpu_ms_per_event else "-"
        )
        lines.append(
            f"{run.label:<16}{run.deliveries:>11}{run.events:>8}{run.seconds:>9.2f}"
            f"{run.deliveries_per_second:>9.1f}{run.p50_ms:>8.2f}{run.p99_ms:>8.2f}"
            f"{run.server_cpu_ms_per_delivery:>11.3f}{applied:>10}{worker:>14}"
        )
    lines.append(f"{'full/bare':<16}{'':<28}{summary.ratio:>9.2f}x")
    return lines
