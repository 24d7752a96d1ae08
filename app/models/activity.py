"""Notes, calls, emails, meetings and tasks logged against sales records."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin, VersionMixin, WorkspaceMixin


class Activity(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """An activity on a lead, contact, customer or opportunity, or several of them.

    ``occurred_at`` orders the activity in timelines: the time a logged activity took
    place, or the time a task was created. ``overdue_notified_at`` is set once the
    ``activity.overdue`` event has been emitted for a task.
    """

    __tablename__ = "activities"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('note', 'call', 'email', 'meeting', 'task')", name="kind"
        ),
        CheckConstraint(
            "lead_id IS NOT NULL OR contact_id IS NOT NULL OR customer_id IS NOT NULL "
            "OR opportunity_id IS NOT NULL",
            name="record",
        ),
        Index("ix_activities_lead_timeline", "lead_id", "occurred_at", "id"),
        Index("ix_activities_contact_timeline", "contact_id", "occurred_at", "id"),
        Index("ix_activities_customer_timeline", "customer_id", "occurred_at", "id"),
        Index(
            "ix_activities_opportunity_timeline", "opportunity_id", "occurred_at", "id"
        ),
        Index(
            "ix_activities_overdue_pending",
            "due_at",
            postgresql_where=text(
                "kind = 'task' AND completed_at IS NULL "
                "AND overdue_notified_at IS NULL AND due_at IS NOT NULL"
            ),
        ),
    )

    kind: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str | None] = mapped_column(String(300))
    body: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(String(200))
    occurred_at: Mapped[datetime]
    due_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    lead_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("leads.id", ondelete="CASCADE")
    )
    contact_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE")
    )
    customer_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE")
    )
    opportunity_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("opportunities.id", ondelete="CASCADE")
    )
    overdue_notified_at: Mapped[datetime | None]
