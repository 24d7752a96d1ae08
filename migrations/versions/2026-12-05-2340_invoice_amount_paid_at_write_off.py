"""invoices: the amount paid when the invoice was written off

write_off.amount_recovered counts only payments that arrived after the write-off.
Derived from the amount due, it also counted credit notes and applied customer
credit as money received. The next revision fills the column for existing
write-offs.

Revision ID: bea4108057ff
Revises: 1f7a9c3e5b68
Create Date: 2026-12-05 23:40:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "bea4108057ff"
down_revision: str | None = "1f7a9c3e5b68"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column(
        "invoices",
        sa.Column("amount_paid_at_write_off", sa.BigInteger(), nullable=True),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("invoices", "amount_paid_at_write_off")
