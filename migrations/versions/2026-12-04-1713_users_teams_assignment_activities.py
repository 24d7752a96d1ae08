"""users, teams, assignment rules and audit, activities; lead owners reference users

Revision ID: 99ade03ae6bd
Revises: 8bee6e1f680b
Create Date: 2026-12-04 17:11:03.179995+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "99ade03ae6bd"
down_revision: str | None = "8bee6e1f680b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "teams",
        sa.Column("name", sa.String(length=200), nullable=False),
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
            name=op.f("fk_teams_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams")),
    )
    op.create_index(
        op.f("ix_teams_workspace_id"), "teams", ["workspace_id"], unique=False
    )
    op.create_table(
        "users",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("email_normalized", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=True),
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
            name=op.f("fk_users_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint(
            "workspace_id",
            "email_normalized",
            name=op.f("uq_users_workspace_id_email_normalized"),
        ),
    )
    op.create_index(
        op.f("ix_users_workspace_id"), "users", ["workspace_id"], unique=False
    )
    op.create_table(
        "assignment_cursors",
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("last_user_id", sa.Uuid(), nullable=True),
        sa.Column(
            "assigned_count", sa.BigInteger(), server_default="0", nullable=False
        ),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_assignment_cursors_team_id_teams"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_assignment_cursors_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("team_id", name=op.f("pk_assignment_cursors")),
    )
    op.create_index(
        op.f("ix_assignment_cursors_workspace_id"),
        "assignment_cursors",
        ["workspace_id"],
        unique=False,
    )
    op.create_table(
        "assignment_rules",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("criteria", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("strategy", sa.String(length=32), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=True),
        sa.Column("user_id", sa.Uuid(), nullable=True),
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
            "(strategy = 'fixed' AND user_id IS NOT NULL AND team_id IS NULL) OR (strategy <> 'fixed' AND team_id IS NOT NULL AND user_id IS NULL)",
            name=op.f("ck_assignment_rules_target"),
        ),
        sa.CheckConstraint(
            "strategy IN ('round_robin', 'weighted', 'fixed')",
            name=op.f("ck_assignment_rules_strategy"),
        ),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_assignment_rules_team_id_teams"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_assignment_rules_user_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_assignment_rules_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignment_rules")),
    )
    op.create_index(
        op.f("ix_assignment_rules_team_id"),
        "assignment_rules",
        ["team_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_assignment_rules_user_id"),
        "assignment_rules",
        ["user_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_assignment_rules_workspace_id"),
        "assignment_rules",
        ["workspace_id"],
        unique=False,
    )
    op.create_index(
        "ix_assignment_rules_workspace_position",
        "assignment_rules",
        ["workspace_id", "position"],
        unique=False,
    )
    op.create_table(
        "team_members",
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("weight", sa.Integer(), server_default="1", nullable=False),
        sa.Column(
            "current_weight", sa.BigInteger(), server_default="0", nullable=False
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "capacity IS NULL OR capacity >= 0", name=op.f("ck_team_members_capacity")
        ),
        sa.CheckConstraint("weight >= 1", name=op.f("ck_team_members_weight")),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_team_members_team_id_teams"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_team_members_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_team_members_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("team_id", "user_id", name=op.f("pk_team_members")),
    )
    op.create_index(
        op.f("ix_team_members_user_id"), "team_members", ["user_id"], unique=False
    )
    op.create_index(
        op.f("ix_team_members_workspace_id"),
        "team_members",
        ["workspace_id"],
        unique=False,
    )
    op.create_table(
        "lead_assignments",
        sa.Column("lead_id", sa.Uuid(), nullable=False),
        sa.Column("from_user_id", sa.Uuid(), nullable=True),
        sa.Column("to_user_id", sa.Uuid(), nullable=True),
        sa.Column("rule_id", sa.Uuid(), nullable=True),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
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
            name=op.f("fk_lead_assignments_lead_id_leads"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_lead_assignments_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lead_assignments")),
    )
    op.create_index(
        "ix_lead_assignments_lead", "lead_assignments", ["lead_id", "id"], unique=False
    )
    op.create_index(
        op.f("ix_lead_assignments_workspace_id"),
        "lead_assignments",
        ["workspace_id"],
        unique=False,
    )
    op.create_table(
        "activities",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(length=200), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_seconds", sa.Integer(), nullable=True),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column("lead_id", sa.Uuid(), nullable=True),
        sa.Column("contact_id", sa.Uuid(), nullable=True),
        sa.Column("customer_id", sa.Uuid(), nullable=True),
        sa.Column("opportunity_id", sa.Uuid(), nullable=True),
        sa.Column("overdue_notified_at", sa.DateTime(timezone=True), nullable=True),
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
            "kind IN ('note', 'call', 'email', 'meeting', 'task')",
            name=op.f("ck_activities_kind"),
        ),
        sa.CheckConstraint(
            "lead_id IS NOT NULL OR contact_id IS NOT NULL OR customer_id IS NOT NULL OR opportunity_id IS NOT NULL",
            name=op.f("ck_activities_record"),
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_activities_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_activities_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
            name=op.f("fk_activities_lead_id_leads"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["opportunity_id"],
            ["opportunities.id"],
            name=op.f("fk_activities_opportunity_id_opportunities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_activities_owner_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_activities_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activities")),
    )
    op.create_index(
        "ix_activities_contact_timeline",
        "activities",
        ["contact_id", "occurred_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_activities_customer_timeline",
        "activities",
        ["customer_id", "occurred_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_activities_lead_timeline",
        "activities",
        ["lead_id", "occurred_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_activities_opportunity_timeline",
        "activities",
        ["opportunity_id", "occurred_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_activities_overdue_pending",
        "activities",
        ["due_at"],
        unique=False,
        postgresql_where=sa.text(
            "kind = 'task' AND completed_at IS NULL AND overdue_notified_at IS NULL AND due_at IS NOT NULL"
        ),
    )
    op.create_index(
        op.f("ix_activities_owner_id"), "activities", ["owner_id"], unique=False
    )
    op.create_index(
        op.f("ix_activities_workspace_id"), "activities", ["workspace_id"], unique=False
    )
    # Owners were free text before and name no user row, so each is kept in the
    # lead's attributes as legacy_owner_id and the column starts out empty.
    op.execute(
        "UPDATE leads SET attributes = attributes || "
        "jsonb_build_object('legacy_owner_id', owner_id) WHERE owner_id IS NOT NULL"
    )
    op.alter_column(
        "leads",
        "owner_id",
        existing_type=sa.VARCHAR(length=200),
        type_=sa.Uuid(),
        existing_nullable=True,
        postgresql_using="NULL::uuid",
    )
    op.create_index(
        "ix_leads_workspace_owner", "leads", ["workspace_id", "owner_id"], unique=False
    )
    op.create_foreign_key(
        op.f("fk_leads_owner_id_users"), "leads", "users", ["owner_id"], ["id"]
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_constraint(op.f("fk_leads_owner_id_users"), "leads", type_="foreignkey")
    op.drop_index("ix_leads_workspace_owner", table_name="leads")
    op.alter_column(
        "leads",
        "owner_id",
        existing_type=sa.Uuid(),
        type_=sa.VARCHAR(length=200),
        existing_nullable=True,
        postgresql_using="owner_id::text",
    )
    op.drop_index(op.f("ix_activities_workspace_id"), table_name="activities")
    op.drop_index(op.f("ix_activities_owner_id"), table_name="activities")
    op.drop_index(
        "ix_activities_overdue_pending",
        table_name="activities",
        postgresql_where=sa.text(
            "kind = 'task' AND completed_at IS NULL AND overdue_notified_at IS NULL AND due_at IS NOT NULL"
        ),
    )
    op.drop_index("ix_activities_opportunity_timeline", table_name="activities")
    op.drop_index("ix_activities_lead_timeline", table_name="activities")
    op.drop_index("ix_activities_customer_timeline", table_name="activities")
    op.drop_index("ix_activities_contact_timeline", table_name="activities")
    op.drop_table("activities")
    op.drop_index(
        op.f("ix_lead_assignments_workspace_id"), table_name="lead_assignments"
    )
    op.drop_index("ix_lead_assignments_lead", table_name="lead_assignments")
    op.drop_table("lead_assignments")
    op.drop_index(op.f("ix_team_members_workspace_id"), table_name="team_members")
    op.drop_index(op.f("ix_team_members_user_id"), table_name="team_members")
    op.drop_table("team_members")
    op.drop_index(
        "ix_assignment_rules_workspace_position", table_name="assignment_rules"
    )
    op.drop_index(
        op.f("ix_assignment_rules_workspace_id"), table_name="assignment_rules"
    )
    op.drop_index(op.f("ix_assignment_rules_user_id"), table_name="assignment_rules")
    op.drop_index(op.f("ix_assignment_rules_team_id"), table_name="assignment_rules")
    op.drop_table("assignment_rules")
    op.drop_index(
        op.f("ix_assignment_cursors_workspace_id"), table_name="assignment_cursors"
    )
    op.drop_table("assignment_cursors")
    op.drop_index(op.f("ix_users_workspace_id"), table_name="users")
    op.drop_table("users")
    op.drop_index(op.f("ix_teams_workspace_id"), table_name="teams")
    op.drop_table("teams")
