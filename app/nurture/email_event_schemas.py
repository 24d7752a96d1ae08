from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import Field, model_validator

from app.core.schemas import (
    EmailEventId,
    EngagementId,
    InputModel,
    LeadId,
    OutputModel,
    Timestamp,
)

EmailEventType = Literal[
    "opened",
    "clicked",
    "replied",
    "bounced",
    "unsubscribed",
    "complained",
    "webinar_registered",
    "webinar_attended",
]
EmailEventStatus = Literal["recorded", "unmatched", "ignored"]
MAX_METADATA_KEYS = 50


class GenericEmailEvent(InputModel):
    """The body the ``generic`` provider posts, signed per Standard Webhooks."""

    id: Annotated[str, Field(min_length=1, max_length=255)] = Field(
        description="The email service's id of the event; a redelivery repeats it."
    )
    type: EmailEventType = Field(description="complained is recorded as unsubscribed.")
    occurred_at: Timestamp
    message_id: Annotated[str, Field(min_length=1, max_length=300)] | None = Field(
        default=None,
        description="The Message-ID header of the email the event is about; matched "
        "first.",
    )
    email: Annotated[str, Field(min_length=3, max_length=320)] | None = Field(
        default=None,
        description="The recipient address, matched when message_id is absent or "
        "unknown.",
    )
    bounce_type: Literal["hard", "soft"] = Field(
        default="hard",
        description="For bounced only: a hard bounce suppresses the address and "
        "exits the lead's enrollments, a soft one is stored and ignored.",
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="Kept as given on the engagement, up to 50 keys.",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.message_id is None and self.email is None:
            raise ValueError("send message_id or email, so the event can be matched")
        if len(self.metadata) > MAX_METADATA_KEYS:
            raise ValueError(f"metadata must have at most {MAX_METADATA_KEYS} keys")
        return self


class EmailEventReceipt(OutputModel):
    object: Literal["email_event"] = "email_event"
    id: EmailEventId
    status: EmailEventStatus = Field(
        description="recorded: a lead engagement was added; unmatched: no email or "
        "lead has that Message-ID or address; ignored: nothing to record, such as a "
        "soft bounce or an erased lead."
    )
    duplicate: bool = Field(
        description="True when this event id was stored before; nothing changed."
    )
    lead_id: LeadId | None
    engagement_id: EngagementId | None
    received_at: datetime


class EmailEventSecret(OutputModel):
    object: Literal["email_event_secret"] = "email_event_secret"
    secret: str = Field(
        description="The whsec_ secret the email service signs events with. It is "
        "shown only in this response."
    )
    previous_secret_expires_at: datetime | None = Field(
        description="Until then the secret this one replaced stays valid too."
    )
    endpoint_path: str = Field(
        description="Where the email service posts events, relative to the API's "
        "base URL."
    )
    created_at: datetime
    updated_at: datetime
