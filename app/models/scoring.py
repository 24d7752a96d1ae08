"""Custom field definitions, scoring rules and the engagement events that feed scores."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin, VersionMixin, WorkspaceMixin


class CustomFieldDefinition(
    IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base
):
    """The type and constraints of one key of an object type's ``attributes``."""

    __tablename__ = "custom_field_definitions"
    __table_args__ = (UniqueConstraint("workspace_id", "object_type", "key"),)

    object_type: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(16))
    choices: Mapped[list[str]] = mapped_column(default=list)
    required: Mapped[bool] = mapped_column(default=False)
    max_length: Mapped[int | None] = mapped_column(Integer)


class ScoringRule(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """A declarative rule that adds points to a lead's score."""

    __tablename__ = "scoring_rules"

    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    points: Mapped[int] = mapped_column(Integer)
    field: Mapped[str | None] = mapped_column(String(80))
    operator: Mapped[str | None] = mapped_column(String(16))
    value: Mapped[Any | None] = mapped_column(JSONB)
    event_type: Mapped[str | None] = mapped_column(String(64))
    max_count: Mapped[int | None] = mapped_column(Integer)
    half_life_days: Mapped[int | None] = mapped_column(Integer)
    expires_after_days: Mapped[int | None] = mapped_column(Integer)


class LeadEngagement(IdMixin, WorkspaceMixin, Base):
    """One engagement of a lead (an opened email, a booked meeting); append-only."""

    __tablename__ = "lead_engagements"
    __table_args__ = (
        Index("ix_lead_engagements_lead_type", "lead_id", "type", "occurred_at"),
    )

    lead_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("leads.id", ondelete="CASCADE")
    )
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime]
    # "metadata" is reserved by SQLAlchemy's declarative base.
    details: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    # The enrollment and step run whose email caused the engagement, when known.
    enrollment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("enrollments.id", ondelete="SET NULL")
    )
    step_run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("step_runs.id", ondelete="SET NULL")
    )
    message_id: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
