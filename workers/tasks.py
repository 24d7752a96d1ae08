"""Thin arq entry points: each binds the job's log context, opens a session, calls a
feature service, commits, and sends the jobs the service deferred.

arq may run a job more than once (a retry, a killed worker, a duplicate enqueue),
so every service called here is idempotent: it claims its row in PostgreSQL first and
does nothing when the work is already done.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import structlog
from arq import cron
from arq.utils import timestamp_ms
from sqlalchemy.ext.asyncio import AsyncSession

from app.activities.service import activity_service
from app.billing import reconciliation
from app.billing.debt import debt_service
from app.billing.dunning import dunning_runner
from app.billing.providers.inbox import drain_job, provider_event_service
from app.billing.reconciliation import reconciliation_service
from app.billing.sends import invoice_send_service
from app.core.db import Database, defer_job, drop_pending_jobs
from app.core.events import acting_as_system
from app.core.idempotency import prune_expired
from app.core.jobs import JobQueue
from app.leads import imports as lead_imports
from app.leads.scoring import RESCORE_BATCH, lead_scoring
from app.nurture import enrolment_jobs
from app.nurture.backlog import sweep_limit
from app.nurture.enrolment_jobs import enrollment_job_service
from app.nurture.mailer import Mailer, create_mailer
from app.nurture.runner import SWEEP_BATCH, step_runner
from app.opportunities.proposals import proposal_service
from app.opportunities.service import opportunity_service
from app.settings import Settings
from app.webhooks import delivery as webhook_delivery
from app.webhooks import dispatch as webhook_dispatch
from app.webhooks import recovery as webhook_recovery
from app.webhooks.loop import DeliveryLoop
from app.webhooks.recovery import webhook_recovery_service
from app.webhooks.sender import WebhookSender
from app.webhooks.service import event_service

log = structlog.get_logger(__name__)


@asynccontextmanager
async def unit_of_work(ctx: dict[str, Any]) -> AsyncIterator[AsyncSession]:
    """Open a session for a job; commit on success, then enqueue deferred jobs.

    The events emitted in it without an actor name ``system``.
    """
    database: Database = ctx["db"]
    queue: JobQueue = ctx["queue"]
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        job_id=ctx.get("job_id"),
        job_try=ctx.get("job_try"),
        request_id=ctx.get("request_id"),
    )
    async with database.sessionmaker() as session:
        try:
            with acting_as_system():
                yield session
            await session.commit()
        except BaseException:
            drop_pending_jobs(session)
            await session.rollback()
            raise
    await queue.send_pending(session)


async def prune_idempotency_keys(ctx: dict[str, Any]) -> int:
    async with unit_of_work(ctx) as session:
        removed = await prune_expired(session)
    if removed:
        log.info("idempotency.pruned", count=removed)
    return removed


def _lease(ctx: dict[str, Any]) -> timedelta:
    return timedelta(seconds=ctx["settings"].claim_lease_seconds)


async def process_provider_event(
    ctx: dict[str, Any], provider_event_id: str
) -> str | None:
    """Apply a stored payment provider event and a batch of others received meanwhile.

    Return the named event's outcome, or None when it is done or leased elsewhere.
    """
    event_id = uuid.UUID(provider_event_id)
    async with unit_of_work(ctx) as session:
        claimed = await provider_event_service.claim_batch(
            session, event_id, _lease(ctx)
        )
    if not claimed:
        log.info("provider_event.not_claimed", provider_event_id=provider_event_id)
        return None
    outcomes = await _run_provider_events(ctx, claimed)
    return outcomes[event_id]


PROVIDER_DRAIN = "provider_drain"
# Drains one worker process runs at once. Two keep a batch's statements going while
# the other waits for PostgreSQL.
DRAIN_LANES = 2


class ProviderDrain:
    """The drains of one worker process: at most ``DRAIN_LANES`` at once.

    A drain leases and applies batches until a claim finds nothing. A drain job that
    arrives while every lane is busy only makes them claim once more before they
    stop, so an event stored while the last claim ran is still taken.
    """

    def __init__(self) -> None:
        self.running = 0
        self._again = False

    async def run(self, ctx: dict[str, Any]) -> int:
        """Drain the inbox; return how many events this call leased."""
        if self.running >= DRAIN_LANES:
            self._again = True
            return 0
        self.running += 1
        try:
            return await self._drain(ctx)
        finally:
            self.running -= 1

    async def _drain(self, ctx: dict[str, Any]) -> int:
        # Half the job timeout, then the next job continues.
        deadline = time.monotonic() + ctx["settings"].worker_job_timeout_seconds / 2
        total = 0
        while True:
            self._again = False
            async with unit_of_work(ctx) as session:
                claimed = await provider_event_service.claim_next(session, _lease(ctx))
            if not claimed:
                if self._again:
                    continue
                return total
            await _run_provider_events(ctx, claimed)
            total += len(claimed)
            if time.monotonic() > deadline:
                await ctx["queue"].enqueue(drain_job(timestamp_ms()))
                log.info("provider_event.drain_continued", count=total)
                return total


async def drain_provider_events(ctx: dict[str, Any]) -> int:
    """Apply every received provider event, in batches; return how many were leased."""
    # arq gives each job a copy of the worker's context, so the drain shared by the
    # jobs of a process is made at startup.
    drain: ProviderDrain = ctx.setdefault(PROVIDER_DRAIN, ProviderDrain())
    return await drain.run(ctx)


async def start_provider_drain(ctx: dict[str, Any]) -> None:
    ctx[PROVIDER_DRAIN] = ProviderDrain()


async def sweep_provider_events(ctx: dict[str, Any]) -> int:
    """Process received provider events whose job was lost or whose lease lapsed."""
    async with unit_of_work(ctx) as session:
        claimed = await provider_event_service.claim_due(session, _lease(ctx))
    if claimed:
        await _run_provider_events(ctx, claimed)
        log.info("provider_event.swept", count=len(claimed))
    return len(claimed)


async def _run_provider_events(
    ctx: dict[str, Any], event_ids: list[uuid.UUID]
) -> dict[uuid.UUID, str | None]:
    """Apply leased events in one transaction, or one by one if that one fails.

    One commit for the batch spares a BEGIN, a COMMIT and a WAL flush per event. An
    unexpected error rolls the whole batch back, and each event then runs in a
    transaction of its own, so only the failing one records an error.
    """
    if len(event_ids) > 1:
        try:
            async with unit_of_work(ctx) as session:
                outcomes = await provider_event_service.process_batch(
                    session, event_ids
                )
            log.info("provider_event.batch_processed", count=len(event_ids))
            return outcomes
        except Exception as error:
            log.warning(
                "provider_event.batch_failed", count=len(event_ids), error=repr(error)
            )
    return {
        event_id: await _run_provider_event(ctx, event_id) for event_id in event_ids
    }


async def _run_provider_event(ctx: dict[str, Any], event_id: uuid.UUID) -> str | None:
    try:
        async with unit_of_work(ctx) as session:
            return await provider_event_service.process(session, event_id)
    except Exception as error:
        # The claim committed, so the attempt counts; the sweep retries after the lease.
        log.exception("provider_event.process_failed", provider_event_id=str(event_id))
        async with unit_of_work(ctx) as session:
            return await provider_event_service.record_failure(
                session, event_id, repr(error)
            )


async def run_reconciliation(
    ctx: dict[str, Any], reconciliation_run_id: str
) -> str | None:
    """Compare one queued reconciliation run with the provider, unless it is leased."""
    run_id = uuid.UUID(reconciliation_run_id)
    async with unit_of_work(ctx) as session:
        claimed = await reconciliation_service.claim(session, run_id, _lease(ctx))
    if not claimed:
        log.info("reconciliation_run.not_claimed", reconciliation_run_id=str(run_id))
        return None
    return await reconciliation.execute(
        lambda: unit_of_work(ctx), ctx["settings"], run_id
    )


async def sweep_reconciliation_runs(ctx: dict[str, Any]) -> int:
    """Run reconciliation runs whose job was lost or whose worker died."""
    async with unit_of_work(ctx) as session:
        claimed = await reconciliation_service.claim_due(session, _lease(ctx))
    for run_id in claimed:
        await reconciliation.execute(lambda: unit_of_work(ctx), ctx["settings"], run_id)
    return len(claimed)


WEBHOOK_SENDER = "webhook_sender"
WEBHOOK_LOOP = "webhook_loop"


async def dispatch_event(
    ctx: dict[str, Any], event_id: str, more_event_ids: list[str] | None = None
) -> int:
    """Create the webhook deliveries of the events of one transaction; return how
    many were created.

    In a worker whose delivery loop runs, the loop dispatches events in bulk, so
    the job only wakes it and returns 0.
    """
    loop: DeliveryLoop | None = ctx.get(WEBHOOK_LOOP)
    if loop is not None:
        loop.wake()
        return 0
    created = 0
    for one in (event_id, *(more_event_ids or [])):
        async with unit_of_work(ctx) as session:
            made = await webhook_dispatch.dispatch_event(session, uuid.UUID(one))
        created += len(made or [])
    return created


async def deliver_webhook(ctx: dict[str, Any], delivery_id: str) -> str:
    """Make one attempt of a webhook delivery now, if it is due; return its outcome.

    The delivery loop sends every due delivery; this job sends one at once, as
    after a manual retry.
    """
    settings: Settings = ctx["settings"]
    async with unit_of_work(ctx) as session:
        claims = await webhook_delivery.lease(
            session,
            settings,
            limit=1,
            owner=uuid.uuid4(),
            only=[uuid.UUID(delivery_id)],
        )
    if not claims:
        return "skipped"
    sender: WebhookSender = ctx[WEBHOOK_SENDER]
    result = await sender.send(claims[0].request)
    async with unit_of_work(ctx) as session:
        [outcome] = await webhook_delivery.record(
            session, settings, [(claims[0], result)]
        )
    return outcome


def delivery_loop(ctx: dict[str, Any]) -> DeliveryLoop:
    """Build a delivery loop on the worker's sessions and webhook sender."""
    return DeliveryLoop(
        lambda: unit_of_work(ctx),
        ctx[WEBHOOK_SENDER],
        ctx["settings"],
        serial_transactions=ctx["db"].shares_one_connection,
    )


# A recovery job runs at most this many batches, then queues its continuation, so it
# stays far below the job timeout.
RECOVERY_BATCHES_PER_JOB = 20


async def recover_webhook_deliveries(ctx: dict[str, Any], recovery_id: str) -> int:
    """Queue again an endpoint's failed deliveries, and create the missing ones when
    asked; return how many deliveries this run queued."""
    total = 0
    for _ in range(RECOVERY_BATCHES_PER_JOB):
        async with unit_of_work(ctx) as session:
            batch = await webhook_recovery_service.run_batch(
                session, uuid.UUID(recovery_id)
            )
        if batch is None:
            return total
        total += batch.requeued + batch.created
        if batch.finished:
            return total
    async with unit_of_work(ctx) as session:
        defer_job(
            session,
            webhook_recovery.RECOVER_JOB,
            recovery_id,
            job_id=f"{webhook_recovery.recover_job_id(uuid.UUID(recovery_id))}:"
            f"{uuid.uuid4().hex}",
        )
    return total


async def catch_up_webhook_endpoint(ctx: dict[str, Any], endpoint_id: str) -> int:
    """Give a new endpoint the deliveries its creation raced with; return how many."""
    until: datetime | None = None
    after_id = None
    total = 0
    while True:
        async with unit_of_work(ctx) as session:
            if until is None:
                until = await webhook_recovery_service.catch_up_until(session)
            batch = await webhook_recovery_service.catch_up_batch(
                session, uuid.UUID(endpoint_id), until=until, after_id=after_id
            )
        if batch is None:
            return total
        total += batch.created
        if batch.finished:
            return total
        after_id = batch.last_event_id


# One prune run deletes at most PRUNE_BATCHES * PRUNE_BATCH events, one transaction
# per batch; a larger backlog drains over the following hourly runs.
PRUNE_BATCH = 1000
PRUNE_BATCHES = 100


async def prune_events(ctx: dict[str, Any]) -> int:
    """Delete events, with their deliveries, older than the retention period."""
    settings: Settings = ctx["settings"]
    retention = timedelta(days=settings.event_retention_days)
    total = 0
    for _ in range(PRUNE_BATCHES):
        async with unit_of_work(ctx) as session:
            removed = await event_service.prune(
                session, retention=retention, limit=PRUNE_BATCH
            )
        total += removed
        if removed < PRUNE_BATCH:
            break
    if total:
        log.info(
            "event.pruned", count=total, retention_days=settings.event_retention_days
        )
    return total


async def sweep_webhooks(ctx: dict[str, Any]) -> int:
    """Enqueue again the events and recoveries whose jobs were lost.

    In a worker whose delivery loop runs, the loop dispatches every undispatched event
    from PostgreSQL, so no dispatch job is queued. A backlog of events would otherwise
    queue a job for each of them, and each job would only wake the loop.
    """
    loop: DeliveryLoop | None = ctx.get(WEBHOOK_LOOP)
    async with unit_of_work(ctx) as session:
        result = await webhook_dispatch.sweep(session, requeue_events=loop is None)
    if loop is not None:
        loop.wake()
    return result.events


async def start_webhook_sender(ctx: dict[str, Any]) -> None:
    ctx[WEBHOOK_SENDER] = WebhookSender(ctx["settings"])


async def start_delivery_loop(ctx: dict[str, Any]) -> None:
    loop = delivery_loop(ctx)
    loop.start()
    ctx[WEBHOOK_LOOP] = loop


async def stop_delivery_loop(ctx: dict[str, Any]) -> None:
    loop: DeliveryLoop | None = ctx.pop(WEBHOOK_LOOP, None)
    if loop is not None:
        await loop.stop()


async def close_webhook_sender(ctx: dict[str, Any]) -> None:
    sender: WebhookSender | None = ctx.pop(WEBHOOK_SENDER, None)
    if sender is not None:
        await sender.close()


async def run_enrollment_step(ctx: dict[str, Any], enrollment_id: str) -> str:
    mailer: Mailer = ctx.get("mailer") or create_mailer(ctx["settings"])
    return await step_runner.run(
        lambda: unit_of_work(ctx),
        mailer,
        ctx["settings"],
        uuid.UUID(enrollment_id),
        webhook_sender=ctx.get(WEBHOOK_SENDER),
    )


# At most this many batches per sweep, so one run stays well inside its job timeout.
# The next sweep, seconds later, takes the rest.
MAX_SWEEP_BATCHES = 20


async def sweep_due_enrollments(ctx: dict[str, Any]) -> int:
    """Lease due enrollments whose job was lost, as many as the queue has room for."""
    settings: Settings = ctx["settings"]
    remaining = await sweep_limit(ctx["queue"], settings)
    claimed = 0
    for _ in range(MAX_SWEEP_BATCHES):
        limit = min(SWEEP_BATCH, remaining)
        if limit <= 0:
            break
        async with unit_of_work(ctx) as session:
            count = await step_runner.sweep(session, settings, limit=limit)
        claimed += count
        remaining -= count
        if count < limit:
            break
    return claimed


async def send_invoice_email(ctx: dict[str, Any], invoice_send_id: str) -> str:
    """Make one attempt to email an invoice with its PDF; a finished send is skipped."""
    mailer: Mailer = ctx.get("mailer") or create_mailer(ctx["settings"])
    return await invoice_send_service.run(
        lambda: unit_of_work(ctx), mailer, ctx["settings"], uuid.UUID(invoice_send_id)
    )


async def sweep_invoice_sends(ctx: dict[str, Any]) -> int:
    """Queue again the invoice emails whose job was lost or whose lease lapsed."""
    async with unit_of_work(ctx) as session:
        return await invoice_send_service.sweep(session)


async def start_mailer(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    ctx["mailer"] = create_mailer(settings)
    log.info("mailer.started", mailer=type(ctx["mailer"]).__name__)
    default_secret = Settings.model_fields["signing_secret"].default
    if settings.signing_secret == default_secret and settings.env == "production":
        log.error(
            "mailer.default_signing_secret",
            hint="Set SALESCYCLE_SIGNING_SECRET, or anyone can forge unsubscribe links.",
        )


async def rescore_leads(ctx: dict[str, Any], workspace_id: str) -> int:
    """Rescore a workspace's open leads scored with an older version, in batches."""
    workspace = uuid.UUID(workspace_id)
    rescored = 0
    after: uuid.UUID | None = None
    for _ in range(MAX_SWEEP_BATCHES):
        async with unit_of_work(ctx) as session:
            count, after = await lead_scoring.rescore_stale(
                session, workspace, after=after
            )
        rescored += count
        if after is None:
            break
    log.info("lead_scores.job_done", workspace_id=workspace_id, count=rescored)
    return rescored


async def sweep_lead_scores(ctx: dict[str, Any]) -> int:
    """Rescore leads left stale by a lost job, and those whose points decayed."""
    rescored = 0
    async with unit_of_work(ctx) as session:
        workspaces = await lead_scoring.stale_workspaces(session)
    for workspace_id in workspaces:
        rescored += await rescore_leads(ctx, str(workspace_id))
    for _ in range(MAX_SWEEP_BATCHES):
        async with unit_of_work(ctx) as session:
            count = await lead_scoring.rescore_due(session)
        rescored += count
        if count < RESCORE_BATCH:
            break
    return rescored


# Tasks marked overdue per sweep; the next sweep takes the rest.
OVERDUE_BATCH = 500


async def sweep_overdue_activities(ctx: dict[str, Any]) -> int:
    """Emit activity.overdue once for each task that passed its due date."""
    async with unit_of_work(ctx) as session:
        return await activity_service.sweep_overdue(session, batch=OVERDUE_BATCH)


# Invoices marked overdue per sweep; the next sweep takes the rest.
OVERDUE_INVOICE_BATCH = 500


async def sweep_overdue_invoices(ctx: dict[str, Any]) -> int:
    """Emit invoice.overdue once for each open invoice past the end of its due date."""
    async with unit_of_work(ctx) as session:
        return await debt_service.sweep_overdue(session, batch=OVERDUE_INVOICE_BATCH)


async def sweep_dunning(ctx: dict[str, Any]) -> int:
    """Settle promises to pay and send the dunning reminders that are due."""
    mailer: Mailer = ctx.get("mailer") or create_mailer(ctx["settings"])
    return await dunning_runner.run(lambda: unit_of_work(ctx), mailer, ctx["settings"])


# Opportunities flagged rotting per sweep; the next sweep takes the rest.
ROTTING_BATCH = 500


async def sweep_rotting_opportunities(ctx: dict[str, Any]) -> int:
    """Flag open opportunities idle for their stage's rotting days, once per spell."""
    async with unit_of_work(ctx) as session:
        return await opportunity_service.sweep_rotting(session, batch=ROTTING_BATCH)


# Proposals announced as expired per sweep; the next sweep takes the rest.
EXPIRED_PROPOSAL_BATCH = 500


async def sweep_expired_proposals(ctx: dict[str, Any]) -> int:
    """Emit proposal.expired once for each sent proposal past its validity."""
    async with unit_of_work(ctx) as session:
        return await proposal_service.sweep_expired(
            session, batch=EXPIRED_PROPOSAL_BATCH
        )


async def run_lead_import(ctx: dict[str, Any], lead_import_id: str) -> str:
    """Run a CSV import from its next row, for at most settings.import_run_seconds."""
    settings: Settings = ctx["settings"]
    import_id = uuid.UUID(lead_import_id)
    async with unit_of_work(ctx) as session:
        claimed = await lead_imports.lead_import_service.claim(
            session, import_id, _lease(ctx)
        )
    if claimed is None:
        log.info("lead_import.not_claimed", lead_import_id=lead_import_id)
        return "not_claimed"
    return await lead_imports.run_import(
        lambda: unit_of_work(ctx),
        import_id,
        settings,
        budget_seconds=settings.import_run_seconds,
    )


async def sweep_lead_imports(ctx: dict[str, Any]) -> int:
    """Defer a run for each unfinished import whose job was lost or lease lapsed."""
    async with unit_of_work(ctx) as session:
        return await lead_imports.lead_import_service.sweep(session)


async def run_enrollment_job(ctx: dict[str, Any], enrollment_job_id: str) -> str:
    """Enroll the leads of a job from its cursor, for at most a run's budget."""
    settings: Settings = ctx["settings"]
    job_id = uuid.UUID(enrollment_job_id)
    async with unit_of_work(ctx) as session:
        claimed = await enrollment_job_service.claim(session, job_id, _lease(ctx))
    if claimed is None:
        log.info("enrollment_job.not_claimed", enrollment_job_id=enrollment_job_id)
        return "not_claimed"
    return await enrolment_jobs.run_job(
        lambda: unit_of_work(ctx),
        job_id,
        settings,
        budget_seconds=settings.enrollment_job_run_seconds,
    )


async def sweep_enrollment_jobs(ctx: dict[str, Any]) -> int:
    """Defer a run for each unfinished enrollment job whose job was lost or lease lapsed."""
    async with unit_of_work(ctx) as session:
        return await enrollment_job_service.sweep(session)


Hook = Callable[[dict[str, Any]], Awaitable[None]]

# Features add their entry points, cron jobs and per-process resources (an HTTP client,
# a mailer) here.
FUNCTIONS: list[Any] = [
    prune_idempotency_keys,
    process_provider_event,
    drain_provider_events,
    sweep_provider_events,
    run_reconciliation,
    sweep_reconciliation_runs,
    dispatch_event,
    deliver_webhook,
    sweep_webhooks,
    recover_webhook_deliveries,
    catch_up_webhook_endpoint,
    run_enrollment_step,
    sweep_due_enrollments,
    rescore_leads,
    sweep_lead_scores,
    sweep_overdue_activities,
    sweep_rotting_opportunities,
    sweep_expired_proposals,
    sweep_overdue_invoices,
    sweep_dunning,
    run_lead_import,
    sweep_lead_imports,
    run_enrollment_job,
    sweep_enrollment_jobs,
    send_invoice_email,
    sweep_invoice_sends,
]
# Sweeps find due work in PostgreSQL whose job was lost; the worker runs each one every
# settings.sweep_interval_seconds, and once at startup.
SWEEPS: list[Any] = [
    sweep_provider_events,
    sweep_reconciliation_runs,
    sweep_webhooks,
    sweep_due_enrollments,
    sweep_lead_scores,
    sweep_overdue_activities,
    sweep_rotting_opportunities,
    sweep_expired_proposals,
    sweep_overdue_invoices,
    sweep_dunning,
    sweep_lead_imports,
    sweep_enrollment_jobs,
    sweep_invoice_sends,
]
CRON_JOBS: list[Any] = [
    cron(prune_events, minute={17}, run_at_startup=False),
]
# The delivery loop starts after the sender it sends with, and stops before it.
STARTUP_HOOKS: list[Hook] = [
    start_webhook_sender,
    start_delivery_loop,
    start_mailer,
    start_provider_drain,
]
SHUTDOWN_HOOKS: list[Hook] = [stop_delivery_loop, close_webhook_sender]
