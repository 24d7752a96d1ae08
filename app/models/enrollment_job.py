from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin, WorkspaceMixin


class EnrollmentJob(IdMixin, WorkspaceMixin, TimestampMixin, Base):
    """Enrolling every lead that matches a filter in a sequence, run by the worker.

    ``cursor`` is the lead listing cursor after the last lead processed. Each chunk's
    enrollments, events, counts and cursor commit in one transaction, so a run that
    resumes after a crash starts after the last committed chunk. ``claimed_until`` is
    the lease of the run that owns the job; the sweep restarts an unfinished job once
    it has lapsed.
    """

    __tablename__ = "enrollment_jobs"
    __table_args__ = (
        Index("ix_enrollment_jobs_workspace_list", "workspace_id", "id"),
        Index(
            "ix_enrollment_jobs_unfinished",
            "claimed_until",
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )

    sequence_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sequences.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="queued")
    filter: Mapped[dict[str, Any]]
    actor: Mapped[str | None] = mapped_column(String(200))
    cursor: Mapped[str | None] = mapped_column(Text)
    matched_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    enrolled_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    skipped_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Problem code of each skipped lead → how many leads were skipped with it.
    skipped_reasons: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    claimed_until: Mapped[datetime | None]
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
