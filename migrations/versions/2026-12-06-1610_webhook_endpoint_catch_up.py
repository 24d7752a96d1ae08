"""webhook_endpoints: catch up on the events a new endpoint's creation raced with

An event emitted after a new endpoint's transaction began, and dispatched before
it committed, got no delivery to the endpoint, although the endpoint is older. A
job now gives the endpoint those deliveries once it is committed, and
catch_up_pending marks the endpoints whose job has not run, for the sweep to find.
Existing endpoints are not caught up.

Revision ID: 8c1d5e7a2f40
Revises: 3b9f4c2d8e17
Create Date: 2026-12-06 16:10:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8c1d5e7a2f40"
down_revision: str | None = "3b9f4c2d8e17"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column(
        "webhook_endpoints",
        sa.Column(
            "catch_up_pending", sa.Boolean(), server_default="false", nullable=False
        ),
    )
    op.create_index(
        "ix_webhook_endpoints_catch_up_pending",
        "webhook_endpoints",
        ["created_at"],
        postgresql_where=sa.text("catch_up_pending"),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_index(
        "ix_webhook_endpoints_catch_up_pending", table_name="webhook_endpoints"
    )
    op.drop_column("webhook_endpoints", "catch_up_pending")
