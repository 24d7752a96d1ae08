"""webhooks: drop the due index that no query reads

Every query for due deliveries names the endpoint, and reads
ix_webhook_deliveries_pending. ix_webhook_deliveries_due only cost a write on
each new delivery and on each lease.

Revision ID: 6a2b4c8d0e13
Revises: 5e1a9c3d7b42
Create Date: 2026-12-05 10:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "6a2b4c8d0e13"
down_revision: str | None = "5e1a9c3d7b42"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_index(
        "ix_webhook_deliveries_due",
        table_name="webhook_deliveries",
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
