"""customers: drop the index on domain alone

Every query by domain names the workspace too, and reads
uq_customers_workspace_domain (workspace_id, domain). ix_customers_domain only cost
a write on each customer created or renamed.

Revision ID: 0e6f8a2b4c57
Revises: 8c4d6e0f2a35
Create Date: 2026-12-05 17:20:00.000000+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0e6f8a2b4c57"
down_revision: str | None = "8c4d6e0f2a35"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_index("ix_customers_domain", table_name="customers")


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_index("ix_customers_domain", "customers", ["domain"])
