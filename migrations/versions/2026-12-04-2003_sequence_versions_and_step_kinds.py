"""sequence versions, step kinds with a config, and sequence sender addresses

Revision ID: 5e0b7c1d9a42
Revises: 2e1dd9cf14e7
Create Date: 2026-12-04 20:10:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "5e0b7c1d9a42"
down_revision: str | None = "2e1dd9cf14e7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    # The server defaults fill the existing rows: every sequence so far has one
    # version, numbered 1, and every enrolment runs it.
    op.add_column(
        "sequences",
        sa.Column("latest_version", sa.Integer(), server_default="1", nullable=False),
    )
    op.add_column(
        "sequences", sa.Column("mail_from", sa.String(length=320), nullable=True)
    )
    op.add_column(
        "sequences", sa.Column("reply_to", sa.String(length=320), nullable=True)
    )
    op.add_column(
        "sequence_steps",
        sa.Column("sequence_version", sa.Integer(), server_default="1", nullable=False),
    )
    op.add_column(
        "sequence_steps",
        sa.Column(
            "config",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
    )
    op.alter_column(
        "sequence_steps", "subject", existing_type=sa.String(length=300), nullable=True
    )
    op.alter_column(
        "sequence_steps", "body_text", existing_type=sa.Text(), nullable=True
    )
    op.alter_column(
        "sequence_steps", "purpose", existing_type=sa.String(length=32), nullable=True
    )
    op.drop_constraint(
        "uq_sequence_steps_sequence_id_position", "sequence_steps", type_="unique"
    )
    op.create_unique_constraint(
        op.f("uq_sequence_steps_sequence_id_sequence_version_position"),
        "sequence_steps",
        ["sequence_id", "sequence_version", "position"],
    )
    op.add_column(
        "enrollments",
        sa.Column("sequence_version", sa.Integer(), server_default="1", nullable=False),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    # Going back keeps only version 1 of each sequence, the one the old schema can
    # hold, and the email steps, the only kind it knows.
    op.execute(
        "DELETE FROM sequence_steps WHERE sequence_version <> 1 OR kind <> 'email' "
        "OR subject IS NULL OR body_text IS NULL OR purpose IS NULL"
    )
    op.drop_column("enrollments", "sequence_version")
    op.drop_constraint(
        op.f("uq_sequence_steps_sequence_id_sequence_version_position"),
        "sequence_steps",
        type_="unique",
    )
    op.create_unique_constraint(
        "uq_sequence_steps_sequence_id_position",
        "sequence_steps",
        ["sequence_id", "position"],
    )
    op.alter_column(
        "sequence_steps", "purpose", existing_type=sa.String(length=32), nullable=False
    )
    op.alter_column(
        "sequence_steps", "body_text", existing_type=sa.Text(), nullable=False
    )
    op.alter_column(
        "sequence_steps", "subject", existing_type=sa.String(length=300), nullable=False
    )
    op.drop_column("sequence_steps", "config")
    op.drop_column("sequence_steps", "sequence_version")
    op.drop_column("sequences", "reply_to")
    op.drop_column("sequences", "mail_from")
    op.drop_column("sequences", "latest_version")
