"""nurture schedule: step delay units, send windows, time zones and holiday calendars

Revision ID: 5d0c2a9e41b7
Revises: 723d17504bcf
Create Date: 2026-12-04 20:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "5d0c2a9e41b7"
down_revision: str | None = "723d17504bcf"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "holiday_calendars",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("dates", postgresql.ARRAY(sa.Date()), nullable=False),
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
            name=op.f("fk_holiday_calendars_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holiday_calendars")),
    )
    op.create_index(
        op.f("ix_holiday_calendars_workspace_id"),
        "holiday_calendars",
        ["workspace_id"],
        unique=False,
    )

    op.add_column("sequences", sa.Column("timezone", sa.String(64), nullable=True))
    op.add_column(
        "sequences",
        sa.Column(
            "send_window", postgresql.JSONB(astext_type=sa.Text()), nullable=True
        ),
    )
    op.add_column(
        "sequences", sa.Column("holiday_calendar_id", sa.Uuid(), nullable=True)
    )
    op.create_foreign_key(
        op.f("fk_sequences_holiday_calendar_id_holiday_calendars"),
        "sequences",
        "holiday_calendars",
        ["holiday_calendar_id"],
        ["id"],
        ondelete="RESTRICT",
    )
    op.create_index(
        op.f("ix_sequences_holiday_calendar_id"),
        "sequences",
        ["holiday_calendar_id"],
        unique=False,
    )

    # Existing delays become whole minutes, rounded up so no step runs early.
    op.add_column(
        "sequence_steps",
        sa.Column("delay_amount", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column(
        "sequence_steps",
        sa.Column(
            "delay_unit", sa.String(16), nullable=False, server_default="minutes"
        ),
    )
    op.execute("UPDATE sequence_steps SET delay_amount = ceil(delay_seconds / 60.0)")
    op.alter_column("sequence_steps", "delay_amount", server_default=None)
    op.alter_column("sequence_steps", "delay_unit", server_default=None)
    op.drop_column("sequence_steps", "delay_seconds")
    op.create_check_constraint(
        op.f("ck_sequence_steps_delay_amount_not_negative"),
        "sequence_steps",
        "delay_amount >= 0",
    )
    op.create_check_constraint(
        op.f("ck_sequence_steps_delay_unit"),
        "sequence_steps",
        "delay_unit IN ('minutes', 'hours', 'days', 'business_days')",
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column(
        "sequence_steps",
        sa.Column("delay_seconds", sa.Integer(), nullable=False, server_default="0"),
    )
    # Business days have no fixed length: each one becomes a calendar day.
    op.execute(
        """
        UPDATE sequence_steps SET delay_seconds = delay_amount * CASE delay_unit
            WHEN 'minutes' THEN 60
            WHEN 'hours' THEN 3600
            ELSE 86400
        END
        """
    )
    op.alter_column("sequence_steps", "delay_seconds", server_default=None)
    op.drop_constraint(
        op.f("ck_sequence_steps_delay_unit"), "sequence_steps", type_="check"
    )
    op.drop_constraint(
        op.f("ck_sequence_steps_delay_amount_not_negative"),
        "sequence_steps",
        type_="check",
    )
    op.drop_column("sequence_steps", "delay_unit")
    op.drop_column("sequence_steps", "delay_amount")

    op.drop_index(op.f("ix_sequences_holiday_calendar_id"), table_name="sequences")
    op.drop_constraint(
        op.f("fk_sequences_holiday_calendar_id_holiday_calendars"),
        "sequences",
        type_="foreignkey",
    )
    op.drop_column("sequences", "holiday_calendar_id")
    op.drop_column("sequences", "send_window")
    op.drop_column("sequences", "timezone")

    op.drop_index(
        op.f("ix_holiday_calendars_workspace_id"), table_name="holiday_calendars"
    )
    op.drop_table("holiday_calendars")
