"""enrollment jobs, and the re-enrollment policy of sequences

Revision ID: 21af71c79d8d
Revises: 5d0c2a9e41b7
Create Date: 2026-12-04 19:56:38.688674+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "21af71c79d8d"
down_revision: str | None = "5d0c2a9e41b7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "enrollment_jobs",
        sa.Column("sequence_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("filter", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("matched_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("enrolled_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("skipped_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "skipped_reasons", postgresql.JSONB(astext_type=sa.Text()), nullable=False
        ),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["sequence_id"],
            ["sequences.id"],
            name=op.f("fk_enrollment_jobs_sequence_id_sequences"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_enrollment_jobs_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrollment_jobs")),
    )
    op.create_index(
        op.f("ix_enrollment_jobs_sequence_id"),
        "enrollment_jobs",
        ["sequence_id"],
        unique=False,
    )
    op.create_index(
        "ix_enrollment_jobs_unfinished",
        "enrollment_jobs",
        ["claimed_until"],
        unique=False,
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.create_index(
        op.f("ix_enrollment_jobs_workspace_id"),
        "enrollment_jobs",
        ["workspace_id"],
        unique=False,
    )
    op.create_index(
        "ix_enrollment_jobs_workspace_list",
        "enrollment_jobs",
        ["workspace_id", "id"],
        unique=False,
    )
    op.add_column(
        "sequences",
        sa.Column(
            "reenrollment_policy",
            sa.String(length=16),
            server_default="always",
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("sequences", "reenrollment_policy")
    op.drop_index("ix_enrollment_jobs_workspace_list", table_name="enrollment_jobs")
    op.drop_index(op.f("ix_enrollment_jobs_workspace_id"), table_name="enrollment_jobs")
    op.drop_index(
        "ix_enrollment_jobs_unfinished",
        table_name="enrollment_jobs",
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.drop_index(op.f("ix_enrollment_jobs_sequence_id"), table_name="enrollment_jobs")
    op.drop_table("enrollment_jobs")
