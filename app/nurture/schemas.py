from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Discriminator, Field, Tag, WrapValidator

from app.core.schemas import (
    EnrollmentId,
    HolidayCalendarId,
    InputModel,
    LeadId,
    OfferId,
    OutputModel,
    SequenceId,
    SequenceStepId,
    TimeZone,
    UserId,
)
from app.models import Enrollment as EnrollmentRow
from app.models import Sequence as SequenceRow
from app.models import SequenceStep as SequenceStepRow
from app.models import StepRun as StepRunRow
from app.nurture.conditions import Condition, StepCondition
from app.nurture.reenrollment import DEFAULT_POLICY, ReenrollmentPolicy
from app.nurture.schedule_schemas import SendWindow, SendWindowSpec, StepDelay
from app.nurture.states import EXIT_RULE_REASONS
from app.nurture.step_kinds import (
    SenderAddress,
    TaskBody,
    TaskDueInDays,
    TaskTitle,
    WebhookHeaders,
    WebhookUrlText,
    step_kind,
    untag_step_errors,
)

StepKind = Literal["email", "task", "webhook", "wait"]
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
# The exit rules a request may list. manual is accepted and not stored,
# because a manual exit is always possible.
ExitRuleInput = Literal[ExitRule, "manual"]
StepRunStatus = Literal["running", "sent", "completed", "skipped", "failed"]

MAX_STEPS = 50
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
        default="email", description="An email to the lead, the default kind."
    )
    purpose: StepPurpose = "follow_up"
    delay: StepDelay = Field(
        default_factory=StepDelay,
        description="How long to wait after enrollment (first step) or after the "
        "previous step was sent, before the send window applies. Default 0 minutes.",
    )
    subject: Subject = Field(
        description="Subject line, which may use merge fields such as "
        "{{ lead.first_name }}."
    )
    body_text: BodyText = Field(
        description="Plain-text body with merge fields such as {{ lead.first_name }}, "
        "{{ lead.company | your team }} or {{ unsubscribe_url }}."
    )
    offer_id: OfferId | None = Field(
        default=None,
        description="The offer whose code this step issues to each lead; only for "
        "special_offer steps, whose body may then use {{ offer.code }}, "
        "{{ offer.discount }} and {{ offer.expires_at }}.",
    )
    condition: StepCondition | None = None


class TaskStepCreate(InputModel):
    kind: Literal["task"] = Field(description="A task for the lead's owner.")
    delay: StepDelay = Field(
        default_factory=StepDelay,
        description="How long to wait after enrollment (first step) or after the "
        "previous step ran, before the send window applies. Default 0 minutes.",
    )
    title: TaskTitle = Field(
        description="Task title, which may use merge fields such as {{ lead.full_name }}."
    )
    body: TaskBody | None = Field(
        default=None, description="Task notes, with the same merge fields as the title."
    )
    due_in_days: TaskDueInDays = Field(
        default=0, description="Days from the step's run until the task is due."
    )
    condition: StepCondition | None = None


class WebhookStepCreate(InputModel):
    kind: Literal["webhook"] = Field(
        description="A POST to an external service, such as an email service."
    )
    delay: StepDelay = Field(
        default_factory=StepDelay,
        description="How long to wait after enrollment (first step) or after the "
        "previous step ran, before the send window applies. Default 0 minutes.",
    )
    url: WebhookUrlText = Field(description="An absolute http:// or https:// URL.")
    headers: WebhookHeaders = Field(
        default_factory=dict,
        description="Extra request headers, at most 20. Host, Content-Length and "
        "the webhook-* signature headers are set by the sender.",
    )
    condition: StepCondition | None = None


class WaitStepCreate(InputModel):
    kind: Literal["wait"] = Field(
        description="Only waits its delay before the next step."
    )
    delay: StepDelay = Field(
        default_factory=StepDelay,
        description="How long to wait after enrollment (first step) or after the "
        "previous step ran, before the send window applies. Default 0 minutes.",
    )
    condition: StepCondition | None = None


StepCreate = Annotated[
    Annotated[EmailStepCreate, Tag("email")]
    | Annotated[TaskStepCreate, Tag("task")]
    | Annotated[WebhookStepCreate, Tag("webhook")]
    | Annotated[WaitStepCreate, Tag("wait")],
    Discriminator(
        step_kind,
        custom_error_type="invalid_step_kind",
        custom_error_message="kind must be email, task, webhook or wait",
    ),
    WrapValidator(untag_step_errors),
]
StepList = Annotated[
    list[StepCreate],
    Field(
        min_length=1,
        max_length=MAX_STEPS,
        description="The steps in the order they run.",
    ),
]


EXIT_RULES_DESCRIPTION = (
    "The events that exit a lead's running enrollment in this sequence automatically; "
    "all of them when omitted. A manual exit is always possible, so manual may be "
    "listed but is not stored. unsubscribed and "
    "bounced exit the lead from every sequence even when not listed, because the "
    "address must get no more mail."
)


class SequenceCreate(InputModel):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    mail_from: SenderAddress | None = Field(
        default=None,
        description="From header of the sequence's emails, such as "
        "Acme Sales <sales@acme.example>. Null uses the server's mail_from setting.",
    )
    reply_to: SenderAddress | None = Field(
        default=None, description="Reply-To header of the sequence's emails, or null."
    )
    timezone: TimeZone | None = Field(
        default=None,
        description="IANA zone for leads without a valid timezone; the workspace's "
        "zone when null.",
    )
    send_window: SendWindowSpec | None = Field(
        default=None,
        description="Local weekdays and hours in which steps run; any time when null.",
    )
    holiday_calendar_id: HolidayCalendarId | None = Field(
        default=None,
        description="Dates on which no step runs and that business_days skip.",
    )
    steps: StepList
    exit_rules: list[ExitRuleInput] | None = Field(
        default=None,
        max_length=len(EXIT_RULE_REASONS) + 1,
        description=EXIT_RULES_DESCRIPTION,
    )
    reenrollment_policy: ReenrollmentPolicy = Field(
        default=DEFAULT_POLICY,
        description="Whether a lead may enroll again once no enrollment of it is "
        "active or paused: always; after_completion, only if every earlier "
        "enrollment completed; never, if it was ever enrolled.",
    )


class SequenceUpdate(InputModel):
    """Fields to change; sending ``steps`` saves them as a new version."""

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    mail_from: SenderAddress | None = None
    reply_to: SenderAddress | None = None
    timezone: TimeZone | None = None
    send_window: SendWindowSpec | None = None
    holiday_calendar_id: HolidayCalendarId | None = None
    reenrollment_policy: ReenrollmentPolicy | None = None
    exit_rules: list[ExitRuleInput] | None = Field(
        default=None,
        max_length=len(EXIT_RULE_REASONS) + 1,
        description=EXIT_RULES_DESCRIPTION,
    )
    steps: StepList | None = Field(
        default=None,
        description="The complete new list of steps. Running enrollments finish the "
        "version they started on.",
    )


class SequenceStep(OutputModel):
    object: Literal["sequence_step"] = "sequence_step"
    id: SequenceStepId
    sequence_id: SequenceId
    sequence_version: int = Field(description="The version of the sequence, from 1.")
    position: int = Field(description="Order within the sequence, from 0.")
    kind: StepKind
    purpose: StepPurpose | None = Field(description="Email steps only.")
    delay: StepDelay
    subject: str | None = Field(description="Email steps only.")
    body_text: str | None = Field(description="Email steps only.")
    offer_id: OfferId | None = Field(description="Special-offer email steps only.")
    title: str | None = Field(description="Task steps only.")
    body: str | None = Field(description="Task steps only.")
    due_in_days: int | None = Field(description="Task steps only.")
    url: str | None = Field(description="Webhook steps only.")
    headers: dict[str, str] | None = Field(description="Webhook steps only.")
    condition: Condition | None
    created_at: datetime

    @classmethod
    def from_row(cls, step: SequenceStepRow) -> SequenceStep:
        config: dict[str, Any] = step.config or {}
        return cls(
            id=step.id,
            sequence_id=step.sequence_id,
            sequence_version=step.sequence_version,
            position=step.position,
            kind=step.kind,
            purpose=step.purpose if step.kind == "email" else None,
            delay=StepDelay(amount=step.delay_amount, unit=step.delay_unit),
            subject=step.subject,
            body_text=step.body_text,
            offer_id=step.offer_id,
            condition=step.condition,
            title=config.get("title"),
            body=config.get("body"),
            due_in_days=config.get("due_in_days"),
            url=config.get("url"),
            headers=config.get("headers"),
            created_at=step.created_at,
        )


class Sequence(OutputModel):
    object: Literal["sequence"] = "sequence"
    id: SequenceId
    name: str
    status: Literal["active", "archived"] = Field(
        description="An archived sequence takes no new enrollments, and running ones "
        "finish."
    )
    mail_from: str | None = Field(
        description="From header of its emails; null uses the server's setting."
    )
    reply_to: str | None
    timezone: str | None
    send_window: SendWindow | None
    holiday_calendar_id: HolidayCalendarId | None
    reenrollment_policy: ReenrollmentPolicy
    latest_version: int = Field(
        description="The version new enrollments start on; steps lists its steps."
    )
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
            status=sequence.status,
            mail_from=sequence.mail_from,
            reply_to=sequence.reply_to,
            timezone=sequence.timezone,
            send_window=sequence.send_window,
            holiday_calendar_id=sequence.holiday_calendar_id,
            reenrollment_policy=sequence.reenrollment_policy,
            latest_version=sequence.latest_version,
            exit_rules=sequence.exit_rules,
            steps=[SequenceStep.from_row(step) for step in steps],
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
        description="running while a worker runs it; sent once the mail server "
        "accepted the email or the webhook receiver answered 2xx; completed for a "
        "task or wait step; skipped when the step's condition was false; failed when "
        "the last attempt failed."
    )
    attempts: int = Field(
        description="Sends started, counting retries. Resuming a failed enrollment "
        "sets it back to 0."
    )
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
    sequence_version: int = Field(
        description="The version of the sequence whose steps this enrollment runs."
    )
    next_position: int = Field(
        description="Position of the next step to run, or the step count once all ran."
    )
    next_run_at: datetime | None = Field(
        description="When the next step is due. A paused enrollment keeps it and runs "
        "the step on resume, at the next moment the send window allows if the time "
        "has passed."
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
            sequence_version=enrollment.sequence_version,
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


class SequenceVersion(OutputModel):
    object: Literal["sequence_version"] = "sequence_version"
    sequence_id: SequenceId
    number: int = Field(description="The version number, from 1.")
    latest: bool = Field(description="Whether new enrollments start on this version.")
    steps: list[SequenceStep]


class EnrollmentMoveVersion(InputModel):
    version: int = Field(
        ge=1, le=2_147_483_647, description="The version of the sequence to run."
    )
    position: int | None = Field(
        default=None,
        ge=0,
        le=2_147_483_647,
        description="The step of that version to run next. Omitted, the enrollment "
        "keeps its position.",
    )


class OfferValues(InputModel):
    """Sample values of the offer fields, for previewing a special offer email."""

    code: Annotated[str, Field(max_length=100)] | None = None
    discount: Annotated[str, Field(max_length=100)] | None = None
    expires_at: Annotated[str, Field(max_length=100)] | None = None


class StepPreviewRequest(InputModel):
    lead_id: LeadId
    version: int | None = Field(
        default=None, ge=1, description="The version to preview; omitted, the latest."
    )
    offer: OfferValues | None = Field(
        default=None,
        description="Values of the offer.* fields. Omitted, they render empty, or as "
        "their fallback.",
    )


class EmailPreview(OutputModel):
    mail_from: str = Field(description="The From header.")
    reply_to: str | None = Field(description="The Reply-To header, if any.")
    to: str
    subject: str
    body_text: str = Field(description="The body as sent, with the unsubscribe link.")
    headers: dict[str, str] = Field(description="Every header of the message.")


class TaskPreview(OutputModel):
    title: str
    body: str | None
    due_in_days: int
    assignee_id: UserId | None = Field(
        description="The lead's owner, who gets the task."
    )


class WebhookPreview(OutputModel):
    method: Literal["POST"] = "POST"
    url: str
    headers: dict[str, str]


class StepPreview(OutputModel):
    object: Literal["step_preview"] = "step_preview"
    sequence_id: SequenceId
    sequence_version: int
    position: int
    kind: StepKind
    email: EmailPreview | None = Field(description="Email steps only.")
    task: TaskPreview | None = Field(description="Task steps only.")
    webhook: WebhookPreview | None = Field(description="Webhook steps only.")
