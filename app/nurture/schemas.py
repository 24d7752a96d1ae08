from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from app.core.schemas import (
    EnrollmentId,
    InputModel,
    LeadId,
    OutputModel,
    SequenceId,
    SequenceStepId,
)
from app.models import Enrollment as EnrollmentRow
from app.models import Sequence as SequenceRow
from app.models import SequenceStep as SequenceStepRow
from app.models import StepRun as StepRunRow
from app.nurture.states import EXIT_RULE_REASONS

StepPurpose = Literal["newsletter", "webinar_invitation", "special_offer", "follow_up"]
EnrollmentStatus = Literal["active", "paused", "completed", "exited", "failed"]
ExitReason = Literal[
    "replied",
    "converted",
    "unsubscribed",
    "bounced",
    "opportunity_created",
    "manual",
    "lead_closed",
    "merged",
    "disqualified",
    "invoice_paid",
]
ExitRule = Literal[
    "replied",
    "converted",
    "opportunity_created",
    "unsubscribed",
    "bounced",
    "disqualified",
    "invoice_paid",
]
StepRunStatus = Literal["running", "sent", "failed"]

MAX_STEPS = 50
MAX_DELAY_SECONDS = 366 * 86_400
MAX_BODY_LENGTH = 50_000


def _reject_control_characters(value: str) -> str:
    for char in value:
        if unicodedata.category(char) == "Cc":
            raise ValueError(
                f"control character U+{ord(char):04X} is not allowed, because the "
                "subject must be one line"
            )
    return value


def _reject_body_control_characters(value: str) -> str:
    for char in value:
        if char not in "\n\r\t" and unicodedata.category(char) == "Cc":
            raise ValueError(
                f"control character U+{ord(char):04X} is not allowed. Only line "
                "breaks and tabs are"
            )
    return value


Subject = Annotated[
    str,
    Field(min_length=1, max_length=300),
    AfterValidator(_reject_control_characters),
]
BodyText = Annotated[
    str,
    Field(min_length=1, max_length=MAX_BODY_LENGTH),
    AfterValidator(_reject_body_control_characters),
]


class EmailStepCreate(InputModel):
    kind: Literal["email"] = Field(
        default="email", description="The step type. Only email steps exist so far."
    )
    purpose: StepPurpose = "follow_up"
    delay_seconds: int = Field(
        default=0,
        ge=0,
        le=MAX_DELAY_SECONDS,
        description="Seconds to wait after enrollment (first step) or after the "
        "previous step was sent.",
    )
    subject: Subject = Field(
        description="Subject line, which may use merge fields such as {{ first_name }}."
    )
    body_text: BodyText = Field(
        description="Plain-text body with merge fields such as {{ first_name }}, "
        "{{ company | your team }} or {{ unsubscribe_url }}."
    )


EXIT_RULES_DESCRIPTION = (
    "The events that exit a lead's running enrollment in this sequence automatically; "
    "all of them when omitted. A manual exit is always possible. unsubscribed and "
    "bounced exit the lead from every sequence even when not listed, because the "
    "address must get no more mail."
)


class SequenceCreate(InputModel):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    exit_rules: list[ExitRule] | None = Field(
        default=None,
        max_length=len(EXIT_RULE_REASONS),
        description=EXIT_RULES_DESCRIPTION,
    )
    steps: list[EmailStepCreate] = Field(
        min_length=1,
        max_length=MAX_STEPS,
        description="The steps in the order they run.",
    )


class SequenceStep(OutputModel):
    object: Literal["sequence_step"] = "sequence_step"
    id: SequenceStepId
    sequence_id: SequenceId
    position: int = Field(description="Order within the sequence, from 0.")
    kind: Literal["email"]
    purpose: StepPurpose
    delay_seconds: int
    subject: str
    body_text: str
    created_at: datetime


class Sequence(OutputModel):
    object: Literal["sequence"] = "sequence"
    id: SequenceId
    name: str
    status: Literal["active"]
    exit_rules: list[ExitRule] = Field(description=EXIT_RULES_DESCRIPTION)
    steps: list[SequenceStep]
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_rows(
        cls, sequence: SequenceRow, steps: Iterable[SequenceStepRow]
    ) -> Sequence:
        return cls(
            id=sequence.id,
            name=sequence.name,
            status="active",
            exit_rules=sequence.exit_rules,
            steps=[SequenceStep.model_validate(step) for step in steps],
            version=sequence.version,
            created_at=sequence.created_at,
            updated_at=sequence.updated_at,
        )


class EnrollmentCreate(InputModel):
    lead_id: LeadId


class StepRun(OutputModel):
    object: Literal["step_run"] = "step_run"
    step_id: SequenceStepId
    position: int
    status: StepRunStatus = Field(
        description="running while a worker sends it, sent once the mail server "
        "accepted it, failed when the last attempt failed."
    )
    attempts: int = Field(description="Sends started, counting retries.")
    started_at: datetime
    finished_at: datetime | None
    message_id: str | None = Field(
        description="Message-ID header of the email, reused by a retry."
    )
    error: str | None = Field(description="Why the last attempt failed.")

    @classmethod
    def from_row(cls, run: StepRunRow, position: int) -> StepRun:
        return cls(
            step_id=run.step_id,
            position=position,
            status=run.status,
            attempts=run.attempts,
            started_at=run.started_at,
            finished_at=run.finished_at,
            message_id=run.message_id,
            error=run.error,
        )


class Enrollment(OutputModel):
    object: Literal["enrollment"] = "enrollment"
    id: EnrollmentId
    sequence_id: SequenceId
    lead_id: LeadId
    status: EnrollmentStatus
    next_position: int = Field(
        description="Position of the next step to run, or the step count once all ran."
    )
    next_run_at: datetime | None = Field(
        description="When the next step is due. A paused enrollment keeps it and runs "
        "the step on resume, at once if the time has passed."
    )
    exit_reason: ExitReason | None
    completed_at: datetime | None
    exited_at: datetime | None
    failed_at: datetime | None
    last_error: str | None = Field(description="Why the latest step attempt failed.")
    step_runs: list[StepRun] = Field(description="The steps run so far, in order.")
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_rows(
        cls, enrollment: EnrollmentRow, runs: Iterable[tuple[StepRunRow, int]]
    ) -> Enrollment:
        return cls(
            id=enrollment.id,
            sequence_id=enrollment.sequence_id,
            lead_id=enrollment.lead_id,
            status=enrollment.status,
            next_position=enrollment.next_position,
            next_run_at=enrollment.next_run_at,
            exit_reason=enrollment.exit_reason,
            completed_at=enrollment.completed_at,
            exited_at=enrollment.exited_at,
            failed_at=enrollment.failed_at,
            last_error=enrollment.last_error,
            step_runs=[StepRun.from_row(run, position) for run, position in runs],
            version=enrollment.version,
            created_at=enrollment.created_at,
            updated_at=enrollment.updated_at,
        )


class Unsubscribed(OutputModel):
    object: Literal["unsubscribe"] = "unsubscribe"
    lead_id: LeadId
    exited_enrollment_ids: list[EnrollmentId] = Field(
        description="Enrollments this request exited, empty when repeated."
    )
