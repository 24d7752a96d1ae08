"""workspace settings: a version for optimistic concurrency on workspaces

Revision ID: 5e0b7c3a9d12
Revises: 917321e06e72
Create Date: 2026-12-04 21:25:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5e0b7c3a9d12"
down_revision: str | None = "917321e06e72"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column(
        "workspaces",
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("workspaces", "version")
