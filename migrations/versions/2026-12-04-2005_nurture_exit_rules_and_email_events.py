"""nurture exits: sequence exit rules, engagement sources, email-service events

Revision ID: 917321e06e72
Revises: 4d1c9a7e2b60
Create Date: 2026-12-04 19:56:31.052584+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "917321e06e72"
down_revision: str | None = "4d1c9a7e2b60"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "email_event_secrets",
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("previous_secret", sa.String(length=100), nullable=True),
        sa.Column("previous_expires_at", sa.DateTime(timezone=True), nullable=True),
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
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_email_event_secrets_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_event_secrets")),
        sa.UniqueConstraint(
            "workspace_id", name=op.f("uq_email_event_secrets_workspace_id")
        ),
    )
    op.create_index(
        op.f("ix_email_event_secrets_workspace_id"),
        "email_event_secrets",
        ["workspace_id"],
        unique=False,
    )
    op.create_table(
        "email_events",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message_id", sa.String(length=300), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("lead_id", sa.Uuid(), nullable=True),
        sa.Column("engagement_id", sa.Uuid(), nullable=True),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["engagement_id"],
            ["lead_engagements.id"],
            name=op.f("fk_email_events_engagement_id_lead_engagements"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
            name=op.f("fk_email_events_lead_id_leads"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_email_events_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_events")),
        sa.UniqueConstraint(
            "workspace_id",
            "provider",
            "event_id",
            name=op.f("uq_email_events_workspace_id_provider_event_id"),
        ),
    )
    op.create_index(
        op.f("ix_email_events_workspace_id"),
        "email_events",
        ["workspace_id"],
        unique=False,
    )
    op.add_column(
        "lead_engagements", sa.Column("enrollment_id", sa.Uuid(), nullable=True)
    )
    op.add_column(
        "lead_engagements", sa.Column("step_run_id", sa.Uuid(), nullable=True)
    )
    op.add_column(
        "lead_engagements",
        sa.Column("message_id", sa.String(length=300), nullable=True),
    )
    op.create_foreign_key(
        op.f("fk_lead_engagements_enrollment_id_enrollments"),
        "lead_engagements",
        "enrollments",
        ["enrollment_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_foreign_key(
        op.f("fk_lead_engagements_step_run_id_step_runs"),
        "lead_engagements",
        "step_runs",
        ["step_run_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.add_column(
        "sequences",
        sa.Column(
            "exit_rules",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text(
                '\'["replied", "converted", "opportunity_created", "unsubscribed", "bounced", "disqualified", "invoice_paid"]\'::jsonb'
            ),
            nullable=False,
        ),
    )
    op.create_index(
        "ix_step_runs_message_id", "step_runs", ["message_id"], unique=False
    )
    op.create_index(
        "ix_leads_workspace_customer",
        "leads",
        ["workspace_id", "customer_id"],
        unique=False,
        postgresql_where=sa.text("customer_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_index("ix_leads_workspace_customer", table_name="leads")
    op.drop_index("ix_step_runs_message_id", table_name="step_runs")
    op.drop_column("sequences", "exit_rules")
    op.drop_constraint(
        op.f("fk_lead_engagements_step_run_id_step_runs"),
        "lead_engagements",
        type_="foreignkey",
    )
    op.drop_constraint(
        op.f("fk_lead_engagements_enrollment_id_enrollments"),
        "lead_engagements",
        type_="foreignkey",
    )
    op.drop_column("lead_engagements", "message_id")
    op.drop_column("lead_engagements", "step_run_id")
    op.drop_column("lead_engagements", "enrollment_id")
    op.drop_index(op.f("ix_email_events_workspace_id"), table_name="email_events")
    op.drop_table("email_events")
    op.drop_index(
        op.f("ix_email_event_secrets_workspace_id"), table_name="email_event_secrets"
    )
    op.drop_table("email_event_secrets")
