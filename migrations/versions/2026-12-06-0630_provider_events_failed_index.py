"""provider_events: index the failed events

The backlog gauges on /metrics count provider events by status; received and held
events already have partial indexes, and failed ones get theirs here, so the count
reads a few index entries rather than the whole table.

Revision ID: 3f0c9a7d2e41
Revises: b6c1aa177736
Create Date: 2026-12-06 06:30:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3f0c9a7d2e41"
down_revision: str | None = "b6c1aa177736"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_index(
        "ix_provider_events_failed",
        "provider_events",
        ["received_at"],
        unique=False,
        postgresql_where=sa.text("status = 'failed'"),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_index(
        "ix_provider_events_failed",
        table_name="provider_events",
        postgresql_where=sa.text("status = 'failed'"),
    )
