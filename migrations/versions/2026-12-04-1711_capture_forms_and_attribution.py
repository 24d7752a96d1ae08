"""capture forms, publishable keys, campaigns, partners, lead touches and consents

Revision ID: e7ed3c647dad
Revises: 092f304245d5
Create Date: 2026-12-04 17:11:38.815442+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "e7ed3c647dad"
down_revision: str | None = "092f304245d5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "campaigns",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("medium", sa.String(length=100), nullable=True),
        sa.Column("utm_campaign", sa.String(length=200), nullable=True),
        sa.Column("starts_on", sa.Date(), nullable=True),
        sa.Column("ends_on", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("budget_amount", sa.BigInteger(), nullable=True),
        sa.Column("budget_currency", sa.String(length=3), nullable=True),
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
            "(budget_amount IS NULL) = (budget_currency IS NULL)",
            name=op.f("ck_campaigns_budget_pair"),
        ),
        sa.CheckConstraint(
            "ends_on IS NULL OR starts_on IS NULL OR ends_on >= starts_on",
            name=op.f("ck_campaigns_date_order"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_campaigns_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
    )
    op.create_index(
        op.f("ix_campaigns_workspace_id"), "campaigns", ["workspace_id"], unique=False
    )
    op.create_index(
        "uq_campaigns_utm_campaign",
        "campaigns",
        ["workspace_id", "utm_campaign"],
        unique=True,
        postgresql_where=sa.text("utm_campaign IS NOT NULL"),
    )
    op.create_table(
        "partners",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("referral_code", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("active", sa.Boolean(), server_default="true", nullable=False),
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
            name=op.f("fk_partners_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partners")),
    )
    op.create_index(
        op.f("ix_partners_workspace_id"), "partners", ["workspace_id"], unique=False
    )
    op.create_index(
        "uq_partners_referral_code",
        "partners",
        ["workspace_id", "referral_code"],
        unique=True,
    )
    op.create_table(
        "forms",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("fields", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "attribute_keys", postgresql.JSONB(astext_type=sa.Text()), nullable=False
        ),
        sa.Column(
            "required_fields", postgresql.JSONB(astext_type=sa.Text()), nullable=False
        ),
        sa.Column(
            "allowed_origins", postgresql.JSONB(astext_type=sa.Text()), nullable=False
        ),
        sa.Column("consent_text", sa.Text(), nullable=True),
        sa.Column("consent_version", sa.String(length=64), nullable=True),
        sa.Column("success_redirect_url", sa.Text(), nullable=True),
        sa.Column("honeypot_field", sa.String(length=64), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default="true", nullable=False),
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
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_forms_campaign_id_campaigns"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_forms_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forms")),
    )
    op.create_index(
        op.f("ix_forms_workspace_id"), "forms", ["workspace_id"], unique=False
    )
    op.create_table(
        "form_publishable_keys",
        sa.Column("api_key_id", sa.Uuid(), nullable=False),
        sa.Column("form_id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_form_publishable_keys_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["form_id"],
            ["forms.id"],
            name=op.f("fk_form_publishable_keys_form_id_forms"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("api_key_id", name=op.f("pk_form_publishable_keys")),
    )
    op.create_index(
        op.f("ix_form_publishable_keys_form_id"),
        "form_publishable_keys",
        ["form_id"],
        unique=False,
    )
    op.create_table(
        "lead_touches",
        sa.Column("lead_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("utm_source", sa.String(length=200), nullable=True),
        sa.Column("utm_medium", sa.String(length=200), nullable=True),
        sa.Column("utm_campaign", sa.String(length=200), nullable=True),
        sa.Column("utm_term", sa.String(length=200), nullable=True),
        sa.Column("utm_content", sa.String(length=200), nullable=True),
        sa.Column("campaign_id", sa.Uuid(), nullable=True),
        sa.Column("partner_id", sa.Uuid(), nullable=True),
        sa.Column("referral_code", sa.String(length=64), nullable=True),
        sa.Column("form_id", sa.Uuid(), nullable=True),
        sa.Column("landing_page", sa.Text(), nullable=True),
        sa.Column("referrer", sa.Text(), nullable=True),
        sa.Column(
            "occurred_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_lead_touches_campaign_id_campaigns"),
        ),
        sa.ForeignKeyConstraint(
            ["form_id"], ["forms.id"], name=op.f("fk_lead_touches_form_id_forms")
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
            name=op.f("fk_lead_touches_lead_id_leads"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"],
            ["partners.id"],
            name=op.f("fk_lead_touches_partner_id_partners"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_lead_touches_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lead_touches")),
    )
    op.create_index(
        "ix_lead_touches_campaign",
        "lead_touches",
        ["campaign_id", "lead_id"],
        unique=False,
        postgresql_where=sa.text("campaign_id IS NOT NULL"),
    )
    op.create_index(
        "ix_lead_touches_lead", "lead_touches", ["lead_id", "id"], unique=False
    )
    op.create_index(
        "ix_lead_touches_partner",
        "lead_touches",
        ["partner_id", "lead_id"],
        unique=False,
        postgresql_where=sa.text("partner_id IS NOT NULL"),
    )
    op.create_index(
        op.f("ix_lead_touches_workspace_id"),
        "lead_touches",
        ["workspace_id"],
        unique=False,
    )
    op.create_table(
        "lead_consents",
        sa.Column("lead_id", sa.Uuid(), nullable=False),
        sa.Column("form_id", sa.Uuid(), nullable=False),
        sa.Column("touch_id", sa.Uuid(), nullable=False),
        sa.Column("consent_text", sa.Text(), nullable=False),
        sa.Column("consent_version", sa.String(length=64), nullable=False),
        sa.Column(
            "given_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("ip_address", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["form_id"], ["forms.id"], name=op.f("fk_lead_consents_form_id_forms")
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
            name=op.f("fk_lead_consents_lead_id_leads"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["touch_id"],
            ["lead_touches.id"],
            name=op.f("fk_lead_consents_touch_id_lead_touches"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_lead_consents_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lead_consents")),
    )
    op.create_index(
        "ix_lead_consents_lead", "lead_consents", ["lead_id", "id"], unique=False
    )
    op.create_index(
        op.f("ix_lead_consents_workspace_id"),
        "lead_consents",
        ["workspace_id"],
        unique=False,
    )
    op.add_column("leads", sa.Column("first_touch_id", sa.Uuid(), nullable=True))
    op.add_column("leads", sa.Column("last_touch_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("leads", "last_touch_id")
    op.drop_column("leads", "first_touch_id")
    op.drop_index(op.f("ix_lead_consents_workspace_id"), table_name="lead_consents")
    op.drop_index("ix_lead_consents_lead", table_name="lead_consents")
    op.drop_table("lead_consents")
    op.drop_index(op.f("ix_lead_touches_workspace_id"), table_name="lead_touches")
    op.drop_index(
        "ix_lead_touches_partner",
        table_name="lead_touches",
        postgresql_where=sa.text("partner_id IS NOT NULL"),
    )
    op.drop_index("ix_lead_touches_lead", table_name="lead_touches")
    op.drop_index(
        "ix_lead_touches_campaign",
        table_name="lead_touches",
        postgresql_where=sa.text("campaign_id IS NOT NULL"),
    )
    op.drop_table("lead_touches")
    op.drop_index(
        op.f("ix_form_publishable_keys_form_id"), table_name="form_publishable_keys"
    )
    op.drop_table("form_publishable_keys")
    op.drop_index(op.f("ix_forms_workspace_id"), table_name="forms")
    op.drop_table("forms")
    op.drop_index("uq_partners_referral_code", table_name="partners")
    op.drop_index(op.f("ix_partners_workspace_id"), table_name="partners")
    op.drop_table("partners")
    op.drop_index(
        "uq_campaigns_utm_campaign",
        table_name="campaigns",
        postgresql_where=sa.text("utm_campaign IS NOT NULL"),
    )
    op.drop_index(op.f("ix_campaigns_workspace_id"), table_name="campaigns")
    op.drop_table("campaigns")
