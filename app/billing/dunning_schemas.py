"""Request and response bodies of dunning policies, reminders, promises to pay and
write-offs."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictInt

from app.billing.schemas import PositiveMinorUnits
from app.core.schemas import (
    ActivityId,
    DunningPolicyId,
    DunningReminderId,
    InputModel,
    InvoiceId,
    OutputModel,
    PipelineId,
    PromiseToPayId,
    UserId,
    drop_null_from_schema,
)

# Steps run from a year before to a year after the due date.
OffsetDays = Annotated[StrictInt, Field(ge=-365, le=365)]
MAX_STEPS = 20
Reason = Annotated[str, Field(min_length=1, max_length=500)]
Note = Annotated[str, Field(min_length=1, max_length=2000)]

# The merge fields of a reminder's subject and body, with what each renders.
REMINDER_FIELDS: dict[str, str] = {
    "customer_name": "The customer's name.",
    "invoice_number": "The invoice number, such as INV-2026-000123.",
    "amount_due": "The invoice total with its currency, such as 1,234.50 EUR.",
    "amount_remaining": "What is still owed, with its currency.",
    "currency": "The invoice's ISO 4217 currency code.",
    "due_date": "The due date, YYYY-MM-DD.",
    "days_overdue": "Days past the due date in the customer's time zone; 0 before.",
    "payment_link": "The link that pays the invoice online; empty without one.",
}


class DunningStepIn(InputModel):
    offset_days: OffsetDays = Field(
        description="Days from the due date: -3 is three days before it, 0 the due "
        "date itself, 7 a week after it. Unique within a policy."
    )
    subject: Annotated[str, Field(min_length=1, max_length=300)] = Field(
        description="Email subject; merge fields such as {{ invoice_number }}."
    )
    body: Annotated[str, Field(min_length=1, max_length=20_000)] = Field(
        description="Plain-text email body with the same merge fields."
    )
    create_task: StrictBool = Field(
        default=False,
        description="Also open a task for the customer's owner when the email is sent.",
    )
    task_title: Annotated[str, Field(min_length=1, max_length=300)] | None = None


Steps = Annotated[list[DunningStepIn], Field(min_length=1, max_length=MAX_STEPS)]


class DunningPolicyCreate(InputModel):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    is_default: StrictBool = Field(
        default=False,
        description="Use the policy for every invoice without its own or its "
        "customer's policy. Setting it clears the flag on the previous default.",
    )
    steps: Steps
    send_hour: Annotated[StrictInt, Field(ge=0, le=23)] = Field(
        default=9, description="Hour of the customer's local day reminders go out."
    )
    renewal_pipeline_id: PipelineId | None = Field(
        default=None,
        description="Pause reminders while the customer has an open opportunity in "
        "this pipeline: its renewal pipeline.",
    )
    mark_uncollectible: StrictBool = Field(
        default=False,
        description="After the last step, mark the invoice uncollectible.",
    )
    final_task: StrictBool = Field(
        default=False,
        description="After the last step, open a task for the customer's owner.",
    )
    final_action_delay_days: Annotated[StrictInt, Field(ge=0, le=365)] = Field(
        default=0,
        description="Days after the last step's send time when the final action runs.",
    )


class DunningPolicyUpdate(InputModel):
    """Fields to change; ``steps``, when sent, replace all steps."""

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    is_default: StrictBool | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    steps: Steps | None = Field(default=None, json_schema_extra=drop_null_from_schema)
    send_hour: Annotated[StrictInt, Field(ge=0, le=23)] | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    renewal_pipeline_id: PipelineId | None = None
    mark_uncollectible: StrictBool | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    final_task: StrictBool | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    final_action_delay_days: Annotated[StrictInt, Field(ge=0, le=365)] | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )


class DunningStep(OutputModel):
    offset_days: int
    subject: str
    body: str
    create_task: bool
    task_title: str | None


class DunningPolicy(OutputModel):
    object: Literal["dunning_policy"] = "dunning_policy"
    id: DunningPolicyId
    name: str
    is_default: bool
    steps: list[DunningStep]
    send_hour: int
    renewal_pipeline_id: PipelineId | None
    mark_uncollectible: bool
    final_task: bool
    final_action_delay_days: int
    version: int
    created_at: datetime
    updated_at: datetime


class DunningPolicyAssign(InputModel):
    dunning_policy_id: DunningPolicyId | None = Field(
        description="The policy to use; null removes the override."
    )


class DunningAssignment(OutputModel):
    object: Literal["dunning_assignment"] = "dunning_assignment"
    dunning_policy_id: DunningPolicyId | None


class DunningReminder(OutputModel):
    object: Literal["dunning_reminder"] = "dunning_reminder"
    id: DunningReminderId
    invoice_id: InvoiceId
    policy_id: DunningPolicyId | None
    step: str = Field(
        description='The step: its offset such as "-3", "0", "+7", or "final".'
    )
    offset_days: int | None
    status: Literal[
        "sending", "retrying", "sent", "failed", "skipped", "waiting", "done"
    ] = Field(
        description="sending or retrying until the mail server accepts it, then sent; "
        "failed after a permanent error or too many attempts; skipped, see "
        "skip_reason. The final step is waiting during a pause, then done."
    )
    skip_reason: (
        Literal["promise_to_pay", "dispute", "renewal", "superseded", "invoice_closed"]
        | None
    ) = None
    scheduled_at: datetime
    attempts: int
    recipient: str | None
    subject: str | None
    activity_id: ActivityId | None = Field(
        description="The task opened for the customer's owner, if any."
    )
    sent_at: datetime | None
    error: str | None
    created_at: datetime


class PromiseToPayCreate(InputModel):
    promised_date: date = Field(
        description="The day the customer promised to pay by, in the invoice's time "
        "zone; today or later."
    )
    amount: PositiveMinorUnits = Field(
        description="Minor units promised; at most the amount remaining."
    )
    note: Note | None = None


class PromiseToPay(OutputModel):
    object: Literal["promise_to_pay"] = "promise_to_pay"
    id: PromiseToPayId
    invoice_id: InvoiceId
    promised_date: date
    amount: int
    currency: str
    status: Literal["pending", "kept", "broken", "canceled"] = Field(
        description="pending until kept or broken. A pending promise is kept at "
        "once when the invoice is paid, and canceled when it is voided or written off."
    )
    recorded_by: str | None = Field(
        description="The actor of the request that recorded it."
    )
    note: str | None
    resolved_at: datetime | None
    created_at: datetime


PauseReason = Literal["promise_to_pay", "dispute", "renewal"]


class InvoiceDunning(OutputModel):
    object: Literal["invoice_dunning"] = "invoice_dunning"
    invoice_id: InvoiceId
    policy_id: DunningPolicyId | None
    policy_source: Literal["invoice", "customer", "workspace"] | None = Field(
        description="Where the policy comes from; null when no policy applies."
    )
    paused: bool
    pause_reasons: list[PauseReason]
    reminders: list[DunningReminder]
    promises_to_pay: list[PromiseToPay]


class MarkUncollectible(InputModel):
    reason: Reason | None = None


class WriteOffCreate(InputModel):
    reason: Reason = Field(description="Why the debt is written off.")
    approver_id: UserId = Field(
        description="The active manager or admin approving the write-off; another "
        "user than the requester, whom On-Behalf-Of names and who is required."
    )
