"""invoices: count the changes of amount_paid

The payment link keys its Stripe Checkout Session by this count too. A key made
only of the amount remaining came back after a payment and its refund, and Stripe
then returned the Checkout Session that the payment had completed. Existing
invoices start at 0, and their next payment link gets a new session once, because
the key's format changes.

Revision ID: ae0c7d6cacf6
Revises: 5d2e8b1c7a90
Create Date: 2026-12-06 07:10:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "ae0c7d6cacf6"
down_revision: str | None = "5d2e8b1c7a90"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column(
        "invoices",
        sa.Column(
            "payment_change_count",
            sa.Integer(),
            server_default="0",
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("invoices", "payment_change_count")
