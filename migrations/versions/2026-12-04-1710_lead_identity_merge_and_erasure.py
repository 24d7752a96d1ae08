"""lead identity: normalized phone and company domain, status reasons, merge, erasure

Revision ID: 092f304245d5
Revises: 78cf30f06fe4
Create Date: 2026-12-04 17:10:22.811439+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "092f304245d5"
down_revision: str | None = "78cf30f06fe4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column(
        "leads", sa.Column("phone_normalized", sa.String(length=16), nullable=True)
    )
    op.add_column(
        "leads", sa.Column("company_domain", sa.String(length=253), nullable=True)
    )
    op.add_column(
        "leads", sa.Column("status_reason", sa.String(length=500), nullable=True)
    )
    op.add_column(
        "leads",
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column("leads", sa.Column("merged_into_id", sa.Uuid(), nullable=True))
    op.add_column(
        "leads", sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("leads", sa.Column("erased_by", sa.String(length=200), nullable=True))
    op.create_index(
        "ix_leads_workspace_company_domain",
        "leads",
        ["workspace_id", "company_domain"],
        unique=False,
    )
    op.create_index(
        "ix_leads_workspace_phone",
        "leads",
        ["workspace_id", "phone_normalized"],
        unique=False,
    )
    op.create_foreign_key(
        op.f("fk_leads_merged_into_id_leads"),
        "leads",
        "leads",
        ["merged_into_id"],
        ["id"],
        ondelete="SET NULL",
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_constraint(
        op.f("fk_leads_merged_into_id_leads"), "leads", type_="foreignkey"
    )
    op.drop_index("ix_leads_workspace_phone", table_name="leads")
    op.drop_index("ix_leads_workspace_company_domain", table_name="leads")
    op.drop_column("leads", "erased_by")
    op.drop_column("leads", "erased_at")
    op.drop_column("leads", "merged_into_id")
    op.drop_column("leads", "status_changed_at")
    op.drop_column("leads", "status_reason")
    op.drop_column("leads", "company_domain")
    op.drop_column("leads", "phone_normalized")
