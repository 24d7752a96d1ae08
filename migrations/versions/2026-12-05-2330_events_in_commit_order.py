"""events: list the log in the order its transactions took their ids

Event ids are made before their transaction commits, so a transaction that commits
late can add an event behind the cursor of a consumer replaying the log oldest
first. Each event now keeps the 64-bit id of the transaction that wrote it
(``tx_id``, from ``pg_current_xact_id()``). The log is listed by ``(tx_id, id)``, and
a replay shows only the events of transactions older than every transaction still
running, so no event can later appear before one already shown.

The column is added with the constant 0, which PostgreSQL stores without rewriting
the table: the events written before this migration sort first, in id order, as they
were listed before. Only new rows take the transaction id. The three indexes the
log pages by are built again with ``tx_id`` before ``id``, CONCURRENTLY and outside
a transaction, so events are written as usual meanwhile; a build that failed leaves
an invalid index, which the next run drops and builds again.

Revision ID: 1f7a9c3e5b68
Revises: 0e6f8a2b4c57
Create Date: 2026-12-05 23:30:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "1f7a9c3e5b68"
down_revision: str | None = "0e6f8a2b4c57"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRANSACTION_ID = "(pg_current_xact_id()::text)::bigint"

# Each index as it is after the upgrade, and as it was before.
INDEXES = [
    (
        "ix_events_workspace_log",
        ["workspace_id", "tx_id", "id"],
        "ix_events_workspace_id_id",
        ["workspace_id", "id"],
    ),
    (
        "ix_events_workspace_type_log",
        ["workspace_id", "type", "tx_id", "id"],
        "ix_events_workspace_type",
        ["workspace_id", "type", "id"],
    ),
    (
        "ix_events_workspace_object_log",
        ["workspace_id", "object_id", "tx_id", "id"],
        "ix_events_workspace_object",
        ["workspace_id", "object_id", "id"],
    ),
]


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
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column(
        "events",
        sa.Column("tx_id", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.alter_column("events", "tx_id", server_default=sa.text(TRANSACTION_ID))
    for build, columns, drop, _ in INDEXES:
        _replace_index(build, columns, drop)


def downgrade() -> None:
    for build, _, drop, columns in INDEXES:
        _replace_index(drop, columns, build)
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("events", "tx_id")
