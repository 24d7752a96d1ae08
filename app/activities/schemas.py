from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, computed_field

from app.core.clock import utcnow
from app.core.schemas import (
    ActivityId,
    ContactId,
    CustomerId,
    InputModel,
    LeadId,
    OpportunityId,
    OutputModel,
    Timestamp,
    UserId,
)
from app.webhooks.schemas import Event

ActivityKind = Literal["note", "call", "email", "meeting", "task"]
TIMED_KINDS = ("call", "meeting")
Subject = Annotated[str, Field(min_length=1, max_length=300)]
Body = Annotated[str, Field(min_length=1, max_length=20_000)]
Outcome = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        description="How it went, such as connected or left_voicemail.",
    ),
]
DurationSeconds = Annotated[
    int, Field(ge=0, le=86_400, description="Length of a call or meeting in seconds.")
]


class ActivityCreate(InputModel):
    kind: ActivityKind
    subject: Subject | None = Field(
        default=None, description="Required except for notes."
    )
    body: Body | None = Field(default=None, description="Required for notes.")
    outcome: Outcome | None = None
    occurred_at: Timestamp | None = Field(
        default=None,
        description="When a logged activity happened; now when omitted. Not for tasks.",
    )
    due_at: Timestamp | None = Field(default=None, description="Tasks only.")
    duration_seconds: DurationSeconds | None = Field(
        default=None, description="Calls and meetings only."
    )
    owner_id: UserId | None = Field(
        default=None,
        description="The user who did it or must do it; the On-Behalf-Of user when "
        "omitted.",
    )
    lead_id: LeadId | None = None
    contact_id: ContactId | None = None
    customer_id: CustomerId | None = Field(
        default=None,
        description="Filled in from the contact or opportunity when omitted.",
    )
    opportunity_id: OpportunityId | None = None


class ActivityUpdate(InputModel):
    subject: Subject | None = None
    body: Body | None = None
    outcome: Outcome | None = None
    occurred_at: Timestamp | None = None
    due_at: Timestamp | None = Field(
        default=None,
        description="Tasks only; a new due date can make the task overdue again.",
    )
    duration_seconds: DurationSeconds | None = None
    owner_id: UserId | None = None


class ActivityComplete(InputModel):
    outcome: Outcome | None = None
    completed_at: Timestamp | None = Field(
        default=None, description="Now when omitted."
    )


class Activity(OutputModel):
    object: Literal["activity"] = "activity"
    id: ActivityId
    kind: ActivityKind
    subject: str | None
    body: str | None
    outcome: str | None
    occurred_at: datetime = Field(
        description="When a logged activity happened, or when a task was created."
    )
    due_at: datetime | None
    completed_at: datetime | None
    duration_seconds: int | None
    owner_id: UserId | None
    lead_id: LeadId | None
    contact_id: ContactId | None
    customer_id: CustomerId | None
    opportunity_id: OpportunityId | None
    version: int
    created_at: datetime
    updated_at: datetime

    @computed_field(  # type: ignore[prop-decorator]
        description="True for a task past its due date and not completed."
    )
    @property
    def overdue(self) -> bool:
        return (
            self.kind == "task"
            and self.completed_at is None
            and self.due_at is not None
            and self.due_at < utcnow()
        )


class TimelineItem(OutputModel):
    """One entry of a record's timeline: an activity or an event of the record."""

    object: Literal["timeline_item"] = "timeline_item"
    type: Literal["activity", "event"]
    at: datetime = Field(
        description="The activity's occurred_at, or the event's created_at."
    )
    activity: Activity | None
    event: Event | None
