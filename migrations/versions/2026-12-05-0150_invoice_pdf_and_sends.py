"""billing profiles, invoice parties and invoice sends

Revision ID: e2c6acfc54dd
Revises: 5a1f3c9e2b40
Create Date: 2026-12-05 01:50:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "e2c6acfc54dd"
down_revision: str | None = "5a1f3c9e2b40"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "billing_profiles",
        sa.Column("legal_name", sa.String(length=300), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("address_line1", sa.String(length=200), nullable=True),
        sa.Column("address_line2", sa.String(length=200), nullable=True),
        sa.Column("address_city", sa.String(length=200), nullable=True),
        sa.Column("address_region", sa.String(length=200), nullable=True),
        sa.Column("address_postal_code", sa.String(length=32), nullable=True),
        sa.Column("address_country", sa.String(length=2), nullable=True),
        sa.Column("tax_id", sa.String(length=64), nullable=True),
        sa.Column("tax_id_type", sa.String(length=16), nullable=True),
        sa.Column("payment_instructions", sa.Text(), nullable=True),
        sa.Column("invoice_footer", sa.Text(), nullable=True),
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
            "(tax_id IS NULL) = (tax_id_type IS NULL)",
            name=op.f("ck_billing_profiles_tax_id_pair"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_billing_profiles_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_profiles")),
        sa.UniqueConstraint(
            "workspace_id", name=op.f("uq_billing_profiles_workspace_id")
        ),
    )
    op.create_table(
        "invoice_sends",
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column(
            "recipients", postgresql.JSONB(astext_type=sa.Text()), nullable=False
        ),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
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
            "status IN ('queued', 'sending', 'sent', 'failed')",
            name=op.f("ck_invoice_sends_status"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_invoice_sends_invoice_id_invoices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_invoice_sends_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_sends")),
        sa.UniqueConstraint("message_id", name=op.f("uq_invoice_sends_message_id")),
    )
    op.create_index(
        "ix_invoice_sends_due",
        "invoice_sends",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('queued', 'sending')"),
    )
    op.create_index(
        "ix_invoice_sends_invoice_id",
        "invoice_sends",
        ["invoice_id", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_invoice_sends_workspace_id"),
        "invoice_sends",
        ["workspace_id"],
        unique=False,
    )

    op.create_table(
        "invoice_parties",
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("parties", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_invoice_parties_invoice_id_invoices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_invoice_parties_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("invoice_id", name=op.f("pk_invoice_parties")),
    )
    op.create_index(
        op.f("ix_invoice_parties_workspace_id"),
        "invoice_parties",
        ["workspace_id"],
        unique=False,
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_index(op.f("ix_invoice_parties_workspace_id"), table_name="invoice_parties")
    op.drop_table("invoice_parties")
    op.drop_index(op.f("ix_invoice_sends_workspace_id"), table_name="invoice_sends")
    op.drop_index("ix_invoice_sends_invoice_id", table_name="invoice_sends")
    op.drop_index(
        "ix_invoice_sends_due",
        table_name="invoice_sends",
        postgresql_where=sa.text("status IN ('queued', 'sending')"),
    )
    op.drop_table("invoice_sends")
    op.drop_table("billing_profiles")
