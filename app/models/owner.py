"""Owners of leads (users and teams), the rules that assign leads, and their audit."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin, VersionMixin, WorkspaceMixin


class User(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """A sales rep, manager or admin who can own leads and activities."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("workspace_id", "email_normalized"),)

    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    email_normalized: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(32), default="rep")
    active: Mapped[bool] = mapped_column(default=True)
    timezone: Mapped[str | None] = mapped_column(String(64))


class Team(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """A group of users that assignment rules distribute leads across."""

    __tablename__ = "teams"

    name: Mapped[str] = mapped_column(String(200))


class TeamMember(WorkspaceMixin, Base):
    """One user in a team, with the limits and weight that assignment honours.

    ``current_weight`` is the running state of smooth weighted round robin.
    """

    __tablename__ = "team_members"
    __table_args__ = (
        CheckConstraint("capacity IS NULL OR capacity >= 0", name="capacity"),
        CheckConstraint("weight >= 1", name="weight"),
    )

    team_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    capacity: Mapped[int | None] = mapped_column(Integer)
    weight: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    current_weight: Mapped[int] = mapped_column(
        BigInteger, default=0, server_default="0"
    )
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class AssignmentCursor(WorkspaceMixin, Base):
    """The round-robin position of one team, locked for each assignment it makes.

    Every assignment to a team takes ``SELECT … FOR UPDATE`` on this row first, so
    concurrent lead creations pick members one after the other.
    """

    __tablename__ = "assignment_cursors"

    team_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    last_user_id: Mapped[uuid.UUID | None]
    assigned_count: Mapped[int] = mapped_column(
        BigInteger, default=0, server_default="0"
    )


class AssignmentRule(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """Criteria on lead fields and the owner a matching lead gets."""

    __tablename__ = "assignment_rules"
    __table_args__ = (
        CheckConstraint(
            "strategy IN ('round_robin', 'weighted', 'fixed')", name="strategy"
        ),
        CheckConstraint(
            "(strategy = 'fixed' AND user_id IS NOT NULL AND team_id IS NULL) OR "
            "(strategy <> 'fixed' AND team_id IS NOT NULL AND user_id IS NULL)",
            name="target",
        ),
        Index("ix_assignment_rules_workspace_position", "workspace_id", "position"),
    )

    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(default=True)
    criteria: Mapped[list[Any]] = mapped_column(default=list)
    strategy: Mapped[str] = mapped_column(String(32))
    team_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("teams.id"), index=True
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id"), index=True
    )


class LeadAssignment(IdMixin, WorkspaceMixin, Base):
    """One change of a lead's owner; rows are only ever appended."""

    __tablename__ = "lead_assignments"
    __table_args__ = (Index("ix_lead_assignments_lead", "lead_id", "id"),)

    lead_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("leads.id", ondelete="CASCADE")
    )
    from_user_id: Mapped[uuid.UUID | None]
    to_user_id: Mapped[uuid.UUID | None]
    rule_id: Mapped[uuid.UUID | None]
    method: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
