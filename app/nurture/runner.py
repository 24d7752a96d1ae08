"""Running each due step of an enrollment exactly once, and the sweep that finds them.

A step runs in three phases, each in its own transaction or none:

1. Claim: lock the enrollment row, then insert the step's unique ``StepRun`` row as
   ``running`` with a lease (``claimed_until``) and commit. A second worker or a
   duplicate job waits for the lock, finds the row with a live lease and does
   nothing. A row whose lease lapsed belongs to a worker that died mid-step, so the
   next claim takes it over and counts another attempt. One SELECT locks the
   enrollment and reads everything the step needs (``app.nurture.locked_step``).
2. Send, holding no lock or transaction. The send is cut off before the lease lapses,
   so no other worker can take the step over while this one may still be sending.
3. Record: lock the enrollment again, mark the run ``sent`` (or ``failed``), move the
   enrollment to its next step or complete it, emit the events and queue the next job,
   all in one transaction. The attempt number is the fencing token: a worker whose run
   was taken over records nothing.

NOTE: a worker that dies, or loses its database connection, after the mail server
accepted the message but before phase 3 commits leaves a ``running`` row. The retry
then sends the message a second time, with the same Message-ID. The other choice, marking
the step sent before sending, would skip the email after such a crash instead.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.clock import utcnow
from app.core.db import defer_job
from app.leads.service import lead_service
from app.models import Enrollment, Lead, SequenceStep, StepRun
from app.nurture import conditions, executors, exits, frequency, schedule, unsubscribe
from app.nurture.compose import Recipient, compose, message_id_for
from app.nurture.context import Sender, sender_of
from app.nurture.jobs import STEP_JOB, defer_step, scheduled_job_id, sweep_job_id
from app.nurture.locked_step import lock_for_claim, lock_for_record
from app.nurture.mailer import Mailer, MailError
from app.nurture.offer_steps import issue_for_step
from app.nurture.repository import EnrollmentRepository, SequenceRepository
from app.nurture.service import (
    change_status,
    exit_enrollment,
    publish,
    suppress_address,
)
from app.settings import Settings
from app.webhooks.sender import WebhookSender

log = structlog.get_logger(__name__)

Outcome = Literal[
    "sent",
    "completed",
    "retry_scheduled",
    "failed",
    "exited",
    "in_progress",
    "not_due",
    "inactive",
    "missing",
    "lease_lost",
    "skipped",
    "postponed",
]
UnitOfWork = Callable[[], AbstractAsyncContextManager[AsyncSession]]

MAX_ATTEMPTS = 8
RETRY_BASE_SECONDS = 60
RETRY_MAX_SECONDS = 3600
# The send must end this long before the lease lapses, to leave room for clock skew
# between workers and for phase 3 to start.
LEASE_MARGIN_SECONDS = 5.0
SWEEP_BATCH = 500


@dataclass(frozen=True)
class Claim:
    """A step this worker holds the lease on, with what it needs to send it."""

    enrollment_id: uuid.UUID
    workspace_id: uuid.UUID
    lead_id: uuid.UUID
    step_id: uuid.UUID
    sequence_version: int
    position: int
    attempt: int
    claimed_until: datetime
    message_id: str
    subject: str
    body_text: str
    recipient: Recipient
    sender: Sender
    offer_values: dict[str, str | None] = field(default_factory=dict)
    kind: str = "email"
    webhook: executors.WebhookCall | None = None


@dataclass(frozen=True)
class Delivery:
    """The result of phase 2: ``error`` is None when the server accepted the message.

    ``retry_after_seconds`` is a webhook receiver's ``Retry-After``, which postpones
    the retry to at least that time.
    """

    error: MailError | None = None
    retry_after_seconds: float | None = None


def retry_delay(attempt: int) -> timedelta:
    """Back off exponentially from one minute to an hour, with 10 % jitter."""
    seconds = min(RETRY_BASE_SECONDS * 2 ** (attempt - 1), RETRY_MAX_SECONDS)
    return timedelta(seconds=seconds * random.uniform(0.9, 1.1))


class StepRunner:
    async def run(
        self,
        unit_of_work: UnitOfWork,
        mailer: Mailer,
        settings: Settings,
        enrollment_id: uuid.UUID,
        webhook_sender: WebhookSender | None = None,
    ) -> Outcome:
        """Run the due step of one enrollment, which is safe to repeat any number of times."""
        async with unit_of_work() as session:
            claim = await self.claim(session, settings, enrollment_id)
        if not isinstance(claim, Claim):
            log.info(
                "enrollment.step_skipped",
                enrollment_id=str(enrollment_id),
                outcome=claim,
            )
            return claim
        if claim.webhook is not None:
            delivery = await self.deliver_webhook(claim, webhook_sender, settings)
        else:
            delivery = await self.deliver(claim, mailer, settings)
        async with unit_of_work() as session:
            return await self.record(session, claim, delivery)

    async def claim(
        self, session: AsyncSession, settings: Settings, enrollment_id: uuid.UUID
    ) -> Claim | Outcome:
        """Phase 1: take the lease on the due step, or return why there is none."""
        rows = await lock_for_claim(session, enrollment_id)
        if rows is None:
            return "missing"
        enrollment, step, lead = rows.enrollment, rows.step, rows.lead
        if enrollment.status != "active":
            return "inactive"
        now = utcnow()
        if enrollment.next_run_at is None or enrollment.next_run_at > now:
            return "not_due"
        if step is None:
            await self._complete(session, enrollment, now)
            return "completed"
        reason = exits.claim_exit_reason(
            lead, rows.sequence.exit_rules, rows.suppressed
        )
        if reason is not None:
            await exit_enrollment(session, enrollment, reason, actor=None)
            return "exited"

        repository = EnrollmentRepository.from_session(session)
        lease_until = now + timedelta(seconds=settings.step_lease_seconds)
        sender = sender_of(rows.sequence, settings)
        run = rows.run
        starts_attempt = run is None or not (
            run.status in ("sent", "completed", "skipped")
            or (
                run.status == "running"
                and run.claimed_until is not None
                and run.claimed_until > now
            )
        )
        if starts_attempt:
            rules = schedule.rules_from(
                lead.timezone,
                rows.sequence.timezone,
                rows.workspace_timezone,
                rows.sequence.send_window,
                rows.holidays,
            )
            reopens = schedule.reopens_under(rules, enrollment.id, now)
            if reopens is not None:
                return await self._postpone(
                    session, enrollment, reopens, now, reason="send_window"
                )
        if run is None:
            cap = frequency.cap_from(rows.cap_count, rows.cap_window_hours)
            zone, _ = schedule.pick_zone(
                lead.timezone, rows.sequence.timezone, rows.workspace_timezone
            )
            settled = await self._settle_in_claim(
                session, enrollment, step, lead, cap, now, zone=zone
            )
            if settled is not None:
                return settled
            run_id = ids.new_uuid()
            run = StepRun(
                id=run_id,
                workspace_id=enrollment.workspace_id,
                enrollment_id=enrollment.id,
                step_id=step.id,
                status="running",
                attempts=1,
                claimed_until=lease_until,
                started_at=now,
                message_id=(
                    str(run_id)
                    if step.kind == "webhook"
                    else message_id_for(run_id, sender.mail_from)
                ),
            )
            # The enrollment's lease, written with the run, keeps the sweep from
            # queueing a job for the step while it is being sent.
            if not await repository.start_step_run(run, lease_until):
                return "in_progress"
        elif run.status in ("sent", "completed", "skipped"):
            # Phase 3 marks the run sent and advances the enrollment in one
            # transaction, so only a manual edit leaves a sent step due again.
            log.warning(
                "step_run.already_sent",
                enrollment_id=str(enrollment.id),
                step_id=str(step.id),
            )
            following = await self._following(session, enrollment)
            await self._advance(session, enrollment, following, now)
            return "sent"
        elif (
            run.status == "running"
            and run.claimed_until is not None
            and run.claimed_until > now
        ):
            return "in_progress"
        else:
            if run.status == "running":
                log.warning(
                    "step_run.lease_lapsed",
                    enrollment_id=str(enrollment.id),
                    step_id=str(step.id),
                    attempts=run.attempts,
                )
                if run.attempts >= MAX_ATTEMPTS:
                    # Every attempt ended with its worker gone: stop retrying a step
                    # that may be what crashes the worker.
                    await self._give_up(session, enrollment, run, now)
                    return "failed"
            run.status = "running"
            run.attempts += 1
            run.claimed_until = lease_until
            run.finished_at = None
            await session.flush()
            await repository.set_claim(enrollment.id, lease_until)
        webhook = None
        if step.kind == "webhook":
            webhook = await executors.build_webhook_call(
                session, enrollment, step, lead, run.id, run.started_at
            )

        log.info(
            "enrollment.step_claimed",
            enrollment_id=str(enrollment.id),
            position=step.position,
            attempt=run.attempts,
        )
        # Issued here, in the claim's transaction, so a retry reuses the run's code.
        offer_values = await issue_for_step(session, step, enrollment, run.id, now)
        return Claim(
            enrollment_id=enrollment.id,
            workspace_id=enrollment.workspace_id,
            lead_id=lead.id,
            step_id=step.id,
            sequence_version=step.sequence_version,
            position=step.position,
            attempt=run.attempts,
            claimed_until=lease_until,
            message_id=run.message_id or message_id_for(run.id, sender.mail_from),
            subject=step.subject or "",
            body_text=step.body_text or "",
            recipient=Recipient.from_lead(
                lead,
                owner_name=rows.owner_name,
                owner_email=rows.owner_email,
                workspace_name=rows.workspace_name,
            ),
            sender=sender,
            offer_values=offer_values,
            kind=step.kind,
            webhook=webhook,
        )

    async def _settle_in_claim(
        self,
        session: AsyncSession,
        enrollment: Enrollment,
        step: SequenceStep,
        lead: Lead,
        cap: frequency.Cap | None,
        now: datetime,
        *,
        zone: ZoneInfo,
    ) -> Outcome | None:
        """Finish a step that needs no send, or postpone it; None lets it be sent.

        A false condition skips the step, task and wait steps take effect here, and
        the frequency cap postpones an email step. The step run row, inserted in this
        transaction, guards each effect: a concurrent claim that finds it does nothing.
        """
        try:
            applies = conditions.holds(step.condition, lead)
        except ValidationError as error:
            # Only a row written around the API's check gets here; retrying cannot help.
            message = f"The condition of step {step.position} is invalid: {error}"
            log.error(
                "enrollment.invalid_condition",
                enrollment_id=str(enrollment.id),
                step_id=str(step.id),
                error=str(error),
            )
            await change_status(
                session,
                enrollment,
                "failed",
                event_type="enrollment.failed",
                actor=None,
                by_worker=True,
                failed_at=now,
                last_error=message[:2000],
                next_run_at=None,
                claimed_until=None,
            )
            return "failed"
        if not applies:
            status, event_type = "skipped", "enrollment.step_skipped"
        elif step.kind in executors.EFFECT_KINDS:
            status, event_type = "completed", "enrollment.step_completed"
        else:
            if step.kind == "email":
                until = await frequency.postponed_under(session, cap, lead.id, now)
                if until is not None:
                    return await self._postpone(session, enrollment, until, now)
            return None

        run = StepRun(
            id=ids.new_uuid(),
            workspace_id=enrollment.workspace_id,
            enrollment_id=enrollment.id,
            step_id=step.id,
            status=status,
            attempts=1,
            claimed_until=None,
            started_at=now,
            finished_at=now,
        )
        if not await EnrollmentRepository.from_session(session).insert_step_run(run):
            return "in_progress"
        if status == "completed" and step.kind == "task":
            await executors.create_task(session, enrollment, step, lead, now, zone=zone)
        log.info(
            "enrollment.step_settled",
            enrollment_id=str(enrollment.id),
            position=step.position,
            kind=step.kind,
            status=status,
        )
        following = await self._following(session, enrollment)
        outcome = await self._advance(
            session, enrollment, following, now, event_type=event_type
        )
        return "skipped" if status == "skipped" and outcome == "sent" else outcome

    async def _postpone(
        self,
        session: AsyncSession,
        enrollment: Enrollment,
        until: datetime,
        now: datetime,
        *,
        reason: str = "frequency_cap",
    ) -> Outcome:
        # At least a second ahead, so a cap freed by clock skew cannot spin.
        enrollment.next_run_at = max(until, now + timedelta(seconds=1))
        enrollment.claimed_until = None
        await session.flush()
        log.info(
            "enrollment.step_postponed",
            enrollment_id=str(enrollment.id),
            position=enrollment.next_position,
            reason=reason,
            next_run_at=enrollment.next_run_at.isoformat(),
        )
        defer_step(session, enrollment)
        return "postponed"

    async def deliver(
        self, claim: Claim, mailer: Mailer, settings: Settings
    ) -> Delivery:
        """Phase 2: compose and send the message, within the lease."""
        link = unsubscribe.unsubscribe_url(
            settings.public_base_url,
            unsubscribe.sign(
                settings.signing_secret.get_secret_value(),
                unsubscribe.UnsubscribeToken(
                    workspace_id=claim.workspace_id,
                    lead_id=claim.lead_id,
                    enrollment_id=claim.enrollment_id,
                ),
            ),
        )
        budget = (claim.claimed_until - utcnow()).total_seconds() - LEASE_MARGIN_SECONDS
        try:
            message = compose(
                recipient=claim.recipient,
                subject=claim.subject,
                body_text=claim.body_text,
                mail_from=claim.sender.mail_from,
                reply_to=claim.sender.reply_to,
                message_id=claim.message_id,
                unsubscribe_url=link,
                sent_at=utcnow(),
                offer=claim.offer_values,
            )
            if budget <= 0:
                raise MailError("The lease lapsed before the message could be sent.")
            async with asyncio.timeout(budget):
                await mailer.send(message)
        except MailError as error:
            return Delivery(error=error)
        except TimeoutError:
            return Delivery(
                error=MailError(
                    f"Sending timed out after {budget:.0f} s, before the step's lease "
                    "would lapse."
                )
            )
        except Exception as error:
            # Recorded as a failed attempt, so a fault in composing or in the mail
            # library is retried and eventually fails the enrollment, rather than
            # leaving a running step for the sweep to retry without end.
            log.exception(
                "enrollment.step_crashed",
                enrollment_id=str(claim.enrollment_id),
                position=claim.position,
            )
            return Delivery(error=MailError(f"Sending failed unexpectedly: {error!r}"))
        return Delivery()

    async def deliver_webhook(
        self, claim: Claim, sender: WebhookSender | None, settings: Settings
    ) -> Delivery:
        """Phase 2 of a webhook step: POST the signed request, within the lease."""
        assert claim.webhook is not None
        budget = (claim.claimed_until - utcnow()).total_seconds() - LEASE_MARGIN_SECONDS
        if budget <= 0:
            return Delivery(
                error=MailError("The lease lapsed before the request could be sent.")
            )
        own_sender = sender is None
        active = sender or WebhookSender(settings)
        try:
            async with asyncio.timeout(budget):
                failure = await executors.send_webhook(
                    active, claim.webhook, claim.message_id, utcnow()
                )
        except TimeoutError:
            return Delivery(
                error=MailError(
                    f"The webhook request timed out after {budget:.0f} s, before the "
                    "step's lease would lapse."
                )
            )
        finally:
            if own_sender:
                await active.close()
        if failure is None:
            return Delivery()
        return Delivery(
            error=failure.error, retry_after_seconds=failure.retry_after_seconds
        )

    async def record(
        self, session: AsyncSession, claim: Claim, delivery: Delivery
    ) -> Outcome:
        """Phase 3: store the result of the send and move the enrollment on."""
        rows = await lock_for_record(session, claim.enrollment_id)
        if rows is None:
            log.warning(
                "enrollment.deleted_while_sending",
                enrollment_id=str(claim.enrollment_id),
            )
            return "missing"
        enrollment = rows.enrollment
        run = next((run for run, _ in rows.runs if run.step_id == claim.step_id), None)
        if run is None or run.status != "running" or run.attempts != claim.attempt:
            log.warning(
                "step_run.lease_lost",
                enrollment_id=str(claim.enrollment_id),
                step_id=str(claim.step_id),
                attempt=claim.attempt,
                sent=delivery.error is None,
            )
            return "lease_lost"
        now = utcnow()
        run.claimed_until = None
        run.finished_at = now
        # A move to another version or position while the step was being sent points the
        # enrollment at a step that has not run, so the result must not advance it.
        moved = (enrollment.sequence_version, enrollment.next_position) != (
            claim.sequence_version,
            claim.position,
        )

        if delivery.error is None:
            run.status = "sent"
            run.error = None
            log.info(
                "enrollment.step_sent",
                enrollment_id=str(enrollment.id),
                position=claim.position,
                attempt=claim.attempt,
                message_id=claim.message_id,
            )
            if moved:
                return await self._release_moved(session, enrollment, "sent")
            return await self._advance(
                session, enrollment, rows.following, now, runs=rows.runs
            )
        if moved:
            run.status = "failed"
            run.error = delivery.error.message
            return await self._release_moved(session, enrollment, "failed")
        return await self._fail(
            session,
            enrollment,
            run,
            claim,
            delivery.error,
            now,
            runs=rows.runs,
            retry_after_seconds=delivery.retry_after_seconds,
        )

    async def _release_moved(
        self, session: AsyncSession, enrollment: Enrollment, outcome: Outcome
    ) -> Outcome:
        """Release the lease of an enrollment that moved while its step was being sent.

        The enrollment keeps the due time that the move kept, so the step it now
        points at runs from a new job or, when arq still has this job's id, the sweep.
        """
        enrollment.claimed_until = None
        await session.flush()
        log.info(
            "enrollment.moved_during_send",
            enrollment_id=str(enrollment.id),
            sequence_version=enrollment.sequence_version,
            position=enrollment.next_position,
        )
        defer_step(session, enrollment)
        return outcome

    async def _following(
        self, session: AsyncSession, enrollment: Enrollment
    ) -> SequenceStep | None:
        """Load the step after the enrollment's due one, or None after the last."""
        return await SequenceRepository.from_session(session).step_at(
            enrollment.sequence_id,
            enrollment.sequence_version,
            enrollment.next_position + 1,
        )

    async def _advance(
        self,
        session: AsyncSession,
        enrollment: Enrollment,
        following: SequenceStep | None,
        now: datetime,
        *,
        event_type: str = "enrollment.step_completed",
        runs: Sequence[tuple[StepRun, int]] | None = None,
    ) -> Outcome:
        """Move the enrollment past its due step, whose run the caller has changed.

        ``following`` is the step after the due one, and ``runs`` are the enrollment's
        step runs as the events show them (loaded when None).
        """
        enrollment.next_position += 1
        enrollment.last_error = None
        enrollment.claimed_until = None
        if enrollment.status in ("active", "paused"):
            if following is None:
                # The last step: one UPDATE advances and completes the enrollment, and
                # both events show it completed.
                await self._complete(
                    session, enrollment, now, runs=runs, first_event_type=event_type
                )
                return "completed"
            enrollment.next_run_at = await schedule.following_due_at(
                session, enrollment, following, now
            )
        await session.flush()
        await publish(session, enrollment, event_type, actor=None, runs=runs)
        defer_step(session, enrollment)
        return "sent"

    async def _complete(
        self,
        session: AsyncSession,
        enrollment: Enrollment,
        now: datetime,
        *,
        runs: Sequence[tuple[StepRun, int]] | None = None,
        first_event_type: str | None = None,
    ) -> None:
        await change_status(
            session,
            enrollment,
            "completed",
            event_type="enrollment.completed",
            first_event_type=first_event_type,
            actor=None,
            by_worker=True,
            runs=runs,
            completed_at=now,
            next_run_at=None,
            claimed_until=None,
        )

    async def _fail(
        self,
        session: AsyncSession,
        enrollment: Enrollment,
        run: StepRun,
        claim: Claim,
        error: MailError,
        now: datetime,
        *,
        runs: Sequence[tuple[StepRun, int]] | None = None,
        retry_after_seconds: float | None = None,
    ) -> Outcome:
        run.status = "failed"
        run.error = error.message
        await session.flush()
        log.error(
            "enrollment.step_failed",
            enrollment_id=str(enrollment.id),
            position=claim.position,
            attempt=claim.attempt,
            permanent=error.permanent,
            error=error.message,
        )
        if enrollment.status not in ("active", "paused"):
            return "failed"

        if error.bounced:
            lead = await lead_service.get(
                session, enrollment.workspace_id, enrollment.lead_id
            )
            await suppress_address(session, lead, "bounced", enrollment.id)
            await exit_enrollment(session, enrollment, "bounced", actor=None)
            return "exited"
        if error.permanent or claim.attempt >= MAX_ATTEMPTS:
            await change_status(
                session,
                enrollment,
                "failed",
                event_type="enrollment.failed",
                actor=None,
                by_worker=True,
                runs=runs,
                failed_at=now,
                last_error=error.message,
                next_run_at=None,
                claimed_until=None,
            )
            return "failed"

        enrollment.last_error = error.message
        # The claim of the retry moves it into the send window if it falls outside.
        enrollment.next_run_at = now + max(
            retry_delay(claim.attempt), timedelta(seconds=retry_after_seconds or 0)
        )
        enrollment.claimed_until = None
        await session.flush()
        await publish(
            session, enrollment, "enrollment.step_failed", actor=None, runs=runs
        )
        defer_step(session, enrollment)
        return "retry_scheduled"

    async def _give_up(
        self,
        session: AsyncSession,
        enrollment: Enrollment,
        run: StepRun,
        now: datetime,
    ) -> None:
        message = (
            f"Gave up after {run.attempts} attempts: each worker stopped before it "
            "recorded the result of the send."
        )
        run.status = "failed"
        run.error = message
        run.claimed_until = None
        run.finished_at = now
        await session.flush()
        log.error(
            "enrollment.step_abandoned",
            enrollment_id=str(enrollment.id),
            step_id=str(run.step_id),
            attempts=run.attempts,
        )
        await change_status(
            session,
            enrollment,
            "failed",
            event_type="enrollment.failed",
            actor=None,
            by_worker=True,
            failed_at=now,
            last_error=message,
            next_run_at=None,
            claimed_until=None,
        )

    async def sweep(
        self, session: AsyncSession, settings: Settings, *, limit: int = SWEEP_BATCH
    ) -> int:
        """Lease due enrollments that no worker holds and queue a job for each.

        The safety net behind the jobs queued after each commit: it finds every
        step whose job was lost (Redis flushed or down) or whose worker died.
        """
        now = utcnow()
        until = now + timedelta(seconds=settings.step_lease_seconds)
        due = await EnrollmentRepository.from_session(session).claim_due(
            now, until, limit
        )
        for enrollment_id, position, due_at, attempts in due:
            # While the job queued for the due time waits or runs, a second job
            # would only find the step leased or done.
            defer_job(
                session,
                STEP_JOB,
                str(enrollment_id),
                job_id=sweep_job_id(enrollment_id, position, attempts),
                unless_queued=scheduled_job_id(enrollment_id, position, due_at),
            )
        if due:
            log.info("enrollment.sweep_claimed", count=len(due))
        return len(due)


step_runner = StepRunner()
