"""customers: kind, billing details, owner, language; contacts: normalized email,
title and roles; touches linked to the customer a lead was converted into

Revision ID: 8c4d2f1a6b37
Revises: 8c4f2a6d1e73
Create Date: 2026-12-04 22:32:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# Existing rows that the new unique indexes would reject. The upgrade stops with this
# list instead of picking a survivor, because merging customers or contacts is a
# decision for their owners.
_DUPLICATE_DOMAINS = """
SELECT workspace_id, domain, count(*) FROM customers
WHERE domain IS NOT NULL GROUP BY workspace_id, domain HAVING count(*) > 1 LIMIT 20
"""
_DUPLICATE_CONTACT_EMAILS = """
SELECT customer_id, email_normalized, count(*) FROM contacts
WHERE email_normalized IS NOT NULL
GROUP BY customer_id, email_normalized HAVING count(*) > 1 LIMIT 20
"""


def _reject_duplicates(query: str, what: str) -> None:
    rows = op.get_bind().execute(sa.text(query)).all()
    if rows:
        listed = "; ".join(" ".join(str(value) for value in row) for row in rows)
        raise RuntimeError(
            f"Cannot add the unique index on {what}: these rows share one "
            f"({listed}). Change or delete the duplicates, then upgrade again."
        )


revision: str = "8c4d2f1a6b37"
down_revision: str | None = "8c4f2a6d1e73"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column(
        "contacts", sa.Column("email_normalized", sa.String(length=320), nullable=True)
    )
    op.add_column("contacts", sa.Column("title", sa.String(length=200), nullable=True))
    op.add_column(
        "contacts",
        sa.Column(
            "roles", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False
        ),
    )
    # Lower-case is the lead rule for ASCII addresses. The domain of an address
    # stored in Unicode form keeps that form until the contact is updated.
    op.execute(
        "UPDATE contacts SET email_normalized = lower(trim(email)) "
        "WHERE email IS NOT NULL"
    )
    op.create_check_constraint(
        op.f("ck_contacts_roles"),
        "contacts",
        "roles <@ ARRAY['decision_maker', 'billing', 'technical', 'champion']::text[]",
    )
    _reject_duplicates(_DUPLICATE_CONTACT_EMAILS, "contacts (customer_id, email)")
    op.create_index(
        "ix_contacts_workspace_email",
        "contacts",
        ["workspace_id", "email_normalized"],
        unique=False,
    )
    op.create_index(
        "uq_contacts_customer_email",
        "contacts",
        ["customer_id", "email_normalized"],
        unique=True,
        postgresql_where=sa.text("email_normalized IS NOT NULL"),
    )
    op.add_column(
        "customers",
        sa.Column(
            "kind", sa.String(length=16), server_default="company", nullable=False
        ),
    )
    op.add_column(
        "customers", sa.Column("legal_name", sa.String(length=300), nullable=True)
    )
    op.add_column(
        "customers", sa.Column("billing_email", sa.String(length=320), nullable=True)
    )
    op.add_column(
        "customers",
        sa.Column("billing_address_line1", sa.String(length=200), nullable=True),
    )
    op.add_column(
        "customers",
        sa.Column("billing_address_line2", sa.String(length=200), nullable=True),
    )
    op.add_column(
        "customers",
        sa.Column("billing_address_city", sa.String(length=200), nullable=True),
    )
    op.add_column(
        "customers",
        sa.Column("billing_address_region", sa.String(length=200), nullable=True),
    )
    op.add_column(
        "customers",
        sa.Column("billing_address_postal_code", sa.String(length=32), nullable=True),
    )
    op.add_column(
        "customers",
        sa.Column("billing_address_country", sa.String(length=2), nullable=True),
    )
    op.add_column("customers", sa.Column("tax_id", sa.String(length=64), nullable=True))
    op.add_column(
        "customers", sa.Column("tax_id_type", sa.String(length=16), nullable=True)
    )
    op.add_column(
        "customers", sa.Column("language", sa.String(length=35), nullable=True)
    )
    op.add_column("customers", sa.Column("owner_id", sa.Uuid(), nullable=True))
    op.create_check_constraint(
        op.f("ck_customers_kind"), "customers", "kind IN ('company', 'individual')"
    )
    op.create_check_constraint(
        op.f("ck_customers_tax_id_pair"),
        "customers",
        "(tax_id IS NULL) = (tax_id_type IS NULL)",
    )
    _reject_duplicates(_DUPLICATE_DOMAINS, "customers (workspace_id, domain)")
    op.create_index(
        "ix_customers_workspace_created",
        "customers",
        ["workspace_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_customers_workspace_owner",
        "customers",
        ["workspace_id", "owner_id", "id"],
        unique=False,
    )
    op.create_index(
        "uq_customers_workspace_domain",
        "customers",
        ["workspace_id", "domain"],
        unique=True,
        postgresql_where=sa.text("domain IS NOT NULL"),
    )
    op.create_foreign_key(
        op.f("fk_customers_owner_id_users"),
        "customers",
        "users",
        ["owner_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.add_column("lead_touches", sa.Column("customer_id", sa.Uuid(), nullable=True))
    op.add_column("lead_touches", sa.Column("contact_id", sa.Uuid(), nullable=True))
    op.create_index(
        "ix_lead_touches_customer",
        "lead_touches",
        ["customer_id", "id"],
        unique=False,
        postgresql_where=sa.text("customer_id IS NOT NULL"),
    )
    op.create_foreign_key(
        op.f("fk_lead_touches_contact_id_contacts"),
        "lead_touches",
        "contacts",
        ["contact_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_foreign_key(
        op.f("fk_lead_touches_customer_id_customers"),
        "lead_touches",
        "customers",
        ["customer_id"],
        ["id"],
        ondelete="SET NULL",
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_constraint(
        op.f("fk_lead_touches_customer_id_customers"),
        "lead_touches",
        type_="foreignkey",
    )
    op.drop_constraint(
        op.f("fk_lead_touches_contact_id_contacts"), "lead_touches", type_="foreignkey"
    )
    op.drop_index(
        "ix_lead_touches_customer",
        table_name="lead_touches",
        postgresql_where=sa.text("customer_id IS NOT NULL"),
    )
    op.drop_column("lead_touches", "contact_id")
    op.drop_column("lead_touches", "customer_id")
    op.drop_constraint(
        op.f("fk_customers_owner_id_users"), "customers", type_="foreignkey"
    )
    op.drop_index(
        "uq_customers_workspace_domain",
        table_name="customers",
        postgresql_where=sa.text("domain IS NOT NULL"),
    )
    op.drop_index("ix_customers_workspace_owner", table_name="customers")
    op.drop_index("ix_customers_workspace_created", table_name="customers")
    op.drop_constraint(op.f("ck_customers_tax_id_pair"), "customers", type_="check")
    op.drop_constraint(op.f("ck_customers_kind"), "customers", type_="check")
    op.drop_column("customers", "owner_id")
    op.drop_column("customers", "language")
    op.drop_column("customers", "tax_id_type")
    op.drop_column("customers", "tax_id")
    op.drop_column("customers", "billing_address_country")
    op.drop_column("customers", "billing_address_postal_code")
    op.drop_column("customers", "billing_address_region")
    op.drop_column("customers", "billing_address_city")
    op.drop_column("customers", "billing_address_line2")
    op.drop_column("customers", "billing_address_line1")
    op.drop_column("customers", "billing_email")
    op.drop_column("customers", "legal_name")
    op.drop_column("customers", "kind")
    op.drop_index(
        "uq_contacts_customer_email",
        table_name="contacts",
        postgresql_where=sa.text("email_normalized IS NOT NULL"),
    )
    op.drop_index("ix_contacts_workspace_email", table_name="contacts")
    op.drop_constraint(op.f("ck_contacts_roles"), "contacts", type_="check")
    op.drop_column("contacts", "roles")
    op.drop_column("contacts", "title")
    op.drop_column("contacts", "email_normalized")
