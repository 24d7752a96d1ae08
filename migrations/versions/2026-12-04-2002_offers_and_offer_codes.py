"""offers, per-lead offer codes and their redemptions on invoices

Revision ID: 2e1dd9cf14e7
Revises: 21af71c79d8d
Create Date: 2026-12-04 19:57:17.972259+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2e1dd9cf14e7"
down_revision: str | None = "21af71c79d8d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "offers",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("discount_kind", sa.String(length=16), nullable=False),
        sa.Column("percent_off", sa.Numeric(precision=5, scale=2), nullable=True),
        sa.Column("amount_off", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("valid_for_days", sa.Integer(), nullable=True),
        sa.Column("single_use", sa.Boolean(), nullable=False),
        sa.Column("max_redemptions", sa.Integer(), nullable=True),
        sa.Column("code_prefix", sa.String(length=12), nullable=False),
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
            "(discount_kind = 'percent' AND percent_off IS NOT NULL "
            "AND amount_off IS NULL AND currency IS NULL) OR "
            "(discount_kind = 'amount' AND percent_off IS NULL "
            "AND amount_off IS NOT NULL AND currency IS NOT NULL)",
            name=op.f("ck_offers_discount"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_offers_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offers")),
    )
    op.create_index(
        op.f("ix_offers_workspace_id"), "offers", ["workspace_id"], unique=False
    )
    op.create_table(
        "offer_codes",
        sa.Column("offer_id", sa.Uuid(), nullable=False),
        sa.Column("lead_id", sa.Uuid(), nullable=False),
        sa.Column("enrollment_id", sa.Uuid(), nullable=True),
        sa.Column("step_run_id", sa.Uuid(), nullable=True),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("invoice_id", sa.Uuid(), nullable=True),
        sa.Column("discount_amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["enrollment_id"],
            ["enrollments.id"],
            name=op.f("fk_offer_codes_enrollment_id_enrollments"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_offer_codes_invoice_id_invoices"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
            name=op.f("fk_offer_codes_lead_id_leads"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["offer_id"],
            ["offers.id"],
            name=op.f("fk_offer_codes_offer_id_offers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["step_run_id"],
            ["step_runs.id"],
            name=op.f("fk_offer_codes_step_run_id_step_runs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_offer_codes_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offer_codes")),
        sa.UniqueConstraint(
            "offer_id", "lead_id", name=op.f("uq_offer_codes_offer_id_lead_id")
        ),
        sa.UniqueConstraint("step_run_id", name=op.f("uq_offer_codes_step_run_id")),
        sa.UniqueConstraint(
            "workspace_id", "code", name=op.f("uq_offer_codes_workspace_id_code")
        ),
    )
    op.create_index(
        op.f("ix_offer_codes_lead_id"), "offer_codes", ["lead_id"], unique=False
    )
    op.create_index(
        "ix_offer_codes_offer", "offer_codes", ["offer_id", "id"], unique=False
    )
    op.create_index(
        op.f("ix_offer_codes_workspace_id"),
        "offer_codes",
        ["workspace_id"],
        unique=False,
    )
    op.create_table(
        "offer_redemptions",
        sa.Column("offer_id", sa.Uuid(), nullable=False),
        sa.Column("offer_code_id", sa.Uuid(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("discount_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_offer_redemptions_invoice_id_invoices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["offer_code_id"],
            ["offer_codes.id"],
            name=op.f("fk_offer_redemptions_offer_code_id_offer_codes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["offer_id"],
            ["offers.id"],
            name=op.f("fk_offer_redemptions_offer_id_offers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_offer_redemptions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offer_redemptions")),
    )
    op.create_index(
        "ix_offer_redemptions_offer",
        "offer_redemptions",
        ["offer_id", "status"],
        unique=False,
    )
    op.create_index(
        op.f("ix_offer_redemptions_offer_code_id"),
        "offer_redemptions",
        ["offer_code_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_offer_redemptions_workspace_id"),
        "offer_redemptions",
        ["workspace_id"],
        unique=False,
    )
    op.create_index(
        "uq_offer_redemptions_applied_invoice",
        "offer_redemptions",
        ["invoice_id"],
        unique=True,
        postgresql_where=sa.text("status = 'applied'"),
    )
    op.add_column("sequence_steps", sa.Column("offer_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_sequence_steps_offer_id_offers"),
        "sequence_steps",
        "offers",
        ["offer_id"],
        ["id"],
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_constraint(
        op.f("fk_sequence_steps_offer_id_offers"), "sequence_steps", type_="foreignkey"
    )
    op.drop_column("sequence_steps", "offer_id")
    op.drop_index(
        "uq_offer_redemptions_applied_invoice",
        table_name="offer_redemptions",
        postgresql_where=sa.text("status = 'applied'"),
    )
    op.drop_index(
        op.f("ix_offer_redemptions_workspace_id"), table_name="offer_redemptions"
    )
    op.drop_index(
        op.f("ix_offer_redemptions_offer_code_id"), table_name="offer_redemptions"
    )
    op.drop_index("ix_offer_redemptions_offer", table_name="offer_redemptions")
    op.drop_table("offer_redemptions")
    op.drop_index(op.f("ix_offer_codes_workspace_id"), table_name="offer_codes")
    op.drop_index("ix_offer_codes_offer", table_name="offer_codes")
    op.drop_index(op.f("ix_offer_codes_lead_id"), table_name="offer_codes")
    op.drop_table("offer_codes")
    op.drop_index(op.f("ix_offers_workspace_id"), table_name="offers")
    op.drop_table("offers")
