"""nurture: index email suppressions by lead, so an unsubscribed lead stays suppressed

Revision ID: 8c4f2a6d1e73
Revises: 1df8a6c3f490
Create Date: 2026-12-04 22:31:00.000000+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "8c4f2a6d1e73"
down_revision: str | None = "1df8a6c3f490"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_index(
        "ix_email_suppressions_workspace_lead",
        "email_suppressions",
        ["workspace_id", "lead_id"],
        unique=False,
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_index(
        "ix_email_suppressions_workspace_lead", table_name="email_suppressions"
    )
