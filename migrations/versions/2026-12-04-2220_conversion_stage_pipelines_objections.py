"""conversion stage: pipeline shapes, lost reasons, objections, rotting, user owners

Revision ID: 46088ab99a6e
Revises: 5e0b7c3a9d12
Create Date: 2026-12-04 22:20:00.000000+00:00

Data carried over:
- ``opportunities.owner_id`` was free text. A value that is a ``usr_`` id of a user of
  the same workspace, or that equals one user's email (case-insensitive) or name, keeps
  that user; any other value is cleared, and the count is logged.
- ``opportunities.lost_reason`` was free text. Each distinct text of a workspace
  becomes a lost reason of its catalogue, which the lost opportunities then name.
- Existing stage transitions get ``opportunity_version`` numbered 0, 1, 2… in the order
  they were recorded, their statuses from the stages' won and lost flags, and the
  seconds between one transition and the next.
"""

import logging
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.core import ids

revision: str = "46088ab99a6e"
down_revision: str | None = "5e0b7c3a9d12"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    _pipelines_and_stages()
    _lost_reasons()
    _objections()
    _opportunity_columns()
    _owners_to_users()
    _lost_reasons_from_text()
    _transition_columns()


def _pipelines_and_stages() -> None:
    op.add_column(
        "pipelines",
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
    )
    op.add_column(
        "pipelines", sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("stages", sa.Column("rotting_days", sa.Integer(), nullable=True))
    op.add_column(
        "stages",
        sa.Column(
            "required_fields",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )


def _lost_reasons() -> None:
    op.create_table(
        "lost_reasons",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=True),
        sa.Column(
            "active", sa.Boolean(), server_default=sa.text("true"), nullable=False
        ),
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
            name=op.f("fk_lost_reasons_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lost_reasons")),
        sa.UniqueConstraint(
            "workspace_id", "name", name=op.f("uq_lost_reasons_workspace_id_name")
        ),
    )
    op.create_index(
        op.f("ix_lost_reasons_workspace_id"),
        "lost_reasons",
        ["workspace_id"],
        unique=False,
    )


def _objections() -> None:
    op.create_table(
        "objections",
        sa.Column("opportunity_id", sa.Uuid(), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("text", sa.String(length=4000), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("resolution_notes", sa.String(length=4000), nullable=True),
        sa.Column("blocking", sa.Boolean(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=True),
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
            "category IN ('price', 'timing', 'competitor', 'authority', 'need', "
            "'other')",
            name=op.f("ck_objections_category"),
        ),
        sa.CheckConstraint(
            "status IN ('open', 'resolved', 'lost_on')",
            name=op.f("ck_objections_status"),
        ),
        sa.ForeignKeyConstraint(
            ["opportunity_id"],
            ["opportunities.id"],
            name=op.f("fk_objections_opportunity_id_opportunities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_objections_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_objections")),
    )
    op.create_index(
        "ix_objections_opportunity",
        "objections",
        ["opportunity_id", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_objections_workspace_id"), "objections", ["workspace_id"], unique=False
    )


def _opportunity_columns() -> None:
    op.add_column(
        "opportunities", sa.Column("probability_override", sa.Integer(), nullable=True)
    )
    op.add_column(
        "opportunities",
        sa.Column(
            "competitors",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column(
        "opportunities",
        sa.Column(
            "stage_entered_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.add_column(
        "opportunities",
        sa.Column(
            "last_activity_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.add_column(
        "opportunities",
        sa.Column(
            "rotting", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
    )
    op.add_column(
        "opportunities",
        sa.Column("rotting_since", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "opportunities", sa.Column("lost_reason_id", sa.Uuid(), nullable=True)
    )
    op.add_column(
        "opportunities", sa.Column("lost_note", sa.String(length=2000), nullable=True)
    )
    op.create_foreign_key(
        op.f("fk_opportunities_lost_reason_id_lost_reasons"),
        "opportunities",
        "lost_reasons",
        ["lost_reason_id"],
        ["id"],
        ondelete="RESTRICT",
    )
    op.create_index(
        op.f("ix_opportunities_lost_reason_id"),
        "opportunities",
        ["lost_reason_id"],
        unique=False,
    )
    op.create_check_constraint(
        "probability_override",
        "opportunities",
        "probability_override BETWEEN 0 AND 100",
    )
    # The time in the current stage starts at the last transition into it.
    op.execute(
        """
        UPDATE opportunities o
        SET stage_entered_at = coalesce(
                (SELECT max(t.at) FROM stage_transitions t
                 WHERE t.opportunity_id = o.id AND t.to_stage_id = o.stage_id),
                o.created_at
            ),
            last_activity_at = o.updated_at
        """
    )
    op.create_index(
        "ix_opportunities_workspace_created",
        "opportunities",
        ["workspace_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_opportunities_workspace_amount",
        "opportunities",
        ["workspace_id", "amount", "id"],
        unique=False,
    )
    op.create_index(
        "ix_opportunities_workspace_close_date",
        "opportunities",
        [
            "workspace_id",
            sa.text("coalesce(expected_close_date, '9999-12-31'::date)"),
            "id",
        ],
        unique=False,
    )
    op.create_index(
        "ix_opportunities_rotting_due",
        "opportunities",
        ["last_activity_at"],
        unique=False,
        postgresql_where=sa.text("status = 'open' AND NOT rotting"),
    )


def _owner_user(
    text: str, workspace_users: list[tuple[uuid.UUID, str, str]]
) -> uuid.UUID | None:
    """Return the user a free-text owner names: its usr_ id, email or name."""
    if text.startswith("usr_"):
        try:
            user_id = ids.decode("user", text)
        except ids.InvalidId:
            return None
        return user_id if any(row[0] == user_id for row in workspace_users) else None
    folded = text.strip().casefold()
    by_email = [row[0] for row in workspace_users if row[1].casefold() == folded]
    if len(by_email) == 1:
        return by_email[0]
    by_name = [row[0] for row in workspace_users if row[2].casefold() == folded]
    return by_name[0] if len(by_name) == 1 else None


def _owners_to_users() -> None:
    bind = op.get_bind()
    op.add_column("opportunities", sa.Column("owner_user_id", sa.Uuid(), nullable=True))
    owners = bind.execute(
        sa.text(
            "SELECT DISTINCT workspace_id, owner_id FROM opportunities "
            "WHERE owner_id IS NOT NULL"
        )
    ).all()
    users: dict[uuid.UUID, list[tuple[uuid.UUID, str, str]]] = {}
    for row in bind.execute(sa.text("SELECT id, workspace_id, email, name FROM users")):
        users.setdefault(row.workspace_id, []).append((row.id, row.email, row.name))
    cleared = 0
    for workspace_id, text in owners:
        user_id = _owner_user(text, users.get(workspace_id, []))
        if user_id is None:
            cleared += 1
            continue
        bind.execute(
            sa.text(
                "UPDATE opportunities SET owner_user_id = :user_id "
                "WHERE workspace_id = :workspace_id AND owner_id = :owner"
            ),
            {"user_id": user_id, "workspace_id": workspace_id, "owner": text},
        )
    if cleared:
        log.warning(
            "cleared %d free-text opportunity owners that name no user", cleared
        )
    op.drop_index("ix_opportunities_workspace_owner", table_name="opportunities")
    op.drop_column("opportunities", "owner_id")
    op.alter_column("opportunities", "owner_user_id", new_column_name="owner_id")
    op.create_foreign_key(
        op.f("fk_opportunities_owner_id_users"),
        "opportunities",
        "users",
        ["owner_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_index(
        "ix_opportunities_workspace_owner",
        "opportunities",
        ["workspace_id", "owner_id", "id"],
        unique=False,
    )


def _lost_reasons_from_text() -> None:
    op.execute(
        """
        INSERT INTO lost_reasons (id, workspace_id, name)
        SELECT gen_random_uuid(), workspace_id, lost_reason
        FROM opportunities
        WHERE lost_reason IS NOT NULL
        GROUP BY workspace_id, lost_reason
        """
    )
    op.execute(
        """
        UPDATE opportunities o SET lost_reason_id = r.id
        FROM lost_reasons r
        WHERE r.workspace_id = o.workspace_id AND r.name = o.lost_reason
        """
    )
    op.drop_column("opportunities", "lost_reason")
    op.create_check_constraint(
        "lost_reason",
        "opportunities",
        "status <> 'lost' OR lost_reason_id IS NOT NULL",
    )


def _transition_columns() -> None:
    op.add_column(
        "stage_transitions",
        sa.Column("opportunity_version", sa.Integer(), nullable=True),
    )
    op.add_column(
        "stage_transitions",
        sa.Column("from_status", sa.String(length=16), nullable=True),
    )
    op.add_column(
        "stage_transitions", sa.Column("to_status", sa.String(length=16), nullable=True)
    )
    op.add_column(
        "stage_transitions",
        sa.Column("seconds_in_previous_stage", sa.BigInteger(), nullable=True),
    )
    op.add_column(
        "stage_transitions", sa.Column("reason", sa.String(length=1000), nullable=True)
    )
    op.execute(
        """
        UPDATE stage_transitions t
        SET opportunity_version = numbered.ordinal,
            seconds_in_previous_stage = numbered.seconds
        FROM (
            SELECT id,
                   row_number() OVER (PARTITION BY opportunity_id ORDER BY id) - 1
                       AS ordinal,
                   floor(extract(epoch FROM at - lag(at) OVER (
                       PARTITION BY opportunity_id ORDER BY id)))::bigint AS seconds
            FROM stage_transitions
        ) numbered
        WHERE numbered.id = t.id
        """
    )
    op.execute(
        """
        UPDATE stage_transitions t
        SET to_status = CASE WHEN s.is_won THEN 'won' WHEN s.is_lost THEN 'lost'
                             ELSE 'open' END
        FROM stages s WHERE s.id = t.to_stage_id
        """
    )
    op.execute(
        """
        UPDATE stage_transitions t
        SET from_status = CASE WHEN s.is_won THEN 'won' WHEN s.is_lost THEN 'lost'
                               ELSE 'open' END
        FROM stages s WHERE s.id = t.from_stage_id
        """
    )
    op.alter_column("stage_transitions", "opportunity_version", nullable=False)
    op.alter_column("stage_transitions", "to_status", nullable=False)
    op.create_unique_constraint(
        op.f("uq_stage_transitions_opportunity_id_opportunity_version"),
        "stage_transitions",
        ["opportunity_id", "opportunity_version"],
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_constraint(
        op.f("uq_stage_transitions_opportunity_id_opportunity_version"),
        "stage_transitions",
        type_="unique",
    )
    for column in (
        "reason",
        "seconds_in_previous_stage",
        "to_status",
        "from_status",
        "opportunity_version",
    ):
        op.drop_column("stage_transitions", column)

    op.drop_constraint(
        op.f("ck_opportunities_lost_reason"), "opportunities", type_="check"
    )
    op.add_column(
        "opportunities",
        sa.Column("lost_reason", sa.String(length=200), nullable=True),
    )
    op.execute(
        """
        UPDATE opportunities o SET lost_reason = r.name
        FROM lost_reasons r WHERE r.id = o.lost_reason_id
        """
    )

    op.drop_index("ix_opportunities_workspace_owner", table_name="opportunities")
    op.drop_constraint(
        op.f("fk_opportunities_owner_id_users"), "opportunities", type_="foreignkey"
    )
    op.alter_column("opportunities", "owner_id", new_column_name="owner_user_id")
    op.add_column(
        "opportunities", sa.Column("owner_id", sa.String(length=200), nullable=True)
    )
    bind = op.get_bind()
    for row in bind.execute(
        sa.text(
            "SELECT DISTINCT owner_user_id FROM opportunities "
            "WHERE owner_user_id IS NOT NULL"
        )
    ):
        bind.execute(
            sa.text(
                "UPDATE opportunities SET owner_id = :text "
                "WHERE owner_user_id = :user_id"
            ),
            {
                "text": ids.encode("user", row.owner_user_id),
                "user_id": row.owner_user_id,
            },
        )
    op.drop_column("opportunities", "owner_user_id")
    op.create_index(
        "ix_opportunities_workspace_owner",
        "opportunities",
        ["workspace_id", "owner_id", "id"],
        unique=False,
    )

    op.drop_index("ix_opportunities_rotting_due", table_name="opportunities")
    op.drop_index("ix_opportunities_workspace_close_date", table_name="opportunities")
    op.drop_index("ix_opportunities_workspace_amount", table_name="opportunities")
    op.drop_index("ix_opportunities_workspace_created", table_name="opportunities")
    op.drop_constraint(
        op.f("ck_opportunities_probability_override"), "opportunities", type_="check"
    )
    op.drop_index(op.f("ix_opportunities_lost_reason_id"), table_name="opportunities")
    op.drop_constraint(
        op.f("fk_opportunities_lost_reason_id_lost_reasons"),
        "opportunities",
        type_="foreignkey",
    )
    for column in (
        "lost_note",
        "lost_reason_id",
        "rotting_since",
        "rotting",
        "last_activity_at",
        "stage_entered_at",
        "competitors",
        "probability_override",
    ):
        op.drop_column("opportunities", column)

    op.drop_index(op.f("ix_objections_workspace_id"), table_name="objections")
    op.drop_index("ix_objections_opportunity", table_name="objections")
    op.drop_table("objections")
    op.drop_index(op.f("ix_lost_reasons_workspace_id"), table_name="lost_reasons")
    op.drop_table("lost_reasons")

    op.drop_column("stages", "required_fields")
    op.drop_column("stages", "rotting_days")
    op.drop_column("pipelines", "archived_at")
    op.drop_column("pipelines", "version")
