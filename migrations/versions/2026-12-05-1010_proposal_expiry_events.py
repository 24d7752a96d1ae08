"""proposals: note when proposal.expired was emitted

A sweep emits proposal.expired once for each sent proposal whose valid_until date
has passed in its time zone, and notes the time in expiry_notified_at. Proposals that
had already expired when this migration ran are marked as notified, so upgrading
sends no events about expiries in the past.

Revision ID: 7b3c5d9e1f24
Revises: 6a2b4c8d0e13
Create Date: 2026-12-05 10:10:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7b3c5d9e1f24"
down_revision: str | None = "6a2b4c8d0e13"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column(
        "proposals",
        sa.Column("expiry_notified_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.execute(
        """
        UPDATE proposals SET expiry_notified_at = now()
        WHERE status = 'sent'
          AND valid_until < CAST(timezone(timezone, now()) AS date)
        """
    )
    op.create_index(
        "ix_proposals_expiring",
        "proposals",
        ["valid_until"],
        postgresql_where=sa.text("status = 'sent' AND expiry_notified_at IS NULL"),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_index(
        "ix_proposals_expiring",
        table_name="proposals",
        postgresql_where=sa.text("status = 'sent' AND expiry_notified_at IS NULL"),
    )
    op.drop_column("proposals", "expiry_notified_at")
