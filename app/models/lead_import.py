from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin, WorkspaceMixin

IMPORT_STATUSES = ("queued", "running", "completed", "failed")


class LeadImport(IdMixin, WorkspaceMixin, TimestampMixin, Base):
    """A CSV import of leads, run in chunks by the worker.

    ``next_row`` is the index of the first data row not yet processed. Each chunk's
    leads, errors, counts and ``next_row`` commit in one transaction, so a run that
    resumes after a crash starts at the first row whose chunk did not commit.
    ``claimed_until`` is the lease of the run that owns the import; the sweep
    restarts an unfinished import once it has lapsed.
    """

    __tablename__ = "lead_imports"
    __table_args__ = (
        Index("ix_lead_imports_workspace_list", "workspace_id", "id"),
        Index(
            "ix_lead_imports_unfinished",
            "claimed_until",
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )

    status: Mapped[str] = mapped_column(String(16), default="queued")
    filename: Mapped[str | None] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    options: Mapped[dict[str, Any]]
    columns: Mapped[list[Any]] = mapped_column(default=list)
    actor: Mapped[str | None] = mapped_column(String(200))
    total: Mapped[int | None] = mapped_column(Integer)
    next_row: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    updated_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    skipped_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failed_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    claimed_until: Mapped[datetime | None]
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]


class LeadImportFile(Base):
    """The uploaded bytes of an import, apart so that reading the import skips them."""

    __tablename__ = "lead_import_files"

    import_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("lead_imports.id", ondelete="CASCADE"), primary_key=True
    )
    content: Mapped[bytes]


class LeadImportError(Base):
    """One problem with one row of an import: the cell, its value and the message."""

    __tablename__ = "lead_import_errors"
    __table_args__ = (
        Index("ix_lead_import_errors_import_row", "import_id", "row_number"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    import_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("lead_imports.id", ondelete="CASCADE")
    )
    row_number: Mapped[int] = mapped_column(Integer)
    column_name: Mapped[str | None] = mapped_column(Text)
    value: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
