"""webhooks: find each endpoint's due deliveries, note lease owners, drop throttled

Revision ID: 5e1a9c3d7b42
Revises: 5d1f0a9c3e71
Create Date: 2026-12-05 01:59:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5e1a9c3d7b42"
down_revision: str | None = "5d1f0a9c3e71"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_index(
        "ix_webhook_deliveries_pending",
        "webhook_deliveries",
        ["endpoint_id", "next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index(
        "ix_webhook_deliveries_throttled",
        table_name="webhook_deliveries",
        postgresql_where=sa.text("throttled_at IS NOT NULL"),
    )
    op.drop_column("webhook_deliveries", "throttled_at")
    op.add_column(
        "webhook_deliveries", sa.Column("claimed_by", sa.Uuid(), nullable=True)
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("webhook_deliveries", "claimed_by")
    op.add_column(
        "webhook_deliveries",
        sa.Column("throttled_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_webhook_deliveries_throttled",
        "webhook_deliveries",
        ["endpoint_id", "next_attempt_at"],
        postgresql_where=sa.text("throttled_at IS NOT NULL"),
    )
    op.drop_index(
        "ix_webhook_deliveries_pending",
        table_name="webhook_deliveries",
        postgresql_where=sa.text("status = 'pending'"),
    )
