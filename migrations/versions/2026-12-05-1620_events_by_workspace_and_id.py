"""events: index each workspace's events by id

GET /v1/events lists a workspace's events newest first, a page at a time. With an
index on workspace_id alone, PostgreSQL read every event of the workspace and
sorted them for each page. An index on (workspace_id, id) reads one page in order,
and serves the foreign key too, so the index on workspace_id alone is dropped.

Both steps run CONCURRENTLY, outside a transaction, so events are written as
usual meanwhile. A build that failed leaves an invalid index, which the next run
drops and builds again.

Revision ID: 8c4d6e0f2a35
Revises: 7b3c5d9e1f24
Create Date: 2026-12-05 16:20:00.000000+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "8c4d6e0f2a35"
down_revision: str | None = "7b3c5d9e1f24"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _replace_index(build: str, columns: list[str], drop: str) -> None:
    """Build the index ``build`` on ``columns`` of events, then drop ``drop``."""
    with op.get_context().autocommit_block():
        op.execute("SET lock_timeout = '5s'")
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {build}")
        op.create_index(build, "events", columns, postgresql_concurrently=True)
        op.drop_index(
            drop, table_name="events", postgresql_concurrently=True, if_exists=True
        )
        op.execute("RESET lock_timeout")


def upgrade() -> None:
    _replace_index(
        "ix_events_workspace_id_id", ["workspace_id", "id"], "ix_events_workspace_id"
    )


def downgrade() -> None:
    _replace_index(
        "ix_events_workspace_id", ["workspace_id"], "ix_events_workspace_id_id"
    )
