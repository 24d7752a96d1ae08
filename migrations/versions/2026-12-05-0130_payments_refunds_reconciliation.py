"""billing: refunds, allocation reversals, payment links, reconciliation runs

Revision ID: 5a1f3c9e2b40
Revises: a4cb0a0be9fb
Create Date: 2026-12-05 01:30:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "5a1f3c9e2b40"
down_revision: str | None = "a4cb0a0be9fb"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamps() -> list[sa.Column[object]]:
    return [
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
    ]


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column(
        "payments",
        sa.Column(
            "amount_refunded", sa.BigInteger(), server_default="0", nullable=False
        ),
    )
    op.add_column(
        "payments",
        sa.Column(
            "amount_disputed", sa.BigInteger(), server_default="0", nullable=False
        ),
    )
    op.add_column("invoices", sa.Column("payment_link_url", sa.Text(), nullable=True))
    op.add_column(
        "invoices",
        sa.Column("payment_link_session_id", sa.String(length=255), nullable=True),
    )

    op.create_table(
        "refunds",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("provider", sa.String(length=32), nullable=True),
        sa.Column("provider_refund_id", sa.String(length=255), nullable=True),
        sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=False),
        *_timestamps(),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "provider_refund_id"),
    )
    op.create_index("ix_refunds_payment_id", "refunds", ["payment_id"])
    op.create_index("ix_refunds_workspace_id", "refunds", ["workspace_id"])

    op.create_table(
        "allocation_reversals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("refund_id", sa.Uuid(), nullable=True),
        sa.Column("dispute_id", sa.Uuid(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("restored_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint(
            "(refund_id IS NULL) <> (dispute_id IS NULL)", name="one_cause"
        ),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["refund_id"], ["refunds.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["dispute_id"], ["disputes.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("payment_id", "invoice_id", "refund_id", "dispute_id"):
        op.create_index(
            f"ix_allocation_reversals_{column}", "allocation_reversals", [column]
        )
    op.create_index(
        "ix_allocation_reversals_workspace_id", "allocation_reversals", ["workspace_id"]
    )

    op.create_table(
        "reconciliation_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checked_count", sa.Integer(), nullable=False),
        sa.Column(
            "differences", postgresql.JSONB(astext_type=sa.Text()), nullable=False
        ),
        sa.Column("error", sa.Text(), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_reconciliation_runs_workspace_id", "reconciliation_runs", ["workspace_id"]
    )
    op.create_index(
        "ix_reconciliation_runs_unfinished",
        "reconciliation_runs",
        ["created_at"],
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    # Provider events waiting for the payment they refer to.
    op.create_index(
        "ix_provider_events_held",
        "provider_events",
        ["received_at"],
        postgresql_where=sa.text("status = 'held'"),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_index("ix_provider_events_held", table_name="provider_events")
    op.drop_table("reconciliation_runs")
    op.drop_table("allocation_reversals")
    op.drop_table("refunds")
    op.drop_column("invoices", "payment_link_session_id")
    op.drop_column("invoices", "payment_link_url")
    op.drop_column("payments", "amount_disputed")
    op.drop_column("payments", "amount_refunded")
