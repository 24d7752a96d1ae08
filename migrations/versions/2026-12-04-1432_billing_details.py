"""Add the invoice time zone, payment references and provider ordering

Revision ID: c9f775434d53
Revises: 0001
Create Date: 2026-12-04 14:32:50.494686+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c9f775434d53"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column(
        "invoices", sa.Column("timezone", sa.String(length=64), nullable=True)
    )
    op.add_column(
        "payments", sa.Column("reference", sa.String(length=200), nullable=True)
    )
    op.add_column(
        "payments",
        sa.Column("provider_updated_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("payments", "provider_updated_at")
    op.drop_column("payments", "reference")
    op.drop_column("invoices", "timezone")
