from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin, VersionMixin, WorkspaceMixin

OPEN_LEAD_STATUSES = ("new", "working", "nurturing", "qualified")


class Lead(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """A person showing interest, with raw fields and normalized identity keys."""

    __tablename__ = "leads"
    __table_args__ = (
        # One open lead per normalized email in a workspace.
        Index(
            "uq_leads_open_email",
            "workspace_id",
            "email_normalized",
            unique=True,
            postgresql_where=text(
                "status IN ('new', 'working', 'nurturing', 'qualified')"
            ),
        ),
        Index("ix_leads_workspace_created", "workspace_id", "created_at", "id"),
        Index("ix_leads_workspace_owner", "workspace_id", "owner_id"),
    )

    email: Mapped[str] = mapped_column(String(320))
    email_normalized: Mapped[str] = mapped_column(String(320))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    company: Mapped[str | None] = mapped_column(String(300))
    title: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(32))
    timezone: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32), default="api")
    status: Mapped[str] = mapped_column(String(32), default="new")
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    notes: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    customer_id: Mapped[uuid.UUID | None]
    contact_id: Mapped[uuid.UUID | None]
    opportunity_id: Mapped[uuid.UUID | None]
    converted_at: Mapped[datetime | None]
