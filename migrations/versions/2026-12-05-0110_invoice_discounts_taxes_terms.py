"""billing: tax rates, invoice discounts, taxes per line, tax policy, payment terms

Revision ID: 5e1f0a7b9c31
Revises: 3b9e5d1c7a20
Create Date: 2026-12-05 01:10:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "5e1f0a7b9c31"
down_revision: str | None = "3b9e5d1c7a20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "tax_rates",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("percentage", sa.Numeric(precision=7, scale=4), nullable=False),
        sa.Column("inclusive", sa.Boolean(), nullable=False),
        sa.Column("jurisdiction", sa.String(length=100), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
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
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_tax_rates_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tax_rates")),
    )
    op.create_index(
        op.f("ix_tax_rates_workspace_id"), "tax_rates", ["workspace_id"], unique=False
    )
    op.add_column(
        "invoices",
        sa.Column(
            "tax_calculation",
            sa.String(length=16),
            server_default="line",
            nullable=False,
        ),
    )
    op.add_column(
        "invoices",
        sa.Column(
            "discounts",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="[]",
            nullable=False,
        ),
    )
    for name in ("total_discount", "total_excluding_tax"):
        op.add_column(
            "invoices",
            sa.Column(name, sa.BigInteger(), server_default="0", nullable=False),
        )
    op.add_column(
        "invoices",
        sa.Column(
            "payment_terms",
            sa.String(length=16),
            server_default="net_30",
            nullable=False,
        ),
    )
    op.add_column(
        "invoices", sa.Column("overdue_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.alter_column(
        "invoices", "payment_terms_days", existing_type=sa.Integer(), nullable=True
    )
    op.create_index(
        "ix_invoices_open_overdue_at",
        "invoices",
        ["overdue_at"],
        unique=False,
        postgresql_where=sa.text("status = 'open'"),
    )

    op.add_column(
        "invoice_lines",
        sa.Column(
            "tax_rates",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="[]",
            nullable=False,
        ),
    )
    op.add_column(
        "invoice_lines",
        sa.Column("discount_percent", sa.Numeric(precision=7, scale=4), nullable=True),
    )
    op.add_column(
        "invoice_lines",
        sa.Column("discount_amount_off", sa.BigInteger(), nullable=True),
    )
    op.add_column("invoice_lines", sa.Column("product_id", sa.Uuid(), nullable=True))
    op.add_column("invoice_lines", sa.Column("line_item_id", sa.Uuid(), nullable=True))
    for name in ("discount_amount", "taxable_amount", "total"):
        op.add_column(
            "invoice_lines",
            sa.Column(name, sa.BigInteger(), server_default="0", nullable=False),
        )
    op.add_column(
        "invoice_lines",
        sa.Column(
            "taxes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="[]",
            nullable=False,
        ),
    )
    op.create_foreign_key(
        op.f("fk_invoice_lines_product_id_products"),
        "invoice_lines",
        "products",
        ["product_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_foreign_key(
        op.f("fk_invoice_lines_line_item_id_opportunity_line_items"),
        "invoice_lines",
        "opportunity_line_items",
        ["line_item_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_check_constraint(
        op.f("ck_invoice_lines_one_discount"),
        "invoice_lines",
        "discount_percent IS NULL OR discount_amount_off IS NULL",
    )

    # Existing lines had one exclusive rate and no discount.
    op.execute(
        """
        UPDATE invoice_lines SET
            taxable_amount = amount,
            total = amount + tax_amount,
            tax_rates = CASE WHEN tax_rate = 0 THEN '[]'::jsonb ELSE jsonb_build_array(
                jsonb_build_object(
                    'name', 'Tax', 'percentage', trim_scale(tax_rate)::text,
                    'inclusive', false)) END,
            taxes = CASE WHEN tax_rate = 0 THEN '[]'::jsonb ELSE jsonb_build_array(
                jsonb_build_object(
                    'name', 'Tax', 'rate', trim_scale(tax_rate)::text,
                    'inclusive', false, 'taxable_amount', amount,
                    'amount', tax_amount)) END
        """
    )
    op.execute(
        """
        UPDATE invoices SET
            total_excluding_tax = subtotal,
            payment_terms = CASE WHEN payment_terms_days = 0 THEN 'due_on_receipt'
                ELSE 'net_' || payment_terms_days END,
            overdue_at = CASE WHEN due_date IS NULL THEN NULL ELSE
                ((due_date + 1)::timestamp AT TIME ZONE coalesce(timezone, 'UTC')) END
        """
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_constraint(
        op.f("ck_invoice_lines_one_discount"), "invoice_lines", type_="check"
    )
    op.drop_constraint(
        op.f("fk_invoice_lines_line_item_id_opportunity_line_items"),
        "invoice_lines",
        type_="foreignkey",
    )
    op.drop_constraint(
        op.f("fk_invoice_lines_product_id_products"),
        "invoice_lines",
        type_="foreignkey",
    )
    for name in (
        "taxes",
        "total",
        "taxable_amount",
        "discount_amount",
        "line_item_id",
        "product_id",
        "discount_amount_off",
        "discount_percent",
        "tax_rates",
    ):
        op.drop_column("invoice_lines", name)
    op.drop_index(
        "ix_invoices_open_overdue_at",
        table_name="invoices",
        postgresql_where=sa.text("status = 'open'"),
    )
    op.execute(
        "UPDATE invoices SET payment_terms_days = coalesce(payment_terms_days, 0)"
    )
    op.alter_column(
        "invoices", "payment_terms_days", existing_type=sa.Integer(), nullable=False
    )
    for name in (
        "overdue_at",
        "payment_terms",
        "total_excluding_tax",
        "total_discount",
        "discounts",
        "tax_calculation",
    ):
        op.drop_column("invoices", name)
    op.drop_index(op.f("ix_tax_rates_workspace_id"), table_name="tax_rates")
    op.drop_table("tax_rates")
