from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin, VersionMixin, WorkspaceMixin

EXIT_RULES_DEFAULT = (
    '\'["replied", "converted", "opportunity_created", "unsubscribed", '
    '"bounced", "disqualified", "invoice_paid"]\'::jsonb'
)


class Sequence(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """An ordered list of timed steps that nurture an enrolled lead."""

    __tablename__ = "sequences"

    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="active")
    # Scheduling: the IANA zone used when the lead has none, the local send window
    # ({"weekdays": [...], "start": "HH:MM", "end": "HH:MM"}) and the holidays.
    timezone: Mapped[str | None] = mapped_column(String(64))
    send_window: Mapped[dict[str, Any] | None]
    holiday_calendar_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("holiday_calendars.id", ondelete="RESTRICT"), index=True
    )
    # never, after_completion or always: see app/nurture/reenrollment.py.
    reenrollment_policy: Mapped[str] = mapped_column(
        String(16), default="always", server_default="always"
    )
    # Editing the steps adds a version; an enrolment keeps running the one it began on.
    latest_version: Mapped[int] = mapped_column(default=1, server_default="1")
    # Sender headers of the sequence's emails; null uses the mail_from setting.
    mail_from: Mapped[str | None] = mapped_column(String(320))
    reply_to: Mapped[str | None] = mapped_column(String(320))
    # Signs the requests of the sequence's webhook steps; made on the first such send.
    webhook_secret: Mapped[str | None] = mapped_column(String(100))
    # The automatic exit reasons this sequence honours (app.nurture.exits).
    exit_rules: Mapped[list[str]] = mapped_column(
        JSONB, server_default=text(EXIT_RULES_DEFAULT)
    )


class SequenceStep(IdMixin, WorkspaceMixin, TimestampMixin, Base):
    """One step of one version of a sequence, run its delay after the previous one.

    ``subject`` and ``body_text`` belong to email steps. The settings of the other
    kinds are in ``config``: ``title``, ``body`` and ``due_in_days`` for a task,
    ``url`` and ``headers`` for a webhook, nothing for a wait.
    """

    __tablename__ = "sequence_steps"
    __table_args__ = (
        UniqueConstraint("sequence_id", "sequence_version", "position"),
        CheckConstraint("delay_amount >= 0", name="delay_amount_not_negative"),
        CheckConstraint(
            "delay_unit IN ('minutes', 'hours', 'days', 'business_days')",
            name="delay_unit",
        ),
    )

    sequence_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sequences.id", ondelete="CASCADE")
    )
    sequence_version: Mapped[int] = mapped_column(default=1, server_default="1")
    position: Mapped[int]
    kind: Mapped[str] = mapped_column(String(16), default="email")
    purpose: Mapped[str | None] = mapped_column(String(32), default="follow_up")
    delay_amount: Mapped[int] = mapped_column(default=0)
    delay_unit: Mapped[str] = mapped_column(String(16), default="minutes")
    subject: Mapped[str | None] = mapped_column(String(300))
    body_text: Mapped[str | None] = mapped_column(Text)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    # The offer whose code a special_offer step issues to each lead it emails.
    offer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("offers.id"))
    # A ``conditions.Condition`` as JSON; the step is skipped when it is false.
    condition: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    @property
    def delay(self) -> dict[str, Any]:
        """The delay as the API shows it."""
        return {"amount": self.delay_amount, "unit": self.delay_unit}


class Enrollment(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """A lead moving through a sequence; ``next_run_at`` is when its next step is due.

    ``claimed_until`` is a worker's lease on the due step: the sweep skips the row until
    it lapses. Writing it does not bump ``version``, because it is not part of the
    state clients see.
    """

    __tablename__ = "enrollments"
    __table_args__ = (
        Index(
            "uq_enrollments_running",
            "sequence_id",
            "lead_id",
            unique=True,
            postgresql_where=text("status IN ('active', 'paused')"),
        ),
        Index(
            "ix_enrollments_due",
            "next_run_at",
            postgresql_where=text("status = 'active'"),
        ),
        Index("ix_enrollments_workspace_sequence", "workspace_id", "sequence_id", "id"),
    )

    sequence_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sequences.id", ondelete="CASCADE")
    )
    lead_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("leads.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="active")
    sequence_version: Mapped[int] = mapped_column(default=1, server_default="1")
    next_position: Mapped[int] = mapped_column(default=0)
    next_run_at: Mapped[datetime | None]
    claimed_until: Mapped[datetime | None]
    exit_reason: Mapped[str | None] = mapped_column(String(32))
    completed_at: Mapped[datetime | None]
    exited_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        # Each UPDATE returns the new ``updated_at``, so the event built after a change
        # needs no SELECT to read the row back.
        return {"version_id_col": cls.version, "eager_defaults": True}


class StepRun(IdMixin, WorkspaceMixin, Base):
    """The single run of one step for one enrolment; its unique key forbids a second.

    A worker inserts the row as ``running`` with a lease in ``claimed_until`` before it
    sends anything. ``attempts`` counts the sends started; a retry after a failure or
    a lapsed lease reuses the row and its ``message_id``.
    """

    __tablename__ = "step_runs"
    __table_args__ = (
        UniqueConstraint("enrollment_id", "step_id"),
        Index("ix_step_runs_message_id", "message_id"),
    )

    enrollment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("enrollments.id", ondelete="CASCADE")
    )
    step_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sequence_steps.id", ondelete="CASCADE")
    )
    status: Mapped[str] = mapped_column(String(16), default="running")
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    claimed_until: Mapped[datetime | None]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    message_id: Mapped[str | None] = mapped_column(String(300))
    error: Mapped[str | None] = mapped_column(Text)


class EmailSuppression(IdMixin, WorkspaceMixin, Base):
    """An address that must receive no more marketing email, such as after unsubscribing.

    Keyed by the normalized email rather than the lead, so a lead captured again with
    the same address stays suppressed. An ``unsubscribed`` row also suppresses its
    lead, whose email may change later, while a bounce concerns the address alone.
    """

    __tablename__ = "email_suppressions"
    __table_args__ = (
        UniqueConstraint("workspace_id", "email_normalized"),
        Index("ix_email_suppressions_workspace_lead", "workspace_id", "lead_id"),
    )

    email_normalized: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(String(32))
    lead_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("leads.id", ondelete="SET NULL")
    )
    enrollment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("enrollments.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class NurtureSettings(Base):
    """A workspace's nurture settings: the per-lead cap on marketing emails.

    ``email_cap_count`` emails at most per lead within any ``email_cap_window_hours``,
    across all sequences; a null count means no cap.
    """

    __tablename__ = "nurture_settings"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    email_cap_count: Mapped[int | None]
    email_cap_window_hours: Mapped[int] = mapped_column(default=24, server_default="24")
    version: Mapped[int] = mapped_column(default=1, server_default="1")
    updated_at: Mapped[datetime] = mapped_column(
        server_default=func.now(), onupdate=func.now()
    )


class EmailEventSecret(IdMixin, WorkspaceMixin, TimestampMixin, Base):
    """The Standard Webhooks secret that signs a workspace's email-service events.

    NOTE: the secrets are stored in plaintext, as webhook endpoint secrets are,
    because verifying an HMAC needs the key itself.
    """

    __tablename__ = "email_event_secrets"
    __table_args__ = (UniqueConstraint("workspace_id"),)

    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_expires_at: Mapped[datetime | None]


class EmailEvent(IdMixin, WorkspaceMixin, Base):
    """An event an email service posted, stored once per provider event id.

    ``status`` is ``recorded`` when it added a lead engagement, ``unmatched`` when
    no step run or lead has its Message-ID or address, and ``ignored`` when it needs
    no engagement (a soft bounce).
    """

    __tablename__ = "email_events"
    __table_args__ = (UniqueConstraint("workspace_id", "provider", "event_id"),)

    provider: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime]
    message_id: Mapped[str | None] = mapped_column(String(300))
    email: Mapped[str | None] = mapped_column(String(320))
    details: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    status: Mapped[str] = mapped_column(String(16))
    lead_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("leads.id", ondelete="SET NULL")
    )
    engagement_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("lead_engagements.id", ondelete="SET NULL")
    )
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())
