"""nurture delivery: step leases, attempts, exit times and email suppressions

Revision ID: 11cb20675cdc
Revises: 7563d84f2992
Create Date: 2026-12-04 14:33:44.101865+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "11cb20675cdc"
down_revision: str | None = "7563d84f2992"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "email_suppressions",
        sa.Column("email_normalized", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("lead_id", sa.Uuid(), nullable=True),
        sa.Column("enrollment_id", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["enrollment_id"],
            ["enrollments.id"],
            name=op.f("fk_email_suppressions_enrollment_id_enrollments"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
            name=op.f("fk_email_suppressions_lead_id_leads"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_email_suppressions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_suppressions")),
        sa.UniqueConstraint(
            "workspace_id",
            "email_normalized",
            name=op.f("uq_email_suppressions_workspace_id_email_normalized"),
        ),
    )
    op.create_index(
        op.f("ix_email_suppressions_workspace_id"),
        "email_suppressions",
        ["workspace_id"],
        unique=False,
    )
    op.add_column(
        "enrollments", sa.Column("exited_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "enrollments", sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("enrollments", sa.Column("last_error", sa.Text(), nullable=True))
    op.create_index(
        "ix_enrollments_workspace_sequence",
        "enrollments",
        ["workspace_id", "sequence_id", "id"],
        unique=False,
    )
    op.add_column(
        "step_runs",
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column(
        "step_runs",
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("step_runs", "claimed_until")
    op.drop_column("step_runs", "attempts")
    op.drop_index("ix_enrollments_workspace_sequence", table_name="enrollments")
    op.drop_column("enrollments", "last_error")
    op.drop_column("enrollments", "failed_at")
    op.drop_column("enrollments", "exited_at")
    op.drop_index(
        op.f("ix_email_suppressions_workspace_id"), table_name="email_suppressions"
    )
    op.drop_table("email_suppressions")
