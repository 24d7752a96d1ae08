"""The webhook workload: events committed in batches, delivered by the real worker.

``python -m benchmarks.webhooks`` migrates the benchmark database, creates one endpoint
for every event type pointing at a receiver on 127.0.0.1 (an aiohttp server in this
process that answers 204 and notes when each ``webhook-id`` arrived), and starts
``python -m app.cli worker``. A producer process (``benchmarks.webhook_producer``)
then commits ``--events`` events: with ``emit``, in one commit, for the throughput
run, so the worker faces the whole backlog at once as the bare loop does; and at half
the bare loop's rate for the latency run, committing every 10 ms, in one multi-row
insert, the events whose time has come. The producer runs apart from the receiver,
so committing events never delays the receiver's answers. A delivery's latency runs
from the commit of its event to its arrival at the receiver; the rate is the
deliveries divided by the time from the first commit to the last arrival. The table
also shows how fast the events were committed, which bounds the latency run when the
producer cannot commit at the rate it aims for.

The baseline is a bare aiohttp loop in a process of its own (``benchmarks.bare_webhooks``,
on uvloop as the worker is), so that, as with the worker, every request goes from one
process to the receiver in another. It signs payloads of the same shape with the
endpoint's secret and posts them from as many tasks as the worker may send to one
endpoint (``--concurrency``, passed to the worker as
``SALESCYCLE_WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT``). It runs before and after the
worker, and a last worker run commits its events at half the bare loop's mean rate,
for the latency target. The same loop run once inside this process, on the receiver's
event loop, is shown for reference and not used in the ratio: with no second process
to wake, its requests are faster than any sender's in another process. Every run must
deliver each event exactly once, or the benchmark fails. With ``--rounds`` every run
but the reference one is repeated that many times, and the targets are read from the
medians over the rounds. One run is not enough: on a shared 2-CPU machine one
commit's rate moved from 2,720 to 4,765 deliveries a second between runs minutes
apart (benchmarks/RESULTS.md). ``python -m benchmarks --only-webhooks`` runs the same
workload, with three rounds unless ``--webhook-rounds`` sets another number.

Each run also reports the CPU it cost a delivery: of the sending process, of
PostgreSQL, of the receiver (this process), of the producer and of every process of
the machine together. The last line gives how many CPUs the worker's two runs would
keep busy at half the bare loop's rate, at the CPU a delivery they measured, against
the CPUs of the machine, since the bare loop already keeps most of them busy.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from sqlalchemy import select

from app.core import ids
from app.core.clock import utcnow
from app.core.db import Database
from app.core.events import emit
from app.core.ids import new_uuid
from app.core.jobs import JobQueue
from app.models import Event, WebhookDelivery, WebhookEndpoint, Workspace
from app.settings import Settings
from app.webhooks.payload import build_payload
from app.webhooks.signing import generate_secret
from benchmarks.bare_webhooks import send_all
from benchmarks.config import positive_int
from benchmarks.environment import BenchServers, app_env, bench_servers
from benchmarks.runner import claim_and_prepare, release
from benchmarks.servers import (
    ROOT,
    free_port,
    log_tail,
    machine_cpu_seconds,
    machine_cpus,
    postgres_cpu_seconds,
    start_process,
    tree_cpu_seconds,
)
from workers import tasks

TIMEOUT_SECONDS = 600.0
# The name of the run of the bare loop in the receiver's process.
IN_PROCESS = "bare aiohttp loop in the receiver's process"


class WebhookBenchFailed(RuntimeError):
    """A run lost or duplicated a delivery, or did not finish in time."""


@dataclass(frozen=True)
class RunResult:
    """Deliveries per second and latency percentiles of one run, in milliseconds."""

    name: str
    deliveries: int
    seconds: float
    p50_ms: float
    p99_ms: float
    # Events the benchmark committed a second, for the worker's runs.
    commits_per_second: float | None = None
    # CPU milliseconds per delivery, from the first commit (or request) to the last
    # arrival: of the sending process (the worker, or the bare loop), of every
    # PostgreSQL process of this machine, of this process (the receiver), of the
    # producer, and of every process of the machine together. None where not
    # measured.
    sender_cpu_ms: float | None = None
    postgres_cpu_ms: float | None = None
    receiver_cpu_ms: float | None = None
    producer_cpu_ms: float | None = None
    machine_cpu_ms: float | None = None

    @property
    def rate(self) -> float:
        return self.deliveries / self.seconds


class Receiver:
    """Notes the arrival time of each ``webhook-id``, and counts repeats."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.repeats = 0
        self.done = asyncio.Event()
        self.expected = 0
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        message_id = request.headers["webhook-id"]
        if message_id in self.arrivals:
            self.repeats += 1
        else:
            self.arrivals[message_id] = time.time()
            if len(self.arrivals) >= self.expected:
                self.done.set()
        return web.Response(status=204)

    def reset(self, expected: int) -> None:
        self.arrivals = {}
        self.repeats = 0
        self.expected = expected
        self.done = asyncio.Event()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def run_bare_in_process(
    receiver: Receiver, bodies: list[tuple[str, bytes]], secret: str, concurrency: int
) -> RunResult:
    """Sign and post ``bodies`` from ``concurrency`` tasks of this process.

    The sender shares the receiver's event loop, so no request crosses to another
    process; the table shows it beside the baseline, which does.
    """
    receiver.reset(len(bodies))
    url = f"http://127.0.0.1:{receiver.port}/hooks"
    first = time.time()
    started = await send_all(url, secret, concurrency, bodies)
    return summarize(
        IN_PROCESS,
        receiver,
        started,
        first,
        len(bodies),
    )


async def run_bare(
    receiver: Receiver,
    bodies: list[tuple[str, bytes]],
    secret: str,
    concurrency: int,
    log_dir: Path,
) -> RunResult:
    """Sign and post ``bodies`` from a process of their own, as the worker does.

    The rate runs from the first request's start, so the process's start-up does not
    count.
    """
    receiver.reset(len(bodies))
    source = log_dir / "bare-bodies.json"
    target = log_dir / "bare-started.json"
    source.write_bytes(
        orjson.dumps(
            {
                "url": f"http://127.0.0.1:{receiver.port}/hooks",
                "secret": secret,
                "concurrency": concurrency,
                "bodies": [[message_id, body.decode()] for message_id, body in bodies],
            }
        )
    )
    receiver_cpu_before = time.process_time()
    sender = await start_process(
        "bare-sender",
        [sys.executable, "-m", "benchmarks.bare_webhooks", str(source), str(target)],
        {},
        log_dir,
    )
    try:
        status = await asyncio.wait_for(sender.process.wait(), TIMEOUT_SECONDS)
    except TimeoutError as error:
        raise WebhookBenchFailed(
            f"the bare sender did not finish in {TIMEOUT_SECONDS:g} s"
        ) from error
    finally:
        await sender.stop()
    if status != 0:
        raise WebhookBenchFailed(
            f"the bare sender exited with {status}:\n{log_tail(sender.log_path)}"
        )
    receiver_cpu = time.process_time() - receiver_cpu_before
    report = orjson.loads(target.read_bytes())
    started: dict[str, float] = report["started"]
    result = summarize(
        "bare aiohttp loop", receiver, started, min(started.values()), len(bodies)
    )
    return dataclasses.replace(
        result,
        sender_cpu_ms=report["cpu_seconds"] * 1000 / len(bodies),
        # Counted from the sender's start: the receiver is idle until its first
        # request.
        receiver_cpu_ms=receiver_cpu * 1000 / len(bodies),
    )


def summarize(
    name: str,
    receiver: Receiver,
    committed_at: dict[str, float],
    first: float,
    expected: int,
) -> RunResult:
    if len(receiver.arrivals) != expected or receiver.repeats:
        raise WebhookBenchFailed(
            f"{name}: {len(receiver.arrivals)} of {expected} deliveries arrived, "
            f"{receiver.repeats} more than once"
        )
    latencies = [
        (receiver.arrivals[message_id] - committed_at[message_id]) * 1000
        for message_id in receiver.arrivals
    ]
    return RunResult(
        name=name,
        deliveries=expected,
        seconds=max(receiver.arrivals.values()) - first,
        p50_ms=statistics.median(latencies),
        p99_ms=percentile(latencies, 0.99),
    )


async def run_worker(
    servers: BenchServers,
    receiver: Receiver,
    events: int,
    batch: int,
    concurrency: int,
    log_dir: Path,
    *,
    rate: float | None = None,
    name: str = "salescycle worker",
) -> RunResult:
    """Have the producer process commit ``events`` events, and time their delivery by
    a worker process.

    Without ``rate``, events are emitted ``batch`` to a commit as fast as possible.
    With it, the events whose time has come at that rate are inserted and committed
    together every ``PACE_TICK_SECONDS``, and ``batch`` is not used.
    """
    settings = Settings(
        database_url=servers.database_url,
        redis_url=servers.redis_url,
        log_level="WARNING",
    )
    database = Database(settings)
    queue = JobQueue(settings.redis_url)
    ctx = {"db": database, "queue": queue, "settings": settings}
    secret = generate_secret()
    workspace_id = new_uuid()
    warmup_id = new_uuid()
    async with database.session() as session:
        for id_, title in ((workspace_id, "Webhook benchmark"), (warmup_id, "Warm-up")):
            session.add(Workspace(id=id_, name=title))
            await session.flush()
            session.add(
                WebhookEndpoint(
                    workspace_id=id_,
                    url=f"http://127.0.0.1:{receiver.port}/hooks",
                    event_types=["*"],
                    secret=secret,
                )
            )
        await session.commit()

    env = {
        **app_env(servers),
        "SALESCYCLE_WEBHOOK_ALLOW_PRIVATE_HOSTS": '["127.0.0.1"]',
        "SALESCYCLE_WEBHOOK_ALLOW_HTTP": "true",
        "SALESCYCLE_WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT": str(concurrency),
    }
    worker = await start_process(
        "worker", [sys.executable, "-m", "app.cli", "worker"], env, log_dir
    )
    try:
        # Wait until the worker delivers a first event, so its start-up does not count.
        receiver.reset(1)
        async with tasks.unit_of_work(ctx) as session:
            await emit(
                session,
                workspace_id=warmup_id,
                type="lead.updated",
                object_type="lead",
                object_id=new_uuid(),
                data={},
            )
        try:
            await asyncio.wait_for(receiver.done.wait(), TIMEOUT_SECONDS)
        except TimeoutError as error:
            raise WebhookBenchFailed(
                f"the worker did not start:\n{log_tail(worker.log_path)}"
            ) from error
        receiver.reset(events)
        job = {
            "database_url": servers.database_url,
            "redis_url": servers.redis_url,
            "workspace_id": str(workspace_id),
            "events": events,
            "batch": batch,
            "rate": rate,
        }
        producer = Producer(job, log_dir)
        try:
            await producer.start()
            cpu_at_first = _cpu_seconds(worker.pid)
            try:
                await producer.wait_for(receiver.done)
            except TimeoutError as error:
                raise WebhookBenchFailed(
                    f"the worker delivered {len(receiver.arrivals)} of {events} in "
                    f"{TIMEOUT_SECONDS:g} s:\n{log_tail(worker.log_path)}"
                ) from error
            cpu_at_last = _cpu_seconds(worker.pid)
            commits = await producer.finish()
        finally:
            await producer.stop()
        # Let a duplicate arrive, if any would.
        await asyncio.sleep(2)
    finally:
        await worker.stop()

    by_delivery = await _deliveries(database, commits["committed_at"])
    await queue.close()
    await database.dispose()
    result = summarize(name, receiver, by_delivery, commits["first"], events)
    used = cpu_at_last.minus(cpu_at_first)
    return dataclasses.replace(
        result,
        commits_per_second=events / (commits["last"] - commits["began"]),
        sender_cpu_ms=used.worker * 1000 / events,
        postgres_cpu_ms=used.postgres * 1000 / events,
        receiver_cpu_ms=used.receiver * 1000 / events,
        producer_cpu_ms=commits["cpu_seconds"] * 1000 / events,
        machine_cpu_ms=used.machine * 1000 / events,
    )


class Producer:
    """The producer process of one run (``benchmarks.webhook_producer``).

    It keeps its database connections until ``finish``, so that PostgreSQL's CPU time
    read before then still counts the server processes of those connections.
    """

    def __init__(self, job: dict[str, Any], log_dir: Path) -> None:
        self.job = job
        self.source = log_dir / "producer-job.json"
        self.target = log_dir / "producer-times.json"
        self.log_path = log_dir / "producer.log"
        self.process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[bytes] | None = None

    async def start(self) -> None:
        """Start the process and wait until its first commit ended."""
        self.source.write_bytes(orjson.dumps(self.job))
        with self.log_path.open("wb") as log_file:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "benchmarks.webhook_producer",
                str(self.source),
                str(self.target),
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_file,
            )
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(
                self.process.stdout.readline(), TIMEOUT_SECONDS
            )
        except TimeoutError as error:
            raise WebhookBenchFailed(
                f"the producer committed nothing in {TIMEOUT_SECONDS:g} s"
            ) from error
        if line.strip() != b"committed":
            status = await self.process.wait()
            raise WebhookBenchFailed(
                f"the producer exited with {status}:\n{log_tail(self.log_path)}"
            )
        # Whatever else it prints is read, so a full pipe never stops it.
        self._drain = asyncio.create_task(self.process.stdout.read())

    async def wait_for(self, done: asyncio.Event) -> None:
        """Wait until ``done`` is set, failing at once if the producer fails first."""
        assert self.process is not None
        arrived = asyncio.create_task(done.wait())
        exited = asyncio.create_task(self.process.wait())
        try:
            await asyncio.wait(
                {arrived, exited},
                timeout=TIMEOUT_SECONDS,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            arrived.cancel()
            exited.cancel()
        if self.process.returncode:
            raise WebhookBenchFailed(
                f"the producer exited with {self.process.returncode}:\n"
                f"{log_tail(self.log_path)}"
            )
        if not done.is_set():
            raise TimeoutError

    async def finish(self) -> dict[str, Any]:
        """Let the process close its connections and end; return its report."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.close()
        try:
            status = await asyncio.wait_for(self.process.wait(), TIMEOUT_SECONDS)
        except TimeoutError as error:
            raise WebhookBenchFailed(
                f"the producer did not end in {TIMEOUT_SECONDS:g} s"
            ) from error
        if self._drain is not None:
            await self._drain
        if status != 0:
            raise WebhookBenchFailed(
                f"the producer exited with {status}:\n{log_tail(self.log_path)}"
            )
        report: dict[str, Any] = orjson.loads(self.target.read_bytes())
        return report

    async def stop(self) -> None:
        """Kill the process if it is still running."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


@dataclass(frozen=True)
class CpuReading:
    """CPU seconds used so far by the processes of a worker's run."""

    worker: float
    postgres: float
    # This process, which runs the receiver.
    receiver: float
    # Every process of the machine.
    machine: float

    def minus(self, earlier: CpuReading) -> CpuReading:
        return CpuReading(
            worker=self.worker - earlier.worker,
            postgres=self.postgres - earlier.postgres,
            receiver=self.receiver - earlier.receiver,
            machine=self.machine - earlier.machine,
        )


def _cpu_seconds(worker_pid: int) -> CpuReading:
    return CpuReading(
        worker=tree_cpu_seconds(worker_pid),
        postgres=postgres_cpu_seconds(),
        receiver=time.process_time(),
        machine=machine_cpu_seconds(),
    )


async def _deliveries(
    database: Database, committed_at: dict[str, float]
) -> dict[str, float]:
    """Map each delivery's ``webhook-id`` to the commit time of its event."""
    async with database.session() as session:
        rows = await session.execute(
            select(WebhookDelivery.id, WebhookDelivery.event_id)
        )
        return {
            ids.encode("webhook_delivery", row.id): committed_at[str(row.event_id)]
            for row in rows
            if str(row.event_id) in committed_at
        }


def sample_bodies(events: int) -> list[tuple[str, bytes]]:
    """Build payloads like the worker's, under fresh ids, for the bare loop to send."""
    now = utcnow()
    bodies = []
    for _ in range(events):
        event = Event(
            id=new_uuid(),
            workspace_id=new_uuid(),
            type="lead.updated",
            object_type="lead",
            object_id=new_uuid(),
            sequence=1,
            data={"email": "ada@example.com", "status": "working"},
            request_id=None,
            actor=None,
            created_at=now,
            test=False,
        )
        bodies.append(
            (ids.encode("webhook_delivery", new_uuid()), build_payload(event))
        )
    return bodies


async def measure(
    servers: BenchServers,
    events: int,
    batch: int,
    concurrency: int,
    log_dir: Path,
    rounds: int = 1,
) -> list[list[RunResult]]:
    """Run ``rounds`` rounds of the bare loop, the worker, the bare loop again and
    the worker at half the bare loop's rate.

    The bare loop in the receiver's process runs in the first round only, for
    reference.
    """
    receiver = Receiver()
    await receiver.start()
    secret = generate_secret()
    measured = []
    try:
        for round_number in range(rounds):
            bare_before = await run_bare(
                receiver, sample_bodies(events), secret, concurrency, log_dir
            )
            results = [
                dataclasses.replace(bare_before, name="bare aiohttp loop, before")
            ]
            if round_number == 0:
                results.append(
                    await run_bare_in_process(
                        receiver, sample_bodies(events), secret, concurrency
                    )
                )
            # One commit: the worker faces the whole backlog at once, as the bare
            # loop does.
            results.append(
                await run_worker(
                    servers, receiver, events, events, concurrency, log_dir
                )
            )
            bare_after = await run_bare(
                receiver, sample_bodies(events), secret, concurrency, log_dir
            )
            results.append(
                dataclasses.replace(bare_after, name="bare aiohttp loop, after")
            )
            half_rate = (bare_before.rate + bare_after.rate) / 4
            results.append(
                await run_worker(
                    servers,
                    receiver,
                    events,
                    batch,
                    concurrency,
                    log_dir,
                    rate=half_rate,
                    name=f"salescycle worker at {half_rate:,.0f} events/s",
                )
            )
            measured.append(results)
    finally:
        await receiver.stop()
    return measured


@dataclass(frozen=True)
class RoundFigures:
    """The two figures of the targets in one round, and what they cost in CPU."""

    # The worker's rate over the mean of the bare runs before and after it.
    ratio: float
    # p99 from commit to receipt in the run paced at half the bare loop's rate.
    paced_p99_ms: float
    # The mean rate of the bare runs.
    bare_rate: float
    # CPU milliseconds a request of the bare sender and the receiver together, the
    # mean of the bare runs; None where not measured.
    bare_cpu_ms: float | None = None
    # CPU milliseconds a delivery of every process of the machine, in the worker's
    # run and in the paced run; None where not measured.
    worker_cpu_ms: float | None = None
    paced_cpu_ms: float | None = None
    # CPU milliseconds a delivery of the worker process alone, in the worker's run.
    worker_process_cpu_ms: float | None = None


def round_figures(results: list[RunResult]) -> RoundFigures:
    """Return the target figures of one round's results, in the order ``measure``
    gives them."""
    bare_before, worker, bare_after, paced = (
        result for result in results if result.name != IN_PROCESS
    )
    bare_rate = (bare_before.rate + bare_after.rate) / 2
    bare_cpu = [
        run.sender_cpu_ms + run.receiver_cpu_ms
        for run in (bare_before, bare_after)
        if run.sender_cpu_ms is not None and run.receiver_cpu_ms is not None
    ]
    return RoundFigures(
        ratio=worker.rate / bare_rate,
        paced_p99_ms=paced.p99_ms,
        bare_rate=bare_rate,
        bare_cpu_ms=statistics.mean(bare_cpu) if len(bare_cpu) == 2 else None,
        worker_cpu_ms=worker.machine_cpu_ms,
        paced_cpu_ms=paced.machine_cpu_ms,
        worker_process_cpu_ms=worker.sender_cpu_ms,
    )


def render(
    measured: list[list[RunResult]],
    events: int,
    concurrency: int,
    cpus: int | None = None,
) -> str:
    """Render every round's runs, then the median of each target figure over the
    rounds, with its range when there are several, and the CPUs the worker's runs
    would need at the target rate on a machine of ``cpus`` CPUs (this one's by
    default)."""
    lines = [
        f"webhook deliveries: {events:,} events, concurrency {concurrency}, "
        f"{len(measured)} {'round' if len(measured) == 1 else 'rounds'}",
        "",
        "CPU ms a delivery, of: the sender (the bare loop or the worker), PostgreSQL, "
        "the receiver, the producer, and every process of the machine together.",
        "",
        "| round | run | deliveries/s | p50 ms | p99 ms | events committed/s "
        "| sender CPU | PostgreSQL CPU | receiver CPU | producer CPU | machine CPU |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for number, results in enumerate(measured, start=1):
        for result in results:
            committed = _figure(result.commits_per_second, "{:,.0f}")
            cpu = " | ".join(
                _figure(value, "{:.3f}")
                for value in (
                    result.sender_cpu_ms,
                    result.postgres_cpu_ms,
                    result.receiver_cpu_ms,
                    result.producer_cpu_ms,
                    result.machine_cpu_ms,
                )
            )
            lines.append(
                f"| {number} | {result.name} | {result.rate:,.0f} "
                f"| {result.p50_ms:,.0f} | {result.p99_ms:,.0f} | {committed} "
                f"| {cpu} |"
            )
    figures = [round_figures(results) for results in measured]
    ratios = [figure.ratio for figure in figures]
    p99s = [figure.paced_p99_ms for figure in figures]
    lines.append("")
    lines.append(
        f"worker / bare: {_median(ratios, '{:.2f}x')} (target >= 0.50x); "
        f"p99 at half the bare rate: {_median(p99s, '{:,.0f} ms')} "
        "(target < 1,000 ms)"
    )
    budget = cpu_budget(figures, machine_cpus() if cpus is None else cpus)
    if budget:
        lines.append(budget)
    return "\n".join(lines)


def cpu_budget(figures: list[RoundFigures], cpus: int) -> str | None:
    """Say how many CPUs the worker's runs would use at half the bare loop's rate,
    at the CPU a delivery they measured, against the ``cpus`` of the machine.

    The throughput target sets the worker's run at half the bare rate, and the paced
    run commits at that rate. It also gives how many CPUs the worker process alone
    would use, since it sends an endpoint's deliveries from one thread. A run at
    that rate would take larger batches and might spend a little less a delivery,
    so the figures are estimates. Medians over the rounds; None unless every round
    measured every figure.
    """
    if not figures or any(
        figure.bare_cpu_ms is None
        or figure.worker_cpu_ms is None
        or figure.paced_cpu_ms is None
        or figure.worker_process_cpu_ms is None
        for figure in figures
    ):
        return None
    half_rate = statistics.median(figure.bare_rate for figure in figures) / 2
    bare = statistics.median(figure.bare_cpu_ms or 0.0 for figure in figures)
    worker = statistics.median(figure.worker_cpu_ms or 0.0 for figure in figures)
    paced = statistics.median(figure.paced_cpu_ms or 0.0 for figure in figures)
    process = statistics.median(
        figure.worker_process_cpu_ms or 0.0 for figure in figures
    )
    return (
        f"CPU at half the bare rate ({half_rate:,.0f} a second): the worker's run "
        f"{worker:.3f} ms a delivery, {worker * half_rate / 1000:.2f} CPUs; the "
        f"paced run {paced:.3f} ms, {paced * half_rate / 1000:.2f} CPUs; this "
        f"machine has {cpus}. The worker process alone {process:.3f} ms, "
        f"{process * half_rate / 1000:.2f} CPUs, on one thread. The bare sender "
        f"and the receiver take {bare:.3f} ms a request."
    )


def _median(values: list[float], layout: str) -> str:
    median = layout.format(statistics.median(values))
    if len(values) == 1:
        return median
    low, high = layout.format(min(values)), layout.format(max(values))
    return f"{median}, the median of {len(values)} rounds from {low} to {high}"


def _figure(value: float | None, layout: str) -> str:
    return "-" if value is None else layout.format(value)


def run_webhooks(events: int, batch: int, concurrency: int, rounds: int = 1) -> int:
    """Run the whole webhook workload ``rounds`` times and print its table; return
    the exit status."""
    with bench_servers() as servers:
        claim_and_prepare(
            servers, lambda message: print(message, file=sys.stderr, flush=True)
        )
        try:
            with tempfile.TemporaryDirectory(prefix="salescycle-bench-") as log_dir:
                measured = asyncio.run(
                    measure(servers, events, batch, concurrency, Path(log_dir), rounds)
                )
        except WebhookBenchFailed as error:
            print(f"benchmark failed: {error}", file=sys.stderr)
            return 1
        finally:
            release(servers)
    print(render(measured, events, concurrency))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.webhooks",
        description="Time webhook delivery by the worker against a bare aiohttp loop.",
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500, help="Events per commit.")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=1,
        help="Rounds of every run; medians are given.",
    )
    arguments = parser.parse_args(argv)
    return run_webhooks(
        arguments.events, arguments.batch, arguments.concurrency, arguments.rounds
    )


if __name__ == "__main__":
    sys.exit(main())
