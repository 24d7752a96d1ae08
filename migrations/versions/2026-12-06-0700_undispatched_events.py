"""events: keep the dispatch state in undispatched_events

Marking an event dispatched wrote a second version of the whole event row, with an
entry in each of its indexes, because dispatched_at was in the predicate of
ix_events_undispatched. The undispatched events are now the rows of a table of
their own, which emit inserts and the dispatch deletes, so an event row never
changes once written.

Revision ID: 5d2e8b1c7a90
Revises: 3f0c9a7d2e41
Create Date: 2026-12-06 07:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5d2e8b1c7a90"
down_revision: str | None = "3f0c9a7d2e41"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "undispatched_events",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            name=op.f("fk_undispatched_events_event_id_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_undispatched_events")),
    )
    # The events table is locked against writes from here to the commit, so no event
    # is inserted, or dispatched, between the copy and the drop of the column.
    op.execute("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE")
    op.execute(
        "INSERT INTO undispatched_events (event_id) "
        "SELECT id FROM events WHERE dispatched_at IS NULL"
    )
    op.drop_index(
        "ix_events_undispatched",
        table_name="events",
        postgresql_where=sa.text("dispatched_at IS NULL"),
    )
    op.drop_column("events", "dispatched_at")


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column(
        "events",
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
    )
    # Every event without a row in undispatched_events was dispatched; its creation
    # time stands in for the time of the dispatch, which was not kept.
    op.execute(
        "UPDATE events SET dispatched_at = created_at "
        "WHERE NOT EXISTS (SELECT 1 FROM undispatched_events "
        "WHERE undispatched_events.event_id = events.id)"
    )
    op.create_index(
        "ix_events_undispatched",
        "events",
        ["id"],
        unique=False,
        postgresql_where=sa.text("dispatched_at IS NULL"),
    )
    op.drop_table("undispatched_events")
