"""billing: credit notes and the customer credit ledger

Revision ID: a4cb0a0be9fb
Revises: 5e1f0a7b9c31
Create Date: 2026-12-05 01:20:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a4cb0a0be9fb"
down_revision: str | None = "5e1f0a7b9c31"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "credit_note_number_series",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("series", sa.String(length=16), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("next_number", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_credit_note_number_series_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "workspace_id", "series", "year", name=op.f("pk_credit_note_number_series")
        ),
    )
    op.create_table(
        "credit_notes",
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("series", sa.String(length=16), nullable=False),
        sa.Column("number", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("memo", sa.Text(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("subtotal", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("tax_total", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("total", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "amount_reduced", sa.BigInteger(), server_default="0", nullable=False
        ),
        sa.Column(
            "amount_credited", sa.BigInteger(), server_default="0", nullable=False
        ),
        sa.Column("refund_amount", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("refund_status", sa.String(length=16), nullable=True),
        sa.Column("refund_payment_id", sa.Uuid(), nullable=True),
        sa.Column("void_reason", sa.Text(), nullable=True),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
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
            "reason IN ('duplicate', 'fraudulent', 'order_change', 'product_unsatisfactory', 'other')",
            name=op.f("ck_credit_notes_reason"),
        ),
        sa.CheckConstraint(
            "status IN ('issued', 'void')", name=op.f("ck_credit_notes_status")
        ),
        sa.CheckConstraint(
            "amount_reduced >= 0 AND amount_credited >= 0 AND refund_amount >= 0 AND amount_reduced + amount_credited + refund_amount = total",
            name=op.f("ck_credit_notes_distribution"),
        ),
        sa.CheckConstraint(
            "subtotal + tax_total = total AND total > 0",
            name=op.f("ck_credit_notes_total"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_credit_notes_customer_id_customers"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_credit_notes_invoice_id_invoices"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["refund_payment_id"],
            ["payments.id"],
            name=op.f("fk_credit_notes_refund_payment_id_payments"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_credit_notes_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_notes")),
        sa.UniqueConstraint(
            "workspace_id", "number", name=op.f("uq_credit_notes_workspace_id_number")
        ),
    )
    op.create_index(
        op.f("ix_credit_notes_customer_id"),
        "credit_notes",
        ["customer_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_credit_notes_invoice_id"), "credit_notes", ["invoice_id"], unique=False
    )
    op.create_index(
        op.f("ix_credit_notes_refund_payment_id"),
        "credit_notes",
        ["refund_payment_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_credit_notes_workspace_id"),
        "credit_notes",
        ["workspace_id"],
        unique=False,
    )
    op.create_table(
        "credit_note_lines",
        sa.Column("credit_note_id", sa.Uuid(), nullable=False),
        sa.Column("invoice_line_id", sa.Uuid(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("quantity", sa.Numeric(precision=20, scale=6), nullable=True),
        sa.Column("tax_rate", sa.Numeric(precision=7, scale=4), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("tax_amount", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["credit_note_id"],
            ["credit_notes.id"],
            name=op.f("fk_credit_note_lines_credit_note_id_credit_notes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["invoice_line_id"],
            ["invoice_lines.id"],
            name=op.f("fk_credit_note_lines_invoice_line_id_invoice_lines"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_credit_note_lines_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_note_lines")),
        sa.UniqueConstraint(
            "credit_note_id",
            "position",
            name=op.f("uq_credit_note_lines_credit_note_id_position"),
        ),
    )
    op.create_index(
        op.f("ix_credit_note_lines_invoice_line_id"),
        "credit_note_lines",
        ["invoice_line_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_credit_note_lines_workspace_id"),
        "credit_note_lines",
        ["workspace_id"],
        unique=False,
    )
    op.create_table(
        "customer_credit_transactions",
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("credit_note_id", sa.Uuid(), nullable=True),
        sa.Column("invoice_id", sa.Uuid(), nullable=True),
        sa.Column("payment_id", sa.Uuid(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "source IN ('credit_note', 'overpayment', 'applied_to_invoice', 'refunded', 'adjustment')",
            name=op.f("ck_customer_credit_transactions_source"),
        ),
        sa.CheckConstraint(
            "amount <> 0", name=op.f("ck_customer_credit_transactions_amount_nonzero")
        ),
        sa.ForeignKeyConstraint(
            ["credit_note_id"],
            ["credit_notes.id"],
            name=op.f("fk_customer_credit_transactions_credit_note_id_credit_notes"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_credit_transactions_customer_id_customers"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_customer_credit_transactions_invoice_id_invoices"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["payments.id"],
            name=op.f("fk_customer_credit_transactions_payment_id_payments"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_customer_credit_transactions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_credit_transactions")),
    )
    op.create_index(
        op.f("ix_customer_credit_transactions_credit_note_id"),
        "customer_credit_transactions",
        ["credit_note_id"],
        unique=False,
    )
    op.create_index(
        "ix_customer_credit_transactions_customer_currency",
        "customer_credit_transactions",
        ["customer_id", "currency"],
        unique=False,
    )
    op.create_index(
        op.f("ix_customer_credit_transactions_invoice_id"),
        "customer_credit_transactions",
        ["invoice_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_customer_credit_transactions_payment_id"),
        "customer_credit_transactions",
        ["payment_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_customer_credit_transactions_workspace_id"),
        "customer_credit_transactions",
        ["workspace_id"],
        unique=False,
    )
    op.add_column(
        "invoices",
        sa.Column(
            "pre_payment_credit_notes_amount",
            sa.BigInteger(),
            server_default="0",
            nullable=False,
        ),
    )
    op.add_column(
        "invoices",
        sa.Column(
            "post_payment_credit_notes_amount",
            sa.BigInteger(),
            server_default="0",
            nullable=False,
        ),
    )
    op.add_column(
        "invoices",
        sa.Column(
            "customer_credit_applied",
            sa.BigInteger(),
            server_default="0",
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("invoices", "customer_credit_applied")
    op.drop_column("invoices", "post_payment_credit_notes_amount")
    op.drop_column("invoices", "pre_payment_credit_notes_amount")
    op.drop_index(
        op.f("ix_customer_credit_transactions_workspace_id"),
        table_name="customer_credit_transactions",
    )
    op.drop_index(
        op.f("ix_customer_credit_transactions_payment_id"),
        table_name="customer_credit_transactions",
    )
    op.drop_index(
        op.f("ix_customer_credit_transactions_invoice_id"),
        table_name="customer_credit_transactions",
    )
    op.drop_index(
        "ix_customer_credit_transactions_customer_currency",
        table_name="customer_credit_transactions",
    )
    op.drop_index(
        op.f("ix_customer_credit_transactions_credit_note_id"),
        table_name="customer_credit_transactions",
    )
    op.drop_table("customer_credit_transactions")
    op.drop_index(
        op.f("ix_credit_note_lines_workspace_id"), table_name="credit_note_lines"
    )
    op.drop_index(
        op.f("ix_credit_note_lines_invoice_line_id"), table_name="credit_note_lines"
    )
    op.drop_table("credit_note_lines")
    op.drop_index(op.f("ix_credit_notes_workspace_id"), table_name="credit_notes")
    op.drop_index(op.f("ix_credit_notes_refund_payment_id"), table_name="credit_notes")
    op.drop_index(op.f("ix_credit_notes_invoice_id"), table_name="credit_notes")
    op.drop_index(op.f("ix_credit_notes_customer_id"), table_name="credit_notes")
    op.drop_table("credit_notes")
    op.drop_table("credit_note_number_series")
