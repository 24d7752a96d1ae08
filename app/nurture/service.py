from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.concurrency import check_if_match
from app.core.errors import with_article
from app.core.events import emit
from app.leads.service import lead_data, lead_service
from app.models import EmailSuppression, Enrollment, Lead, StepRun
from app.models import Sequence as SequenceRow
from app.models.lead import OPEN_LEAD_STATUSES
from app.nurture import merge, schedule, states
from app.nurture import unsubscribe as tokens
from app.nurture.errors import (
    EnrollmentExists,
    EnrollmentNotFound,
    InvalidEnrollmentTransition,
    InvalidUnsubscribeToken,
    LeadNotEnrollable,
    LeadUnsubscribed,
    SequenceArchived,
    SequenceNotFound,
)
from app.nurture.holidays import holiday_calendar_service
from app.nurture.jobs import defer_step
from app.nurture.offer_steps import check_step_offers
from app.nurture.reenrollment import check_reenrollment
from app.nurture.repository import EnrollmentRepository, SequenceRepository
from app.nurture.resume import prepare_retry
from app.nurture.schemas import Enrollment as EnrollmentSchema
from app.nurture.schemas import EnrollmentCreate, SequenceCreate, Unsubscribed
from app.nurture.schemas import Sequence as SequenceSchema
from app.nurture.step_kinds import STRICT_URL_POLICY, check_step_urls
from app.nurture.step_rows import step_rows
from app.webhooks.url_safety import AddressPolicy

log = structlog.get_logger(__name__)


def check_templates(payload: SequenceCreate) -> None:
    """Raise ``InvalidInput`` naming every step template with a bad merge field."""
    merge.check_step_templates(list(payload.steps))


def check_not_archived(sequence: SequenceRow) -> None:
    if sequence.status == "archived":
        raise SequenceArchived(
            f"Sequence {ids.encode('sequence', sequence.id)} is archived and takes no "
            "new enrollments. Enroll the lead in an active sequence.",
            sequence_status=sequence.status,
        )


class SequenceService:
    async def create(
        self,
        session: AsyncSession,
        principal: Principal,
        payload: SequenceCreate,
        *,
        url_policy: AddressPolicy = STRICT_URL_POLICY,
    ) -> SequenceSchema:
        check_templates(payload)
        check_step_urls(payload.steps, url_policy)
        await holiday_calendar_service.check_sequence_settings(
            session,
            principal.workspace_id,
            payload.timezone,
            payload.send_window,
            payload.holiday_calendar_id,
        )
        await check_step_offers(session, principal.workspace_id, payload.steps)

        sequence = SequenceRow(
            id=ids.new_uuid(),
            workspace_id=principal.workspace_id,
            name=payload.name,
            status="active",
            timezone=payload.timezone,
            send_window=(
                payload.send_window.model_dump()
                if payload.send_window is not None
                else None
            ),
            holiday_calendar_id=payload.holiday_calendar_id,
            reenrollment_policy=payload.reenrollment_policy,
            latest_version=1,
            mail_from=payload.mail_from,
            reply_to=payload.reply_to,
            exit_rules=states.exit_rules(payload.exit_rules),
        )
        session.add(sequence)
        await session.flush()
        steps = step_rows(sequence, 1, payload.steps)
        session.add_all(steps)
        await session.flush()
        view = SequenceSchema.from_rows(sequence, steps)

        await emit(
            session,
            workspace_id=sequence.workspace_id,
            type="sequence.created",
            object_type="sequence",
            object_id=sequence.id,
            data=view.model_dump(mode="json"),
            actor=principal.actor,
        )
        log.info("sequence.created", sequence_id=str(sequence.id), steps=len(steps))
        return view

    async def get_row(
        self, session: AsyncSession, workspace_id: uuid.UUID, sequence_id: uuid.UUID
    ) -> SequenceRow:
        sequence = await SequenceRepository.from_session(session).get(
            workspace_id, sequence_id
        )
        if sequence is None:
            raise SequenceNotFound(
                f"No sequence with id {ids.encode('sequence', sequence_id)} exists in "
                "this workspace."
            )
        return sequence

    async def get(
        self, session: AsyncSession, workspace_id: uuid.UUID, sequence_id: uuid.UUID
    ) -> SequenceSchema:
        sequence = await self.get_row(session, workspace_id, sequence_id)
        steps = await SequenceRepository.from_session(session).steps_by_sequence(
            [sequence.id]
        )
        return SequenceSchema.from_rows(sequence, steps[sequence.id])

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[SequenceSchema], str | None, bool]:
        repository = SequenceRepository.from_session(session)
        rows, next_cursor, has_more = await repository.list(
            workspace_id, limit=limit, cursor=cursor
        )
        steps = await repository.steps_by_sequence(row.id for row in rows)
        views = [SequenceSchema.from_rows(row, steps[row.id]) for row in rows]
        return views, next_cursor, has_more


async def enrollment_view(
    session: AsyncSession,
    enrollment: Enrollment,
    runs: Sequence[tuple[StepRun, int]] | None = None,
) -> EnrollmentSchema:
    """Build the API's view of the enrollment; ``runs`` spares loading its step runs."""
    if runs is None:
        repository = EnrollmentRepository.from_session(session)
        runs = (await repository.step_runs_by_enrollment([enrollment.id]))[
            enrollment.id
        ]
    return EnrollmentSchema.from_rows(enrollment, runs)


async def publish(
    session: AsyncSession,
    enrollment: Enrollment,
    type: str,
    actor: str | None,
    runs: Sequence[tuple[StepRun, int]] | None = None,
) -> EnrollmentSchema:
    """Emit ``type`` with the enrollment's full state. The caller holds its row lock.

    ``runs`` are the enrollment's step runs with their positions, in order, as they
    are now; without them they are loaded.
    """
    view = await enrollment_view(session, enrollment, runs)
    await emit(
        session,
        workspace_id=enrollment.workspace_id,
        type=type,
        object_type="enrollment",
        object_id=enrollment.id,
        data=view.model_dump(mode="json"),
        actor=actor,
    )
    return view


def check_transition(current: str, target: str, *, by_worker: bool = False) -> None:
    allowed = states.TRANSITIONS.get(current, ())
    if target in allowed and (by_worker or target not in states.SET_BY_WORKER):
        return
    requestable = states.requestable(current)
    raise InvalidEnrollmentTransition(
        f"{with_article(current).capitalize()} enrollment cannot move to {target}. Allowed next statuses: "
        f"{', '.join(requestable) or 'none'}.",
        current_status=current,
        allowed_transitions=requestable,
    )


async def change_status(
    session: AsyncSession,
    enrollment: Enrollment,
    target: str,
    *,
    event_type: str,
    actor: str | None,
    by_worker: bool = False,
    runs: Sequence[tuple[StepRun, int]] | None = None,
    first_event_type: str | None = None,
    **fields: Any,
) -> EnrollmentSchema:
    """Move a locked enrollment to ``target``, set ``fields`` and emit ``event_type``.

    ``first_event_type``, when given, is emitted just before ``event_type`` with the
    same state, and ``runs`` are passed on to ``publish``.
    """
    check_transition(enrollment.status, target, by_worker=by_worker)
    previous = enrollment.status

    enrollment.status = target
    for name, value in fields.items():
        setattr(enrollment, name, value)
    await session.flush()

    if first_event_type is not None:
        await publish(session, enrollment, first_event_type, actor, runs)
    view = await publish(session, enrollment, event_type, actor, runs)
    log.info(
        "enrollment.status_changed",
        enrollment_id=str(enrollment.id),
        from_status=previous,
        to_status=target,
        exit_reason=enrollment.exit_reason,
    )
    return view


async def exit_enrollment(
    session: AsyncSession, enrollment: Enrollment, reason: str, actor: str | None
) -> EnrollmentSchema:
    return await change_status(
        session,
        enrollment,
        "exited",
        event_type="enrollment.exited",
        actor=actor,
        exit_reason=reason,
        exited_at=utcnow(),
        next_run_at=None,
        claimed_until=None,
    )


class EnrollmentService:
    async def enroll(
        self,
        session: AsyncSession,
        principal: Principal,
        sequence_id: uuid.UUID,
        payload: EnrollmentCreate,
    ) -> EnrollmentSchema:
        workspace_id = principal.workspace_id
        sequence = await sequence_service.get_row(session, workspace_id, sequence_id)
        lead = await lead_service.get(session, workspace_id, payload.lead_id)
        return await self.enroll_lead(session, principal, sequence, lead)

    async def enroll_lead(
        self,
        session: AsyncSession,
        principal: Principal,
        sequence: SequenceRow,
        lead: Lead,
    ) -> EnrollmentSchema:
        """Enroll a loaded lead under every rule; batches and jobs call this too."""
        workspace_id = principal.workspace_id
        sequences = SequenceRepository.from_session(session)
        repository = EnrollmentRepository.from_session(session)
        # Reload the row under a share lock, so an archive or a new version committed
        # meanwhile is seen here. One still in progress waits for this enrollment.
        await session.refresh(sequence, with_for_update={"read": True})
        check_not_archived(sequence)
        await self._check_enrollable(repository, lead)
        await self._reject_running(repository, sequence.id, lead.id)
        await check_reenrollment(session, sequence, lead.id)
        first = await sequences.step_at(sequence.id, sequence.latest_version, 0)
        if first is None:
            raise RuntimeError(f"sequence {sequence.id} has no steps")

        enrollment = Enrollment(
            id=ids.new_uuid(),
            workspace_id=workspace_id,
            sequence_id=sequence.id,
            lead_id=lead.id,
            status="active",
            sequence_version=sequence.latest_version,
            next_position=0,
            next_run_at=await schedule.first_due_at(
                session, workspace_id, sequence.id, lead.id, first, utcnow()
            ),
        )
        try:
            async with session.begin_nested():
                session.add(enrollment)
                await session.flush()
        except IntegrityError:
            # A concurrent request enrolled the same lead after our check.
            await self._reject_running(repository, sequence.id, lead.id)
            raise

        view = await publish(session, enrollment, "enrollment.created", principal.actor)
        defer_step(session, enrollment)
        log.info(
            "enrollment.created",
            enrollment_id=str(enrollment.id),
            sequence_id=str(sequence.id),
            lead_id=str(lead.id),
        )
        return view

    @staticmethod
    async def _check_enrollable(repository: EnrollmentRepository, lead: Lead) -> None:
        lead_id = ids.encode("lead", lead.id)
        if lead.status not in OPEN_LEAD_STATUSES:
            raise LeadNotEnrollable(
                f"Lead {lead_id} is {lead.status}, but only leads with status "
                f"{', '.join(OPEN_LEAD_STATUSES)} can be enrolled.",
                lead_status=lead.status,
            )
        if await repository.is_suppressed(
            lead.workspace_id, lead.email_normalized, lead.id
        ):
            raise LeadUnsubscribed(
                f"Lead {lead_id} unsubscribed, or its email address unsubscribed or "
                "bounced, so it cannot receive marketing email.",
            )

    @staticmethod
    async def _reject_running(
        repository: EnrollmentRepository, sequence_id: uuid.UUID, lead_id: uuid.UUID
    ) -> None:
        existing = await repository.get_running(sequence_id, lead_id)
        if existing is not None:
            existing_id = ids.encode("enrollment", existing.id)
            next_step = (
                "Resume or exit that enrollment instead."
                if existing.status == "paused"
                else "Exit that enrollment first to start the sequence again."
            )
            raise EnrollmentExists(
                f"The lead is already {existing.status} in this sequence as "
                f"{existing_id}. {next_step}",
                existing_id=existing_id,
                existing_status=existing.status,
            )

    async def get_row(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        enrollment_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Enrollment:
        enrollment = await EnrollmentRepository.from_session(session).get(
            workspace_id, enrollment_id, for_update=for_update
        )
        if enrollment is None:
            raise EnrollmentNotFound(
                f"No enrollment with id {ids.encode('enrollment', enrollment_id)} "
                "exists in this workspace."
            )
        return enrollment

    async def get(
        self, session: AsyncSession, workspace_id: uuid.UUID, enrollment_id: uuid.UUID
    ) -> EnrollmentSchema:
        enrollment = await self.get_row(session, workspace_id, enrollment_id)
        return await enrollment_view(session, enrollment)

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        lead_id: uuid.UUID | None = None,
        sequence_id: uuid.UUID | None = None,
        status: str | None = None,
    ) -> tuple[list[EnrollmentSchema], str | None, bool]:
        repository = EnrollmentRepository.from_session(session)
        rows, next_cursor, has_more = await repository.list(
            workspace_id,
            limit=limit,
            cursor=cursor,
            lead_id=lead_id,
            sequence_id=sequence_id,
            status=status,
        )
        runs = await repository.step_runs_by_enrollment(row.id for row in rows)
        views = [EnrollmentSchema.from_rows(row, runs[row.id]) for row in rows]
        return views, next_cursor, has_more

    async def pause(
        self,
        session: AsyncSession,
        principal: Principal,
        enrollment_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> EnrollmentSchema:
        enrollment = await self._lock(session, principal, enrollment_id, if_match)
        return await change_status(
            session,
            enrollment,
            "paused",
            event_type="enrollment.paused",
            actor=principal.actor,
        )

    async def resume(
        self,
        session: AsyncSession,
        principal: Principal,
        enrollment_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> EnrollmentSchema:
        enrollment = await self._lock(session, principal, enrollment_id, if_match)
        retry = await prepare_retry(session, enrollment)
        # A step that fell due while paused, or the failed step retried, runs at the
        # next moment its send window allows, and a later one keeps its time.
        next_run_at = await schedule.resume_at(session, enrollment, utcnow())
        view = await change_status(
            session,
            enrollment,
            "active",
            event_type="enrollment.resumed",
            actor=principal.actor,
            next_run_at=next_run_at,
            **retry,
        )
        defer_step(session, enrollment)
        return view

    async def exit(
        self,
        session: AsyncSession,
        principal: Principal,
        enrollment_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> EnrollmentSchema:
        enrollment = await self._lock(session, principal, enrollment_id, if_match)
        return await exit_enrollment(session, enrollment, "manual", principal.actor)

    async def _lock(
        self,
        session: AsyncSession,
        principal: Principal,
        enrollment_id: uuid.UUID,
        if_match: str | None,
    ) -> Enrollment:
        enrollment = await self.get_row(
            session, principal.workspace_id, enrollment_id, for_update=True
        )
        check_if_match(if_match, enrollment.version)
        return enrollment

    async def unsubscribe_state(
        self, session: AsyncSession, secret: str, token_text: str
    ) -> tuple[Lead, bool]:
        """Return the lead of a signed link and whether its address is suppressed."""
        token = _verified_token(secret, token_text)
        lead = await lead_service.get(session, token.workspace_id, token.lead_id)
        suppressed = await EnrollmentRepository.from_session(session).is_suppressed(
            lead.workspace_id, lead.email_normalized, lead.id
        )
        return lead, suppressed

    async def unsubscribe(
        self, session: AsyncSession, secret: str, token_text: str
    ) -> tuple[Unsubscribed, Lead]:
        """Suppress the address of a signed link and exit the lead's enrollments."""
        token = _verified_token(secret, token_text)
        lead = await lead_service.get(
            session, token.workspace_id, token.lead_id, for_update=True
        )
        repository = EnrollmentRepository.from_session(session)
        source = await repository.get(token.workspace_id, token.enrollment_id)

        # Enrollments are locked before the suppression row is written, the order the
        # worker's bounce path takes, so the two cannot deadlock.
        exited = await exit_running(session, lead, "unsubscribed", actor=_actor(lead))
        added = await suppress_address(
            session, lead, "unsubscribed", source.id if source else None
        )

        if added:
            await emit(
                session,
                workspace_id=lead.workspace_id,
                type="lead.unsubscribed",
                object_type="lead",
                object_id=lead.id,
                data=lead_data(lead),
                actor=_actor(lead),
            )
        log.info(
            "lead.unsubscribed",
            lead_id=str(lead.id),
            enrollment_id=str(token.enrollment_id),
            exited=len(exited),
            repeated=not added,
        )
        return Unsubscribed(lead_id=lead.id, exited_enrollment_ids=exited), lead


def _verified_token(secret: str, token_text: str) -> tokens.UnsubscribeToken:
    """Verify a link's token, rejecting the one a preview renders."""
    token = tokens.verify(secret, token_text)
    # A preview signs its link with the nil UUID as the enrollment, so that opening
    # a previewed email cannot unsubscribe the lead.
    if token.enrollment_id == uuid.UUID(int=0):
        raise InvalidUnsubscribeToken(
            "This unsubscribe link comes from a preview, so it unsubscribes no one. "
            "Use the link of an email that was sent."
        )
    return token


def _actor(lead: Lead) -> str:
    return f"lead:{ids.encode('lead', lead.id)}"


async def suppress_address(
    session: AsyncSession,
    lead: Lead,
    reason: str,
    enrollment_id: uuid.UUID | None,
) -> bool:
    """Suppress the lead's address, and return False when it already was."""
    return await EnrollmentRepository.from_session(session).suppress(
        EmailSuppression(
            id=ids.new_uuid(),
            workspace_id=lead.workspace_id,
            email_normalized=lead.email_normalized,
            reason=reason,
            lead_id=lead.id,
            enrollment_id=enrollment_id,
        )
    )


async def exit_running(
    session: AsyncSession, lead: Lead, reason: str, *, actor: str | None
) -> Sequence[uuid.UUID]:
    """Exit every active or paused enrollment of the lead with ``reason``."""
    repository = EnrollmentRepository.from_session(session)
    exited = []
    for enrollment in await repository.running_for_lead(lead.workspace_id, lead.id):
        await exit_enrollment(session, enrollment, reason, actor)
        exited.append(enrollment.id)
    return exited


sequence_service = SequenceService()
enrollment_service = EnrollmentService()
