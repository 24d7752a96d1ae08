"""Editing sequences: versions of their steps, and moving an enrollment between them.

A version's steps never change once saved. Sending new steps adds version
``latest_version + 1``. New enrollments start on the latest version, and each
running enrollment keeps reading the steps of its own ``sequence_version`` until it
ends, unless it is moved explicitly.
"""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.concurrency import check_if_match
from app.core.errors import FieldError, InvalidInput
from app.core.events import emit
from app.nurture import merge, states
from app.nurture.errors import (
    EnrollmentNotRunning,
    SequenceNotFound,
    SequenceVersionNotFound,
)
from app.nurture.holidays import holiday_calendar_service
from app.nurture.offer_steps import check_step_offers
from app.nurture.repository import SequenceRepository
from app.nurture.schedule_schemas import SendWindowSpec
from app.nurture.schemas import Enrollment as EnrollmentSchema
from app.nurture.schemas import EnrollmentMoveVersion, SequenceUpdate, SequenceVersion
from app.nurture.schemas import Sequence as SequenceSchema
from app.nurture.schemas import SequenceStep as SequenceStepSchema
from app.nurture.service import enrollment_service, publish, sequence_service
from app.nurture.states import RUNNING_STATUSES
from app.nurture.step_kinds import STRICT_URL_POLICY, check_step_urls
from app.nurture.step_rows import step_rows
from app.webhooks.url_safety import AddressPolicy

log = structlog.get_logger(__name__)

# Fields that PATCH may set but not to null, because a sequence always has them.
_REQUIRED = ("name", "steps", "reenrollment_policy", "exit_rules")


async def update_sequence(
    session: AsyncSession,
    principal: Principal,
    sequence_id: uuid.UUID,
    payload: SequenceUpdate,
    *,
    if_match: str | None,
    url_policy: AddressPolicy = STRICT_URL_POLICY,
) -> SequenceSchema:
    """Change settings in place, and save new ``steps`` as the next version."""
    fields = payload.model_fields_set
    for name in _REQUIRED:
        if name in fields and getattr(payload, name) is None:
            raise InvalidInput(
                f"{name} cannot be null. Omit it to keep the current value.",
                errors=[FieldError(name, "must not be null", "null_not_allowed")],
            )
    if payload.steps is not None:
        merge.check_step_templates(list(payload.steps))
        check_step_urls(payload.steps, url_policy)
    repository = SequenceRepository.from_session(session)
    sequence = await repository.lock(principal.workspace_id, sequence_id)
    if sequence is None:
        raise SequenceNotFound(
            f"No sequence with id {ids.encode('sequence', sequence_id)} exists in "
            "this workspace."
        )
    check_if_match(if_match, sequence.version)
    scheduling = {"timezone", "send_window", "holiday_calendar_id"}
    if fields & scheduling:
        window = (
            payload.send_window
            if "send_window" in fields
            else (
                SendWindowSpec.model_validate(sequence.send_window)
                if sequence.send_window is not None
                else None
            )
        )
        await holiday_calendar_service.check_sequence_settings(
            session,
            principal.workspace_id,
            payload.timezone if "timezone" in fields else sequence.timezone,
            window,
            (
                payload.holiday_calendar_id
                if "holiday_calendar_id" in fields
                else sequence.holiday_calendar_id
            ),
        )
    if payload.steps is not None:
        await check_step_offers(session, principal.workspace_id, payload.steps)

    if payload.name is not None:
        sequence.name = payload.name
    if "mail_from" in fields:
        sequence.mail_from = payload.mail_from
    if "reply_to" in fields:
        sequence.reply_to = payload.reply_to
    if "timezone" in fields:
        sequence.timezone = payload.timezone
    if "send_window" in fields:
        sequence.send_window = (
            payload.send_window.model_dump()
            if payload.send_window is not None
            else None
        )
    if "holiday_calendar_id" in fields:
        sequence.holiday_calendar_id = payload.holiday_calendar_id
    if payload.reenrollment_policy is not None:
        sequence.reenrollment_policy = payload.reenrollment_policy
    if payload.exit_rules is not None:
        sequence.exit_rules = states.exit_rules(payload.exit_rules)
    if payload.steps is not None:
        sequence.latest_version += 1
        session.add_all(step_rows(sequence, sequence.latest_version, payload.steps))
    await session.flush()
    await session.refresh(sequence)
    steps = await repository.version_steps(sequence.id, sequence.latest_version)
    view = SequenceSchema.from_rows(sequence, steps)
    if not fields:
        return view

    await emit(
        session,
        workspace_id=sequence.workspace_id,
        type="sequence.updated",
        object_type="sequence",
        object_id=sequence.id,
        data=view.model_dump(mode="json"),
        actor=principal.actor,
    )
    log.info(
        "sequence.updated",
        sequence_id=str(sequence.id),
        latest_version=sequence.latest_version,
        new_version=payload.steps is not None,
    )
    return view


async def archive_sequence(
    session: AsyncSession,
    principal: Principal,
    sequence_id: uuid.UUID,
    *,
    if_match: str | None,
) -> SequenceSchema:
    """Stop new enrollments. Archiving an archived sequence changes nothing."""
    repository = SequenceRepository.from_session(session)
    sequence = await repository.lock(principal.workspace_id, sequence_id)
    if sequence is None:
        raise SequenceNotFound(
            f"No sequence with id {ids.encode('sequence', sequence_id)} exists in "
            "this workspace."
        )
    check_if_match(if_match, sequence.version)
    if sequence.status == "archived":
        steps = await repository.version_steps(sequence.id, sequence.latest_version)
        return SequenceSchema.from_rows(sequence, steps)

    sequence.status = "archived"
    await session.flush()
    await session.refresh(sequence)
    steps = await repository.version_steps(sequence.id, sequence.latest_version)
    view = SequenceSchema.from_rows(sequence, steps)

    await emit(
        session,
        workspace_id=sequence.workspace_id,
        type="sequence.archived",
        object_type="sequence",
        object_id=sequence.id,
        data=view.model_dump(mode="json"),
        actor=principal.actor,
    )
    log.info("sequence.archived", sequence_id=str(sequence.id))
    return view


async def get_version(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    sequence_id: uuid.UUID,
    number: int,
) -> SequenceVersion:
    sequence = await sequence_service.get_row(session, workspace_id, sequence_id)
    steps = await SequenceRepository.from_session(session).version_steps(
        sequence.id, number
    )
    if not steps:
        raise _version_not_found(sequence.id, number, sequence.latest_version)
    return SequenceVersion(
        sequence_id=sequence.id,
        number=number,
        latest=number == sequence.latest_version,
        steps=[SequenceStepSchema.from_row(step) for step in steps],
    )


def _version_not_found(
    sequence_id: uuid.UUID, number: int, latest: int
) -> SequenceVersionNotFound:
    return SequenceVersionNotFound(
        f"Sequence {ids.encode('sequence', sequence_id)} has no version {number}. "
        f"Its versions are 1 to {latest}.",
        latest_version=latest,
    )


async def move_version(
    session: AsyncSession,
    principal: Principal,
    enrollment_id: uuid.UUID,
    payload: EnrollmentMoveVersion,
    *,
    if_match: str | None,
) -> EnrollmentSchema:
    """Make a running enrollment continue on another version of its sequence.

    The enrollment keeps its ``next_run_at``, so the step it moves to runs when its
    current step would have run. Steps of the new version have their own step runs,
    so a position already run on the old version runs again if moved to.
    """
    enrollment = await enrollment_service.get_row(
        session, principal.workspace_id, enrollment_id, for_update=True
    )
    check_if_match(if_match, enrollment.version)
    if enrollment.status not in RUNNING_STATUSES:
        raise EnrollmentNotRunning(
            f"Enrollment {ids.encode('enrollment', enrollment.id)} is "
            f"{enrollment.status}. Only active or paused enrollments can move to "
            "another version.",
            current_status=enrollment.status,
        )
    sequence = await sequence_service.get_row(
        session, principal.workspace_id, enrollment.sequence_id
    )
    steps = await SequenceRepository.from_session(session).version_steps(
        sequence.id, payload.version
    )
    if not steps:
        error = _version_not_found(
            sequence.id, payload.version, sequence.latest_version
        )
        raise InvalidInput(
            error.detail,
            errors=[FieldError("version", error.detail, "version_not_found")],
        )
    position = (
        payload.position if payload.position is not None else enrollment.next_position
    )
    if position >= len(steps):
        message = (
            f"Version {payload.version} has {len(steps)} steps, so position must be "
            f"0 to {len(steps) - 1}; got {position}."
        )
        raise InvalidInput(
            message, errors=[FieldError("position", message, "position_out_of_range")]
        )
    previous = enrollment.sequence_version

    enrollment.sequence_version = payload.version
    enrollment.next_position = position
    await session.flush()
    await session.refresh(enrollment)

    view = await publish(
        session, enrollment, "enrollment.version_changed", principal.actor
    )
    log.info(
        "enrollment.version_changed",
        enrollment_id=str(enrollment.id),
        from_version=previous,
        to_version=payload.version,
        position=position,
    )
    return view
