"""invoices: fill amount_paid_at_write_off for existing write-offs

The amount paid at a write-off was not stored, but the amount written off was: what
remained, the amount due then less the amount paid then. So the amount paid then is
the amount due then less the amount written off. The amount due then is the total
less the credit notes that reduced it and the customer credit applied to it before
the write-off.

Assumptions, where the data cannot tell:

- A credit note or an application of credit ordered by its timestamp before
  written_off_at came before the write-off. A credit note whose transaction began
  before the write-off but waited for the invoice's lock until after it is counted
  as before.
- A write-off of 0 means nothing remained; the amount paid then is taken as the
  amount due then, although an overpaid invoice may have had more.

Revision ID: b6c1aa177736
Revises: bea4108057ff
Create Date: 2026-12-05 23:41:00.000000+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "b6c1aa177736"
down_revision: str | None = "bea4108057ff"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Also run by the tests against invoices written off through the API.
BACKFILL = """
UPDATE invoices AS i SET amount_paid_at_write_off = GREATEST(
    i.total
    - COALESCE((
        SELECT sum(n.amount_reduced) FROM credit_notes AS n
        WHERE n.invoice_id = i.id
          AND n.created_at <= i.written_off_at
          AND (n.voided_at IS NULL OR n.voided_at > i.written_off_at)
    ), 0)
    + COALESCE((
        SELECT sum(t.amount) FROM customer_credit_transactions AS t
        WHERE t.invoice_id = i.id
          AND t.source = 'applied_to_invoice'
          AND t.created_at <= i.written_off_at
    ), 0)
    - i.written_off_amount,
    0
)
WHERE i.written_off_at IS NOT NULL AND i.written_off_amount IS NOT NULL
"""


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute(BACKFILL)


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("UPDATE invoices SET amount_paid_at_write_off = NULL")
