"""opportunity checks and indexes

Revision ID: 78cf30f06fe4
Revises: 11cb20675cdc
Create Date: 2026-12-04 14:31:25.033616+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "78cf30f06fe4"
down_revision: str | None = "11cb20675cdc"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_check_constraint("amount_not_negative", "opportunities", "amount >= 0")
    op.create_check_constraint(
        "status", "opportunities", "status IN ('open', 'won', 'lost')"
    )
    op.create_index(
        "ix_opportunities_workspace_owner",
        "opportunities",
        ["workspace_id", "owner_id", "id"],
        unique=False,
    )
    op.create_index(
        "ix_opportunities_workspace_stage",
        "opportunities",
        ["workspace_id", "stage_id", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_index("ix_opportunities_workspace_stage", table_name="opportunities")
    op.drop_index("ix_opportunities_workspace_owner", table_name="opportunities")
    op.drop_constraint(op.f("ck_opportunities_status"), "opportunities", type_="check")
    op.drop_constraint(
        op.f("ck_opportunities_amount_not_negative"), "opportunities", type_="check"
    )
