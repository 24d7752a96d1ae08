"""Turning the validated steps of a request into the rows of one sequence version."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from app.core import ids
from app.models import Sequence, SequenceStep
from app.nurture.schemas import (
    EmailStepCreate,
    StepCreate,
    TaskStepCreate,
    WebhookStepCreate,
)


def step_config(step: StepCreate) -> dict[str, Any]:
    """Return the kind-specific settings stored in ``sequence_steps.config``."""
    if isinstance(step, TaskStepCreate):
        return {"title": step.title, "body": step.body, "due_in_days": step.due_in_days}
    if isinstance(step, WebhookStepCreate):
        return {"url": step.url, "headers": dict(step.headers)}
    return {}


def step_rows(
    sequence: Sequence, version: int, steps: Iterable[StepCreate]
) -> list[SequenceStep]:
    """Build the step rows of ``version`` of ``sequence``, numbered from position 0."""
    rows = []
    for position, step in enumerate(steps):
        email = step if isinstance(step, EmailStepCreate) else None
        rows.append(
            SequenceStep(
                id=ids.new_uuid(),
                workspace_id=sequence.workspace_id,
                sequence_id=sequence.id,
                sequence_version=version,
                position=position,
                kind=step.kind,
                purpose=email.purpose if email is not None else None,
                delay_amount=step.delay.amount,
                delay_unit=step.delay.unit,
                subject=email.subject if email is not None else None,
                body_text=email.body_text if email is not None else None,
                offer_id=email.offer_id if email is not None else None,
                config=step_config(step),
                condition=(
                    step.condition.model_dump(mode="json")
                    if step.condition is not None
                    else None
                ),
            )
        )
    return rows
