"""nurture runner: step conditions, webhook secrets, nurture settings

Revision ID: 4d1c9a7e2b60
Revises: 5e0b7c1d9a42
Create Date: 2026-12-04 20:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "4d1c9a7e2b60"
down_revision: str | None = "5e0b7c1d9a42"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column(
        "sequence_steps",
        sa.Column("condition", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.add_column(
        "sequences",
        sa.Column("webhook_secret", sa.String(length=100), nullable=True),
    )
    op.create_table(
        "nurture_settings",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("email_cap_count", sa.Integer(), nullable=True),
        sa.Column(
            "email_cap_window_hours",
            sa.Integer(),
            server_default="24",
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_nurture_settings_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_nurture_settings")),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_table("nurture_settings")
    op.drop_column("sequences", "webhook_secret")
    op.drop_column("sequence_steps", "condition")
