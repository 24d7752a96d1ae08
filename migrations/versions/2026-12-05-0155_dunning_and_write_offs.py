"""billing: overdue notices, dunning policies and reminders, promises, write-offs

Revision ID: 5d1f0a9c3e71
Revises: e2c6acfc54dd
Create Date: 2026-12-05 01:55:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "5d1f0a9c3e71"
down_revision: str | None = "e2c6acfc54dd"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamps() -> list[sa.Column[sa.DateTime]]:
    return [
        sa.Column(
            name,
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        )
        for name in ("created_at", "updated_at")
    ]


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "dunning_policies",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("steps", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("send_hour", sa.Integer(), nullable=False),
        sa.Column("renewal_pipeline_id", sa.Uuid(), nullable=True),
        sa.Column("mark_uncollectible", sa.Boolean(), nullable=False),
        sa.Column("final_task", sa.Boolean(), nullable=False),
        sa.Column("final_action_delay_days", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.CheckConstraint(
            "send_hour BETWEEN 0 AND 23", name=op.f("ck_dunning_policies_send_hour")
        ),
        sa.ForeignKeyConstraint(
            ["renewal_pipeline_id"], ["pipelines.id"], ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_dunning_policies_workspace_id", "dunning_policies", ["workspace_id"]
    )
    op.create_index(
        "uq_dunning_policies_default",
        "dunning_policies",
        ["workspace_id"],
        unique=True,
        postgresql_where=sa.text("is_default"),
    )

    op.add_column("customers", sa.Column("dunning_policy_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        "fk_customers_dunning_policy_id_dunning_policies",
        "customers",
        "dunning_policies",
        ["dunning_policy_id"],
        ["id"],
        ondelete="SET NULL",
    )
    for name, column_type in (
        ("overdue_notified_at", sa.DateTime(timezone=True)),
        ("dunning_policy_id", sa.Uuid()),
        ("uncollectible_at", sa.DateTime(timezone=True)),
        ("uncollectible_reason", sa.String(length=500)),
        ("written_off_at", sa.DateTime(timezone=True)),
        ("written_off_amount", sa.BigInteger()),
        ("write_off_reason", sa.String(length=500)),
        ("write_off_requested_by", sa.String(length=200)),
        ("write_off_approved_by", sa.Uuid()),
    ):
        op.add_column("invoices", sa.Column(name, column_type, nullable=True))
    op.create_foreign_key(
        "fk_invoices_dunning_policy_id_dunning_policies",
        "invoices",
        "dunning_policies",
        ["dunning_policy_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_foreign_key(
        "fk_invoices_write_off_approved_by_users",
        "invoices",
        "users",
        ["write_off_approved_by"],
        ["id"],
        ondelete="RESTRICT",
    )
    op.create_index(
        "ix_invoices_overdue_pending",
        "invoices",
        ["due_date"],
        postgresql_where=sa.text("status = 'open' AND overdue_notified_at IS NULL"),
    )

    op.create_table(
        "dunning_reminders",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("policy_id", sa.Uuid(), nullable=True),
        sa.Column("step", sa.String(length=16), nullable=False),
        sa.Column("offset_days", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("skip_reason", sa.String(length=32), nullable=True),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message_id", sa.String(length=300), nullable=True),
        sa.Column("recipient", sa.String(length=320), nullable=True),
        sa.Column("subject", sa.String(length=1000), nullable=True),
        sa.Column("activity_id", sa.Uuid(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["activity_id"], ["activities.id"], ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["policy_id"], ["dunning_policies.id"], ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("invoice_id", "step"),
    )
    op.create_index(
        "ix_dunning_reminders_workspace_id", "dunning_reminders", ["workspace_id"]
    )
    op.create_index(
        "ix_dunning_reminders_unfinished",
        "dunning_reminders",
        ["claimed_until"],
        postgresql_where=sa.text("status IN ('sending', 'retrying')"),
    )

    op.create_table(
        "promises_to_pay",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("promised_date", sa.Date(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_paid_at_promise", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("recorded_by", sa.String(length=200), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_promises_to_pay_invoice_id", "promises_to_pay", ["invoice_id"])
    op.create_index(
        "ix_promises_to_pay_workspace_id", "promises_to_pay", ["workspace_id"]
    )
    op.create_index(
        "uq_promises_to_pay_pending",
        "promises_to_pay",
        ["invoice_id"],
        unique=True,
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_table("promises_to_pay")
    op.drop_table("dunning_reminders")
    op.drop_index("ix_invoices_overdue_pending", table_name="invoices")
    op.drop_constraint(
        "fk_invoices_write_off_approved_by_users", "invoices", type_="foreignkey"
    )
    op.drop_constraint(
        "fk_invoices_dunning_policy_id_dunning_policies", "invoices", type_="foreignkey"
    )
    for name in (
        "write_off_approved_by",
        "write_off_requested_by",
        "write_off_reason",
        "written_off_amount",
        "written_off_at",
        "uncollectible_reason",
        "uncollectible_at",
        "dunning_policy_id",
        "overdue_notified_at",
    ):
        op.drop_column("invoices", name)
    op.drop_constraint(
        "fk_customers_dunning_policy_id_dunning_policies",
        "customers",
        type_="foreignkey",
    )
    op.drop_column("customers", "dunning_policy_id")
    op.drop_table("dunning_policies")
