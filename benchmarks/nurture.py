"""The nurture workload: many enrollments due at once, sent by the real worker.

The database gets one workspace, one sequence with a single email step and no delay,
and ``enrollments`` leads each enrolled with ``next_run_at`` in the past, copied in
with ``COPY`` as an enrolment of that many leads would leave them. Then
``python -m app.cli worker`` starts with the settings from the environment and an SMTP
server of its own (``benchmarks.smtp_sink``, on 127.0.0.1). Its start-up sweep leases
the due enrollments and queues their jobs, and each job claims, sends and records its
step. The time runs from the start of the worker process to the last message the
server receives.

The baseline, ``benchmarks.bare_mail``, is a process that composes the same messages
with ``compose`` and sends them with ``aiosmtplib`` from as many tasks as the worker
runs jobs (``worker_max_jobs``), to a fresh server of the same kind, timed the same
way. It runs before and after the worker, and the ratio uses the median of the two.

Every run must deliver each message once: the server must receive exactly
``enrollments`` messages with as many distinct Message-IDs, and after the worker, each
enrollment must have one ``sent`` step run and be completed. Anything else, or a run
that outlasts ``timeout_seconds``, fails the benchmark.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from app.core.db import Database
from app.core.ids import new_uuid
from app.models import Sequence, SequenceStep, Workspace
from app.settings import Settings
from benchmarks.environment import BenchServers, app_env, asyncpg_dsn
from benchmarks.seed import LEAD_COLUMNS
from benchmarks.servers import (
    ROOT,
    Server,
    free_port,
    log_tail,
    start_process,
    tree_cpu_seconds,
)

TITLE = "nurture emails"
BARE = "bare"
FULL = "worker"
SUBJECT = "{{ first_name | Hello }}, a faster month-end close for {{ company | you }}"
BODY = """Hi {{ first_name | there }},

Thanks for downloading our guide to closing the books. Teams like {{ company | yours }}
usually spend two days a month reconciling leads, deals and invoices by hand.

salescycle keeps the pipeline, the invoices and the payments in one place, so the
close becomes a report rather than a project. Reply to this email and we will set up
a 20 minute walkthrough on your own data.

Best regards,
The salescycle team
"""
ENROLLMENT_COLUMNS = (
    "id",
    "workspace_id",
    "sequence_id",
    "lead_id",
    "status",
    "next_position",
    "next_run_at",
)
SINK_READY_TIMEOUT_SECONDS = 30.0
STATUS_TIMEOUT_SECONDS = 10.0
POLL_SECONDS = 0.05
# After the worker recorded every step, how long to keep listening for a second copy
# of any message before the counts are final.
SETTLE_SECONDS = 2.0


class NurtureFailed(RuntimeError):
    """A run did not deliver every message exactly once within its time."""


@dataclass(frozen=True)
class NurtureSeed:
    workspace_id: uuid.UUID
    sequence_id: uuid.UUID
    step_id: uuid.UUID
    enrollments: int


@dataclass(frozen=True)
class MailRun:
    """One timed run. Times count from the start of the sending process."""

    label: str
    messages: int
    seconds: float
    first_message_seconds: float
    messages_per_second: float
    cpu_ms_per_message: float
    message_bytes: int
    # When 50 % and 90 % of the messages had arrived.
    half_seconds: float
    ninety_seconds: float
    # Worker only: until every step run was recorded as sent, and the PostgreSQL
    # transactions committed in the benchmark database per email meanwhile.
    recorded_seconds: float | None = None
    transactions_per_message: float | None = None


@dataclass(frozen=True)
class NurtureSummary:
    """The worker against the median of the bare runs before and after it."""

    title: str
    enrollments: int
    concurrency: int
    bare_runs: list[MailRun]
    full: MailRun
    bare_messages_per_second: float
    ratio: float
    ratio_target: float


def _lead_rows(
    workspace_id: uuid.UUID, lead_ids: list[uuid.UUID]
) -> list[tuple[object, ...]]:
    now = datetime.now(UTC)
    attributes = orjson.dumps({"plan": "trial"}).decode()
    rows: list[tuple[object, ...]] = []
    for number, lead_id in enumerate(lead_ids):
        email = f"lead{number}@nurture{number % 997}.example.com"
        rows.append(
            (
                lead_id,
                workspace_id,
                email,
                email,
                f"First{number}",
                f"Last{number}",
                f"Company {number % 5_000}",
                "Head of Finance",
                f"+4930{number:08d}",
                "Europe/Berlin",
                "web_form",
                "new",
                None,
                None,
                attributes,
                None,
                None,
                None,
                None,
                1,
                now,
                now,
            )
        )
    return rows


async def seed_nurture(database_url: str, *, enrollments: int) -> NurtureSeed:
    """Insert a workspace, a one-step sequence, and ``enrollments`` due enrollments."""
    database = Database(Settings(database_url=database_url, database_pool_size=1))
    try:
        async with database.session() as session:
            workspace = Workspace(id=new_uuid(), name="Nurture benchmark")
            session.add(workspace)
            await session.flush()
            sequence = Sequence(
                id=new_uuid(),
                workspace_id=workspace.id,
                name="Month-end close guide follow-up",
                status="active",
            )
            session.add(sequence)
            await session.flush()
            step = SequenceStep(
                id=new_uuid(),
                workspace_id=workspace.id,
                sequence_id=sequence.id,
                position=0,
                kind="email",
                subject=SUBJECT,
                body_text=BODY,
            )
            session.add(step)
            await session.commit()
    finally:
        await database.dispose()

    lead_ids = [new_uuid() for _ in range(enrollments)]
    due = datetime.now(UTC) - timedelta(seconds=1)
    enrollment_rows = [
        (new_uuid(), workspace.id, sequence.id, lead_id, "active", 0, due)
        for lead_id in lead_ids
    ]
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        async with connection.transaction():
            await connection.copy_records_to_table(
                "leads",
                records=_lead_rows(workspace.id, lead_ids),
                columns=LEAD_COLUMNS,
            )
            await connection.copy_records_to_table(
                "enrollments", records=enrollment_rows, columns=ENROLLMENT_COLUMNS
            )
        await connection.execute("ANALYZE leads, enrollments")
    finally:
        await connection.close()
    return NurtureSeed(
        workspace_id=workspace.id,
        sequence_id=sequence.id,
        step_id=step.id,
        enrollments=enrollments,
    )


class Sink:
    """A running ``benchmarks.smtp_sink`` process and the pipes to ask it for counts."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port

    @classmethod
    async def start(cls, log_dir: Path, name: str) -> Sink:
        port = free_port()
        log_file = (log_dir / f"{name}.log").open("wb")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.smtp_sink",
            "--port",
            str(port),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log_file,
        )
        log_file.close()
        sink = cls(process, port)
        try:
            line = await sink._read_line(SINK_READY_TIMEOUT_SECONDS)
            if line != b"ready":
                raise NurtureFailed(
                    f"the SMTP sink did not start: {line!r}\n"
                    f"{log_tail(log_dir / f'{name}.log')}"
                )
        except BaseException:
            await sink.stop()
            raise
        return sink

    async def _read_line(self, seconds: float) -> bytes:
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(seconds):
                line = await self.process.stdout.readline()
        except TimeoutError:
            raise NurtureFailed(
                f"the SMTP sink did not answer within {seconds:.0f} s"
            ) from None
        return line.strip()

    async def status(self) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(b"status\n")
        await self.process.stdin.drain()
        line = await self._read_line(STATUS_TIMEOUT_SECONDS)
        if not line:
            raise NurtureFailed("the SMTP sink exited")
        status: dict[str, Any] = orjson.loads(line)
        return status

    async def stop(self) -> None:
        if self.process.returncode is None:
            if self.process.stdin is not None:
                self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), STATUS_TIMEOUT_SECONDS)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def _wait_for_messages(
    sink: Sink, count: int, deadline: float, sender: Server
) -> dict[str, Any]:
    """Poll the sink until ``count`` distinct messages arrived; fail at ``deadline``."""
    while True:
        status = await sink.status()
        if status["distinct_message_ids"] >= count:
            return status
        if time.monotonic() > deadline:
            raise NurtureFailed(
                f"{sender.name}: {status['distinct_message_ids']} of {count} "
                f"messages arrived in time ({status['messages']} received in all)"
                f"\n{log_tail(sender.log_path)}"
            )
        if sender.process.returncode is not None:
            # A last look: the final messages may have arrived since the poll.
            status = await sink.status()
            if status["distinct_message_ids"] >= count:
                return status
            raise NurtureFailed(
                f"{sender.name} exited with status {sender.process.returncode} after "
                f"{status['distinct_message_ids']} of {count} messages"
                f"\n{log_tail(sender.log_path)}"
            )
        await asyncio.sleep(POLL_SECONDS)


def check_counts(name: str, status: dict[str, Any], count: int) -> None:
    if (
        status["messages"] != count
        or status["distinct_message_ids"] != count
        or status["without_message_id"]
    ):
        raise NurtureFailed(
            f"{name}: the SMTP server received {status['messages']} messages with "
            f"{status['distinct_message_ids']} distinct Message-IDs "
            f"({status['without_message_id']} without one); expected exactly {count}"
        )


def _mail_run(
    label: str,
    status: dict[str, Any],
    launched: float,
    cpu_seconds: float,
    recorded: float | None = None,
    transactions: int | None = None,
) -> MailRun:
    messages = int(status["messages"])
    seconds = float(status["last"]) - launched
    deciles = status["deciles"] or [status["last"]] * 9
    return MailRun(
        label=label,
        messages=messages,
        seconds=round(seconds, 3),
        first_message_seconds=round(float(status["first"]) - launched, 3),
        messages_per_second=round(messages / seconds, 1),
        cpu_ms_per_message=round(cpu_seconds * 1000 / messages, 3),
        message_bytes=round(status["bytes"] / messages),
        half_seconds=round(float(deciles[4]) - launched, 3),
        ninety_seconds=round(float(deciles[8]) - launched, 3),
        recorded_seconds=round(recorded - launched, 3) if recorded else None,
        transactions_per_message=(
            round(transactions / messages, 2) if transactions is not None else None
        ),
    )


async def run_bare(
    servers: BenchServers,
    seeded: NurtureSeed,
    *,
    label: str,
    concurrency: int,
    timeout_seconds: float,
    log_dir: Path,
) -> MailRun:
    """Send every message with the bare loop and time it."""
    slug = label.replace(" ", "-")
    sink = await Sink.start(log_dir, f"sink-{slug}")
    name = f"bare-mail-{slug}"
    try:
        launched = time.monotonic()
        sender = await start_process(
            name,
            [
                sys.executable,
                "-m",
                "benchmarks.bare_mail",
                "--dsn",
                asyncpg_dsn(servers.database_url),
                "--workspace",
                str(seeded.workspace_id),
                "--port",
                str(sink.port),
                "--concurrency",
                str(concurrency),
                "--timeout",
                repr(timeout_seconds),
            ],
            app_env(servers),
            log_dir,
        )
        try:
            await _wait_for_messages(
                sink, seeded.enrollments, launched + timeout_seconds, sender
            )
            try:
                async with asyncio.timeout(STATUS_TIMEOUT_SECONDS):
                    await sender.process.wait()
            except TimeoutError:
                raise NurtureFailed(
                    f"{name} sent every message but did not exit within "
                    f"{STATUS_TIMEOUT_SECONDS:.0f} s\n{log_tail(sender.log_path)}"
                ) from None
        finally:
            await sender.stop()
        final = await sink.status()
    finally:
        await sink.stop()
    check_counts(name, final, seeded.enrollments)
    output = log_tail(sender.log_path)
    try:
        summary: dict[str, Any] = orjson.loads(output.strip().splitlines()[-1])
    except (IndexError, orjson.JSONDecodeError):
        raise NurtureFailed(f"{name} printed no summary:\n{output}") from None
    if summary["failed"]:
        raise NurtureFailed(
            f"{name}: {summary['failed']} sends failed, first: {summary['first_error']}"
        )
    return _mail_run(label, final, launched, float(summary["cpu_seconds"]))


async def _committed_transactions(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        # PostgreSQL 15 backends flush their statistics at most once a second and when
        # they exit, so the count is read after a pause. It includes the harness's own
        # few queries.
        await asyncio.sleep(1.0)
        count: int = await connection.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return count
    finally:
        await connection.close()


async def _step_run_counts(dsn: str, seeded: NurtureSeed) -> dict[str, int]:
    connection = await asyncpg.connect(dsn)
    try:
        runs = await connection.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'sent') AS sent, "
            "count(*) AS runs, count(DISTINCT enrollment_id) AS enrollments, "
            "coalesce(max(attempts), 0) AS max_attempts "
            "FROM step_runs WHERE workspace_id = $1",
            seeded.workspace_id,
        )
        completed = await connection.fetchval(
            "SELECT count(*) FROM enrollments "
            "WHERE workspace_id = $1 AND status = 'completed'",
            seeded.workspace_id,
        )
    finally:
        await connection.close()
    return {**dict(runs), "completed": completed}


async def _wait_recorded(
    dsn: str, seeded: NurtureSeed, deadline: float, worker: Server
) -> tuple[float, dict[str, int]]:
    """Poll until every step run is recorded as sent; return when and the counts."""
    while True:
        counts = await _step_run_counts(dsn, seeded)
        if counts["sent"] >= seeded.enrollments:
            return time.monotonic(), counts
        if time.monotonic() > deadline or worker.process.returncode is not None:
            raise NurtureFailed(
                f"{worker.name}: {counts['sent']} of {seeded.enrollments} step runs "
                f"recorded as sent in time ({counts})\n{log_tail(worker.log_path)}"
            )
        await asyncio.sleep(POLL_SECONDS * 4)


def worker_env(servers: BenchServers, smtp_port: int) -> dict[str, str]:
    """The worker's settings: the production defaults, and the sink as mail server."""
    return {
        **app_env(servers),
        "SALESCYCLE_SMTP_HOST": "127.0.0.1",
        "SALESCYCLE_SMTP_PORT": str(smtp_port),
        "SALESCYCLE_SMTP_STARTTLS": "false",
    }


async def run_worker(
    servers: BenchServers,
    seeded: NurtureSeed,
    *,
    timeout_seconds: float,
    log_dir: Path,
) -> MailRun:
    """Start the worker on the due enrollments and time it until every step is sent."""
    sink = await Sink.start(log_dir, "sink-worker")
    dsn = asyncpg_dsn(servers.database_url)
    try:
        committed_before = await _committed_transactions(dsn)
        launched = time.monotonic()
        worker = await start_process(
            "nurture-worker",
            [sys.executable, "-m", "app.cli", "worker"],
            worker_env(servers, sink.port),
            log_dir,
        )
        deadline = launched + timeout_seconds
        try:
            await _wait_for_messages(sink, seeded.enrollments, deadline, worker)
            recorded, counts = await _wait_recorded(dsn, seeded, deadline, worker)
            cpu_seconds = tree_cpu_seconds(worker.pid)
            await asyncio.sleep(SETTLE_SECONDS)
            counts = await _step_run_counts(dsn, seeded)
        finally:
            await worker.stop()
        transactions = await _committed_transactions(dsn) - committed_before
        final = await sink.status()
    finally:
        await sink.stop()
    check_counts(worker.name, final, seeded.enrollments)
    expected = {
        "sent": seeded.enrollments,
        "runs": seeded.enrollments,
        "enrollments": seeded.enrollments,
        "max_attempts": 1,
        "completed": seeded.enrollments,
    }
    if counts != expected:
        raise NurtureFailed(
            f"{worker.name}: the step runs do not show one send per enrollment: "
            f"{counts}, expected {expected}"
        )
    return _mail_run(FULL, final, launched, cpu_seconds, recorded, transactions)


async def measure_nurture(
    servers: BenchServers,
    *,
    enrollments: int,
    timeout_seconds: float,
    ratio_target: float,
    log_dir: Path,
    progress: Callable[[str], None] = lambda message: None,
) -> NurtureSummary:
    """Time the bare loop, the worker, and the bare loop again, on the same messages."""
    if enrollments < 1:
        raise NurtureFailed(
            f"The nurture workload needs at least one enrollment, got {enrollments}."
        )
    progress(f"seeding {enrollments} due enrollments")
    seeded = await seed_nurture(servers.database_url, enrollments=enrollments)
    concurrency = Settings().worker_max_jobs
    bare_runs: list[MailRun] = []
    full: MailRun | None = None
    for label in (f"{BARE} before", FULL, f"{BARE} after"):
        progress(f"sending {enrollments} emails: {label}, {concurrency} at once")
        if label == FULL:
            full = await run_worker(
                servers, seeded, timeout_seconds=timeout_seconds, log_dir=log_dir
            )
        else:
            bare_runs.append(
                await run_bare(
                    servers,
                    seeded,
                    label=label,
                    concurrency=concurrency,
                    timeout_seconds=timeout_seconds,
                    log_dir=log_dir,
                )
            )
    assert full is not None
    bare_rate = statistics.median(run.messages_per_second for run in bare_runs)
    return NurtureSummary(
        title=f"{TITLE} ({enrollments} due at once)",
        enrollments=enrollments,
        concurrency=concurrency,
        bare_runs=bare_runs,
        full=full,
        bare_messages_per_second=round(bare_rate, 1),
        ratio=round(full.messages_per_second / bare_rate, 3),
        ratio_target=ratio_target,
    )


def render_nurture(summary: NurtureSummary) -> list[str]:
    lines = [
        "",
        f"{summary.title}: the worker against a bare aiosmtplib loop, "
        f"{summary.concurrency} sends at once; seconds from the start of each process",
        f"{'run':<24}{'emails':>8}{'first s':>9}{'50 % s':>9}{'90 % s':>9}"
        f"{'last s':>9}{'emails/s':>10}{'CPU ms/email':>14}{'bytes':>7}",
    ]
    for run in [*summary.bare_runs, summary.full]:
        lines.append(
            f"{run.label:<24}{run.messages:>8}{run.first_message_seconds:>9.2f}"
            f"{run.half_seconds:>9.2f}{run.ninety_seconds:>9.2f}{run.seconds:>9.2f}{run.messages_per_second:>10.1f}"
            f"{run.cpu_ms_per_message:>14.3f}{run.message_bytes:>7}"
        )
    if summary.full.recorded_seconds is not None:
        lines.append(
            f"{'':<24}every step run recorded as sent at "
            f"{summary.full.recorded_seconds:.2f} s, "
            f"{summary.full.transactions_per_message} PostgreSQL transactions per email"
        )
    lines.append(f"{'worker/bare':<24}{'':<44}{summary.ratio:>9.2f}x")
    return lines
