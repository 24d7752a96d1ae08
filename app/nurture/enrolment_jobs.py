"""Enrolling every lead that matches a filter, as a background job.

``POST /v1/sequences/{id}/enrollment-jobs`` checks the filter, stores a ``queued`` job
and defers a ``run_enrollment_job`` arq job. The run walks the matching leads with the
keyset cursor of ``GET /v1/leads`` (sort ``created_at``, oldest first), in chunks of
``settings.enrollment_job_chunk_leads``. Each chunk commits its enrollments, their
events, the counts and the cursor after its last lead in one transaction. That
transaction locks the job and checks the cursor first, so no chunk is processed twice,
even when two runs race or a run dies mid-chunk. The unique index of running
enrollments guards each lead as well. A run stops after
``settings.enrollment_job_run_seconds`` and defers its continuation. The sweep restarts
a job whose lease has lapsed.

Only leads created no later than the job are matched, so leads captured while it runs
do not keep it going.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.db import defer_job
from app.core.errors import FieldError, InvalidInput
from app.core.events import emit
from app.leads.listing import listing_filters
from app.leads.service import lead_service
from app.models import EnrollmentJob
from app.nurture.enrolment_batch import BatchItem, enroll_one
from app.nurture.enrolment_jobs_repository import EnrollmentJobRepository
from app.nurture.enrolment_schemas import EnrollmentJob as EnrollmentJobSchema
from app.nurture.enrolment_schemas import EnrollmentJobCreate, EnrollmentJobFilter
from app.nurture.errors import EnrollmentJobNotFound
from app.nurture.service import check_not_archived, sequence_service
from app.settings import Settings

log = structlog.get_logger(__name__)

RUN_JOB = "run_enrollment_job"
# A job whose runs keep dying (a bug, or a worker killed each time) stops here, failed,
# instead of being restarted by the sweep forever.
MAX_ATTEMPTS = 5
SWEEP_LIMIT = 100
LEAD_SORT = "created_at"

Unit = Callable[[], AbstractAsyncContextManager[AsyncSession]]


def run_job_id(job: EnrollmentJob) -> str:
    # arq skips a job id whose result it still keeps, so each resumption (after more
    # leads, or another attempt) gets an id of its own.
    return f"enrollment_job:{job.id}:{job.matched_count}:{job.attempts}"


def _filter_error(error: InvalidInput) -> InvalidInput:
    """Name the body's filter fields in place of the query parameters of /v1/leads."""
    errors = [
        FieldError(
            "filter." + item["field"].removeprefix("query."),
            item["message"],
            item["code"],
        )
        for item in error.errors
    ]
    return InvalidInput(error.detail, errors=errors)


class EnrollmentJobService:
    async def create(
        self,
        session: AsyncSession,
        principal: Principal,
        sequence_id: uuid.UUID,
        payload: EnrollmentJobCreate,
    ) -> EnrollmentJobSchema:
        """Check the filter, store a queued job and defer its run."""
        sequence = await sequence_service.get_row(
            session, principal.workspace_id, sequence_id
        )
        check_not_archived(sequence)
        found = payload.filter
        try:
            await listing_filters(
                session,
                principal.workspace_id,
                found.score_min,
                found.score_max,
                found.attribute,
            )
        except InvalidInput as error:
            raise _filter_error(error) from error

        job = EnrollmentJob(
            id=ids.new_uuid(),
            workspace_id=principal.workspace_id,
            sequence_id=sequence.id,
            status="queued",
            filter=found.model_dump(mode="json", exclude_none=True),
            actor=principal.actor,
            skipped_reasons={},
        )
        session.add(job)
        await session.flush()
        await session.refresh(job)
        view = await _publish(session, job, "enrollment_job.created")

        defer_job(session, RUN_JOB, str(job.id), job_id=run_job_id(job))
        log.info(
            "enrollment_job.queued",
            enrollment_job_id=str(job.id),
            sequence_id=str(sequence.id),
        )
        return view

    async def get(
        self, session: AsyncSession, workspace_id: uuid.UUID, job_id: uuid.UUID
    ) -> EnrollmentJobSchema:
        job = await EnrollmentJobRepository.from_session(session).get(
            workspace_id, job_id
        )
        if job is None:
            raise EnrollmentJobNotFound(
                f"No enrollment job with id {ids.encode('enrollment_job', job_id)} "
                "exists in this workspace."
            )
        return EnrollmentJobSchema.from_row(job)

    async def claim(
        self, session: AsyncSession, job_id: uuid.UUID, lease: timedelta
    ) -> EnrollmentJob | None:
        """Lease the job for one run; fail it once it has used up its attempts."""
        claimed = await EnrollmentJobRepository.from_session(session).claim(
            job_id, utcnow(), lease
        )
        if claimed is None:
            return None
        if claimed.attempts > MAX_ATTEMPTS:
            await _finish(
                session,
                claimed,
                "failed",
                code="too_many_attempts",
                message=f"The job stopped after {MAX_ATTEMPTS} runs that did not "
                "finish. Start a new job for the leads not enrolled yet.",
            )
            log.error("enrollment_job.gave_up", enrollment_job_id=str(job_id))
            return None
        return claimed

    async def sweep(self, session: AsyncSession) -> int:
        """Defer a run for every unfinished job whose lease is free."""
        due = await EnrollmentJobRepository.from_session(session).due(
            utcnow(), SWEEP_LIMIT
        )
        for job in due:
            defer_job(session, RUN_JOB, str(job.id), job_id=run_job_id(job))
        if due:
            log.info("enrollment_job.swept", count=len(due))
        return len(due)


enrollment_job_service = EnrollmentJobService()


async def _publish(
    session: AsyncSession, job: EnrollmentJob, type: str
) -> EnrollmentJobSchema:
    view = EnrollmentJobSchema.from_row(job)
    await emit(
        session,
        workspace_id=job.workspace_id,
        type=type,
        object_type="enrollment_job",
        object_id=job.id,
        data=view.model_dump(mode="json"),
        actor=job.actor,
    )
    return view


async def _finish(
    session: AsyncSession,
    job: EnrollmentJob,
    status: str,
    *,
    code: str | None = None,
    message: str | None = None,
) -> None:
    job.status = status
    job.claimed_until = None
    job.finished_at = utcnow()
    job.error_code = code
    job.error_message = message
    await session.flush()
    await session.refresh(job)
    await _publish(session, job, "enrollment_job.completed")


async def _lock(
    session: AsyncSession, job_id: uuid.UUID, cursor: str | None
) -> EnrollmentJob | None:
    """Lock the job; return None unless it is running and still at ``cursor``."""
    locked = await EnrollmentJobRepository.from_session(session).get(
        None, job_id, for_update=True
    )
    if locked is None or locked.status != "running" or locked.cursor != cursor:
        return None
    return locked


def _created_before(found: EnrollmentJobFilter, job: EnrollmentJob) -> datetime:
    # The listing's bound is exclusive, and PostgreSQL keeps microseconds, so adding
    # one matches the leads created no later than the job.
    latest = job.created_at + timedelta(microseconds=1)
    if found.created_before is None or found.created_before > latest:
        return latest
    return found.created_before


async def run_job(
    unit: Unit,
    job_id: uuid.UUID,
    settings: Settings,
    *,
    budget_seconds: float | None = None,
) -> str:
    """Run a claimed job from its cursor, and return how the run ended.

    The outcome is ``succeeded``, ``failed``, ``continued`` (the budget ran out and a
    continuation job is deferred) or ``superseded`` (another run owns the job).

    ``unit`` opens a session that commits when its block ends.
    """
    started = time.monotonic()
    async with unit() as session:
        job = await EnrollmentJobRepository.from_session(session).get(None, job_id)
        if job is None or job.status != "running":
            return "superseded"
    found = EnrollmentJobFilter.model_validate(job.filter)
    principal = Principal(
        api_key_id=uuid.UUID(int=0),
        workspace_id=job.workspace_id,
        scopes=frozenset(),
        kind="secret",
        on_behalf_of=job.actor
        or f"enrollment_job:{ids.encode('enrollment_job', job_id)}",
    )
    cursor = job.cursor
    log.info(
        "enrollment_job.started",
        enrollment_job_id=str(job_id),
        resumed=cursor is not None,
    )

    chunks = 0
    while True:
        # Each run processes at least one chunk, so even a tiny budget makes progress.
        if (
            budget_seconds is not None
            and chunks > 0
            and time.monotonic() - started > budget_seconds
        ):
            async with unit() as session:
                locked = await _lock(session, job_id, cursor)
                if locked is None:
                    return "superseded"
                # The continuation claims the job as soon as it starts, and the
                # progress so far does not count as a failed attempt.
                locked.claimed_until = None
                locked.attempts = 0
                defer_job(session, RUN_JOB, str(job_id), job_id=run_job_id(locked))
            log.info("enrollment_job.continued", enrollment_job_id=str(job_id))
            return "continued"

        async with unit() as session:
            locked = await _lock(session, job_id, cursor)
            if locked is None:
                return "superseded"
            # Loaded per chunk, so a policy changed meanwhile applies to later leads.
            sequence = await sequence_service.get_row(
                session, job.workspace_id, job.sequence_id
            )
            if sequence.status == "archived":
                # Every later lead would be skipped, so the job stops here.
                await _finish(
                    session,
                    locked,
                    "failed",
                    code="sequence_archived",
                    message="The sequence was archived while the job ran. Start a "
                    "job on an active sequence to enroll the remaining leads.",
                )
                log.warning(
                    "enrollment_job.failed",
                    enrollment_job_id=str(job_id),
                    code="sequence_archived",
                )
                return "failed"
            try:
                leads, next_cursor, has_more = await lead_service.list(
                    session,
                    job.workspace_id,
                    limit=settings.enrollment_job_chunk_leads,
                    cursor=cursor,
                    sort=LEAD_SORT,
                    status=found.status,
                    owner_id=found.owner_id,
                    email=found.email,
                    query=found.q,
                    created_after=found.created_after,
                    created_before=_created_before(found, locked),
                    campaign_id=found.campaign_id,
                    partner_id=found.partner_id,
                    sources=found.source,
                    score_min=found.score_min,
                    score_max=found.score_max,
                    tags=found.tag,
                    updated_after=found.updated_after,
                    updated_before=found.updated_before,
                    attribute_filters=found.attribute,
                )
            except InvalidInput as error:
                # A custom field of an attribute filter was deleted or changed type
                # since the job was created.
                await _finish(
                    session,
                    locked,
                    "failed",
                    code="invalid_filter",
                    message=error.detail,
                )
                log.warning(
                    "enrollment_job.failed",
                    enrollment_job_id=str(job_id),
                    code=error.code,
                    error=error.detail,
                )
                return "failed"

            reasons = dict(locked.skipped_reasons)
            for lead in leads:
                item = BatchItem(0, ids.encode("lead", lead.id))
                await enroll_one(session, principal, sequence, lead.id, item)
                if item.status == "created":
                    locked.enrolled_count += 1
                    continue
                code = item.error["code"] if item.error else "unknown"
                reasons[code] = reasons.get(code, 0) + 1
                locked.skipped_count += 1
            locked.matched_count += len(leads)
            locked.skipped_reasons = reasons
            locked.cursor = next_cursor
            # A run that commits a chunk is not failing, whatever happened before.
            locked.attempts = 1
            locked.claimed_until = utcnow() + timedelta(
                seconds=settings.claim_lease_seconds
            )
            if not has_more:
                await _finish(session, locked, "succeeded")
            else:
                await session.flush()
        chunks += 1
        cursor = next_cursor
        if not has_more:
            log.info(
                "enrollment_job.succeeded",
                enrollment_job_id=str(job_id),
                matched=locked.matched_count,
                enrolled=locked.enrolled_count,
                skipped=locked.skipped_count,
            )
            return "succeeded"
