"""Linking a lead engagement to the enrollment and step run whose email caused it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.errors import FieldError, InvalidInput
from app.models import Enrollment, Lead, StepRun


@dataclass(frozen=True)
class EngagementSource:
    """The enrollment and step run whose email caused an engagement, or None."""

    enrollment_id: uuid.UUID | None = None
    step_run_id: uuid.UUID | None = None
    message_id: str | None = None


def normalize_message_id(value: str) -> str:
    """Return a Message-ID in the ``<local@domain>`` form that step runs store."""
    text = value.strip()
    if not text.startswith("<"):
        text = f"<{text}>"
    return text


async def step_run_by_message_id(
    session: AsyncSession, workspace_id: uuid.UUID, message_id: str
) -> tuple[StepRun, Enrollment] | None:
    """Find the step run that sent ``message_id`` and its enrollment."""
    row = (
        await session.execute(
            select(StepRun, Enrollment)
            .join(Enrollment, Enrollment.id == StepRun.enrollment_id)
            .where(
                StepRun.workspace_id == workspace_id,
                StepRun.message_id == normalize_message_id(message_id),
            )
            .order_by(StepRun.id)
            .limit(1)
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def engagement_source(
    session: AsyncSession,
    lead: Lead,
    enrollment_id: uuid.UUID | None,
    message_id: str | None,
) -> EngagementSource:
    """Check that the given enrollment or Message-ID belongs to ``lead``.

    Raises ``InvalidInput`` naming the field when it is unknown, belongs to another
    lead, or when both are given and disagree.
    """
    source = EngagementSource()
    if message_id is not None:
        found = await step_run_by_message_id(session, lead.workspace_id, message_id)
        if found is None or found[1].lead_id != lead.id:
            raise _invalid(
                "message_id",
                "No email sent to this lead has that Message-ID. Send the Message-ID "
                "header of a nurture email the lead received, or omit message_id.",
                "message_not_found",
            )
        run, enrollment = found
        source = EngagementSource(
            enrollment_id=enrollment.id, step_run_id=run.id, message_id=run.message_id
        )
    if enrollment_id is None:
        return source

    if source.enrollment_id is not None and source.enrollment_id != enrollment_id:
        raise _invalid(
            "enrollment_id",
            "enrollment_id names another enrollment than the one that sent "
            "message_id. Send one of them, or both of the same email.",
            "source_mismatch",
        )
    owner = await session.scalar(
        select(Enrollment.lead_id).where(
            Enrollment.workspace_id == lead.workspace_id,
            Enrollment.id == enrollment_id,
        )
    )
    if owner != lead.id:
        raise _invalid(
            "enrollment_id",
            f"No enrollment {ids.encode('enrollment', enrollment_id)} of this lead "
            "exists. Send an enrollment of the lead, or omit enrollment_id.",
            "enrollment_not_found",
        )
    return EngagementSource(
        enrollment_id=enrollment_id,
        step_run_id=source.step_run_id,
        message_id=source.message_id,
    )


def _invalid(field: str, message: str, code: str) -> InvalidInput:
    return InvalidInput(message, errors=[FieldError(field, message, code)])
