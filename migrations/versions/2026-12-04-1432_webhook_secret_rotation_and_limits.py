"""webhook secret rotation, attempt limits and failure tracking

Revision ID: 7563d84f2992
Revises: c9f775434d53
Create Date: 2026-12-04 14:32:25.209834+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7563d84f2992"
down_revision: str | None = "c9f775434d53"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column(
        "webhook_deliveries", sa.Column("attempt_limit", sa.Integer(), nullable=True)
    )
    op.drop_index(
        op.f("ix_webhook_deliveries_endpoint_id"), table_name="webhook_deliveries"
    )
    op.create_index(
        "ix_webhook_deliveries_endpoint_id_id",
        "webhook_deliveries",
        ["endpoint_id", "id"],
        unique=False,
    )
    op.add_column(
        "webhook_endpoints",
        sa.Column("previous_secret", sa.String(length=200), nullable=True),
    )
    op.add_column(
        "webhook_endpoints",
        sa.Column(
            "previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True
        ),
    )
    op.add_column(
        "webhook_endpoints",
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("webhook_endpoints", "failing_since")
    op.drop_column("webhook_endpoints", "previous_secret_expires_at")
    op.drop_column("webhook_endpoints", "previous_secret")
    op.drop_index(
        "ix_webhook_deliveries_endpoint_id_id", table_name="webhook_deliveries"
    )
    op.create_index(
        op.f("ix_webhook_deliveries_endpoint_id"),
        "webhook_deliveries",
        ["endpoint_id"],
        unique=False,
    )
    op.drop_column("webhook_deliveries", "attempt_limit")
