"""webhook_recoveries: create the deliveries an endpoint never had

A recovery with include_missing also gives the endpoint a delivery of each event
of its window that it subscribes to and has none of, such as the events emitted
while it was disabled. stage says which part the job is working through, and
last_event_id how far it got in the events. Existing recoveries take only failed
deliveries, as before.

Revision ID: 3b9f4c2d8e17
Revises: ae0c7d6cacf6
Create Date: 2026-12-06 16:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3b9f4c2d8e17"
down_revision: str | None = "ae0c7d6cacf6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column(
        "webhook_recoveries",
        sa.Column(
            "include_missing", sa.Boolean(), server_default="false", nullable=False
        ),
    )
    op.add_column(
        "webhook_recoveries",
        sa.Column("stage", sa.String(16), server_default="failed", nullable=False),
    )
    op.add_column(
        "webhook_recoveries",
        sa.Column("missing_count", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column("webhook_recoveries", sa.Column("last_event_id", sa.Uuid()))


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("webhook_recoveries", "last_event_id")
    op.drop_column("webhook_recoveries", "missing_count")
    op.drop_column("webhook_recoveries", "stage")
    op.drop_column("webhook_recoveries", "include_missing")
