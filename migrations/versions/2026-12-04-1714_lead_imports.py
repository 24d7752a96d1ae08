"""lead imports: uploaded files, import jobs and their row errors

Revision ID: 723d17504bcf
Revises: 99ade03ae6bd
Create Date: 2026-12-04 17:11:28.099354+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "723d17504bcf"
down_revision: str | None = "99ade03ae6bd"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "lead_imports",
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("options", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("columns", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("next_row", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("updated_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("skipped_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failed_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
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
            name=op.f("fk_lead_imports_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lead_imports")),
    )
    op.create_index(
        "ix_lead_imports_unfinished",
        "lead_imports",
        ["claimed_until"],
        unique=False,
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.create_index(
        op.f("ix_lead_imports_workspace_id"),
        "lead_imports",
        ["workspace_id"],
        unique=False,
    )
    op.create_index(
        "ix_lead_imports_workspace_list",
        "lead_imports",
        ["workspace_id", "id"],
        unique=False,
    )
    op.create_table(
        "lead_import_errors",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("import_id", sa.Uuid(), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=False),
        sa.Column("column_name", sa.Text(), nullable=True),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["lead_imports.id"],
            name=op.f("fk_lead_import_errors_import_id_lead_imports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lead_import_errors")),
    )
    op.create_index(
        "ix_lead_import_errors_import_row",
        "lead_import_errors",
        ["import_id", "row_number"],
        unique=False,
    )
    op.create_table(
        "lead_import_files",
        sa.Column("import_id", sa.Uuid(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["lead_imports.id"],
            name=op.f("fk_lead_import_files_import_id_lead_imports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("import_id", name=op.f("pk_lead_import_files")),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_table("lead_import_files")
    op.drop_index("ix_lead_import_errors_import_row", table_name="lead_import_errors")
    op.drop_table("lead_import_errors")
    op.drop_index("ix_lead_imports_workspace_list", table_name="lead_imports")
    op.drop_index(op.f("ix_lead_imports_workspace_id"), table_name="lead_imports")
    op.drop_index(
        "ix_lead_imports_unfinished",
        table_name="lead_imports",
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.drop_table("lead_imports")
