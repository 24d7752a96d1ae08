"""products, opportunity line items, proposals and their lines

Revision ID: 1df8a6c3f490
Revises: 46088ab99a6e
Create Date: 2026-12-04 22:30:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "1df8a6c3f490"
down_revision: str | None = "46088ab99a6e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "products",
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("sku", sa.String(length=100), nullable=True),
        sa.Column("tax_rate", sa.Numeric(precision=7, scale=4), nullable=False),
        sa.Column("recurring_interval", sa.String(length=8), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.CheckConstraint(
            "recurring_interval IN ('month', 'year')",
            name=op.f("ck_products_recurring_interval"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_products_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
        sa.UniqueConstraint(
            "workspace_id", "sku", name=op.f("uq_products_workspace_id_sku")
        ),
    )
    op.create_index(
        op.f("ix_products_workspace_id"), "products", ["workspace_id"], unique=False
    )
    op.create_table(
        "product_prices",
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("unit_amount", sa.Numeric(precision=30, scale=12), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_product_prices_product_id_products"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_product_prices_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "product_id", "currency", name=op.f("pk_product_prices")
        ),
    )
    op.create_index(
        op.f("ix_product_prices_workspace_id"),
        "product_prices",
        ["workspace_id"],
        unique=False,
    )
    op.create_table(
        "opportunity_line_items",
        sa.Column("opportunity_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("quantity", sa.Numeric(precision=20, scale=6), nullable=False),
        sa.Column("unit_amount", sa.Numeric(precision=30, scale=12), nullable=False),
        sa.Column("discount_percent", sa.Numeric(precision=7, scale=4), nullable=True),
        sa.Column("discount_amount", sa.BigInteger(), nullable=True),
        sa.Column("tax_rate", sa.Numeric(precision=7, scale=4), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("discount", sa.BigInteger(), nullable=False),
        sa.Column("tax_amount", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "discount_percent IS NULL OR discount_amount IS NULL",
            name=op.f("ck_opportunity_line_items_one_discount"),
        ),
        sa.ForeignKeyConstraint(
            ["opportunity_id"],
            ["opportunities.id"],
            name=op.f("fk_opportunity_line_items_opportunity_id_opportunities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_opportunity_line_items_product_id_products"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_opportunity_line_items_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_opportunity_line_items")),
        sa.UniqueConstraint(
            "opportunity_id",
            "position",
            name=op.f("uq_opportunity_line_items_opportunity_id_position"),
        ),
    )
    op.create_index(
        op.f("ix_opportunity_line_items_product_id"),
        "opportunity_line_items",
        ["product_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_opportunity_line_items_workspace_id"),
        "opportunity_line_items",
        ["workspace_id"],
        unique=False,
    )
    op.create_table(
        "proposals",
        sa.Column("opportunity_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("terms", sa.Text(), nullable=True),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("subtotal", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "discount_total", sa.BigInteger(), server_default="0", nullable=False
        ),
        sa.Column("tax_total", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("total", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rejected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rejection_reason", sa.String(length=500), nullable=True),
        sa.Column("invoice_id", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.CheckConstraint(
            "status IN ('draft', 'sent', 'accepted', 'rejected')",
            name=op.f("ck_proposals_status"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_proposals_invoice_id_invoices"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["opportunity_id"],
            ["opportunities.id"],
            name=op.f("fk_proposals_opportunity_id_opportunities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_proposals_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proposals")),
    )
    op.create_index(
        op.f("ix_proposals_opportunity_id"),
        "proposals",
        ["opportunity_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_proposals_workspace_id"), "proposals", ["workspace_id"], unique=False
    )
    op.create_index(
        "uq_proposals_accepted",
        "proposals",
        ["opportunity_id"],
        unique=True,
        postgresql_where=sa.text("status = 'accepted'"),
    )
    op.create_table(
        "proposal_lines",
        sa.Column("proposal_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("quantity", sa.Numeric(precision=20, scale=6), nullable=False),
        sa.Column("unit_amount", sa.Numeric(precision=30, scale=12), nullable=False),
        sa.Column("discount_percent", sa.Numeric(precision=7, scale=4), nullable=True),
        sa.Column("discount_amount", sa.BigInteger(), nullable=True),
        sa.Column("tax_rate", sa.Numeric(precision=7, scale=4), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("discount", sa.BigInteger(), nullable=False),
        sa.Column("tax_amount", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "discount_percent IS NULL OR discount_amount IS NULL",
            name=op.f("ck_proposal_lines_one_discount"),
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_proposal_lines_product_id_products"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["proposal_id"],
            ["proposals.id"],
            name=op.f("fk_proposal_lines_proposal_id_proposals"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_proposal_lines_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proposal_lines")),
        sa.UniqueConstraint(
            "proposal_id",
            "position",
            name=op.f("uq_proposal_lines_proposal_id_position"),
        ),
    )
    op.create_index(
        op.f("ix_proposal_lines_product_id"),
        "proposal_lines",
        ["product_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_proposal_lines_workspace_id"),
        "proposal_lines",
        ["workspace_id"],
        unique=False,
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_index(op.f("ix_proposal_lines_workspace_id"), table_name="proposal_lines")
    op.drop_index(op.f("ix_proposal_lines_product_id"), table_name="proposal_lines")
    op.drop_table("proposal_lines")
    op.drop_index(
        "uq_proposals_accepted",
        table_name="proposals",
        postgresql_where=sa.text("status = 'accepted'"),
    )
    op.drop_index(op.f("ix_proposals_workspace_id"), table_name="proposals")
    op.drop_index(op.f("ix_proposals_opportunity_id"), table_name="proposals")
    op.drop_table("proposals")
    op.drop_index(
        op.f("ix_opportunity_line_items_product_id"),
        table_name="opportunity_line_items",
    )
    op.drop_index(
        op.f("ix_opportunity_line_items_workspace_id"),
        table_name="opportunity_line_items",
    )
    op.drop_table("opportunity_line_items")
    op.drop_index(op.f("ix_product_prices_workspace_id"), table_name="product_prices")
    op.drop_table("product_prices")
    op.drop_index(op.f("ix_products_workspace_id"), table_name="products")
    op.drop_table("products")
