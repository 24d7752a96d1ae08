"""custom fields, lead scoring, lead tags and the indexes of lead listing

Revision ID: 8bee6e1f680b
Revises: e7ed3c647dad
Create Date: 2026-12-04 17:11:28.301777+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "8bee6e1f680b"
down_revision: str | None = "e7ed3c647dad"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "custom_field_definitions",
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("choices", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.Column("max_length", sa.Integer(), nullable=True),
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
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_custom_field_definitions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_custom_field_definitions")),
        sa.UniqueConstraint(
            "workspace_id",
            "object_type",
            "key",
            name=op.f("uq_custom_field_definitions_workspace_id_object_type_key"),
        ),
    )
    op.create_index(
        op.f("ix_custom_field_definitions_workspace_id"),
        "custom_field_definitions",
        ["workspace_id"],
        unique=False,
    )
    op.create_table(
        "scoring_rules",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("field", sa.String(length=80), nullable=True),
        sa.Column("operator", sa.String(length=16), nullable=True),
        sa.Column("value", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("event_type", sa.String(length=64), nullable=True),
        sa.Column("max_count", sa.Integer(), nullable=True),
        sa.Column("half_life_days", sa.Integer(), nullable=True),
        sa.Column("expires_after_days", sa.Integer(), nullable=True),
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
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_scoring_rules_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scoring_rules")),
    )
    op.create_index(
        op.f("ix_scoring_rules_workspace_id"),
        "scoring_rules",
        ["workspace_id"],
        unique=False,
    )
    op.create_table(
        "lead_engagements",
        sa.Column("lead_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
            name=op.f("fk_lead_engagements_lead_id_leads"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_lead_engagements_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lead_engagements")),
    )
    op.create_index(
        "ix_lead_engagements_lead_type",
        "lead_engagements",
        ["lead_id", "type", "occurred_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_lead_engagements_workspace_id"),
        "lead_engagements",
        ["workspace_id"],
        unique=False,
    )
    op.add_column(
        "leads",
        sa.Column("tags", sa.ARRAY(sa.Text()), server_default="{}", nullable=False),
    )
    op.add_column(
        "leads",
        sa.Column(
            "search_text",
            sa.Text(),
            sa.Computed(
                "lower(coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' ' "
                "|| email_normalized || ' ' || coalesce(company, ''))",
                persisted=True,
            ),
            nullable=False,
        ),
    )
    op.add_column(
        "leads", sa.Column("score", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "leads",
        sa.Column(
            "score_breakdown",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="[]",
            nullable=False,
        ),
    )
    op.add_column(
        "leads", sa.Column("sales_ready_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "leads",
        sa.Column("scored_version", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column(
        "leads", sa.Column("rescore_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(
        "ix_leads_attributes",
        "leads",
        ["attributes"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"attributes": "jsonb_path_ops"},
    )
    op.create_index(
        "ix_leads_rescore_at",
        "leads",
        ["rescore_at"],
        unique=False,
        postgresql_where=sa.text("rescore_at IS NOT NULL"),
    )
    op.create_index(
        "ix_leads_tags", "leads", ["tags"], unique=False, postgresql_using="gin"
    )
    op.create_index(
        "ix_leads_workspace_last_name",
        "leads",
        ["workspace_id", sa.literal_column("coalesce(last_name, '')"), "id"],
        unique=False,
    )
    op.create_index(
        "ix_leads_workspace_score",
        "leads",
        ["workspace_id", "score", "id"],
        unique=False,
    )
    op.create_index(
        "ix_leads_workspace_scored_version",
        "leads",
        ["workspace_id", "scored_version"],
        unique=False,
        postgresql_where=sa.text(
            "status IN ('new', 'working', 'nurturing', 'qualified')"
        ),
    )
    op.create_index(
        "ix_leads_workspace_updated",
        "leads",
        ["workspace_id", "updated_at", "id"],
        unique=False,
    )
    op.add_column(
        "workspaces", sa.Column("scoring_threshold", sa.Integer(), nullable=True)
    )
    op.add_column(
        "workspaces",
        sa.Column("scoring_version", sa.Integer(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("workspaces", "scoring_version")
    op.drop_column("workspaces", "scoring_threshold")
    op.drop_index("ix_leads_workspace_updated", table_name="leads")
    op.drop_index(
        "ix_leads_workspace_scored_version",
        table_name="leads",
        postgresql_where=sa.text(
            "status IN ('new', 'working', 'nurturing', 'qualified')"
        ),
    )
    op.drop_index("ix_leads_workspace_score", table_name="leads")
    op.drop_index("ix_leads_workspace_last_name", table_name="leads")
    op.drop_index("ix_leads_tags", table_name="leads", postgresql_using="gin")
    op.drop_index(
        "ix_leads_rescore_at",
        table_name="leads",
        postgresql_where=sa.text("rescore_at IS NOT NULL"),
    )
    op.drop_index(
        "ix_leads_attributes",
        table_name="leads",
        postgresql_using="gin",
        postgresql_ops={"attributes": "jsonb_path_ops"},
    )
    op.drop_column("leads", "rescore_at")
    op.drop_column("leads", "scored_version")
    op.drop_column("leads", "sales_ready_at")
    op.drop_column("leads", "score_breakdown")
    op.drop_column("leads", "score")
    op.drop_column("leads", "search_text")
    op.drop_column("leads", "tags")
    op.drop_index(
        op.f("ix_lead_engagements_workspace_id"), table_name="lead_engagements"
    )
    op.drop_index("ix_lead_engagements_lead_type", table_name="lead_engagements")
    op.drop_table("lead_engagements")
    op.drop_index(op.f("ix_scoring_rules_workspace_id"), table_name="scoring_rules")
    op.drop_table("scoring_rules")
    op.drop_index(
        op.f("ix_custom_field_definitions_workspace_id"),
        table_name="custom_field_definitions",
    )
    op.drop_table("custom_field_definitions")
