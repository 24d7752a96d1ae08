"""Whether a webhook endpoint subscribes to an event, checked when the event is emitted.

``emit`` queues a ``dispatch_event`` job only for an event that an enabled endpoint of
its workspace subscribes to. The others stay undispatched until the webhook sweep marks
them dispatched in bulk (``EventRepository.settle_unsubscribed``), after it checks the
endpoints again. An event whose endpoint was created, or enabled, after the check at
emit time is therefore still dispatched by the sweep, only later.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import WebhookEndpoint
from app.webhooks.catalog import patterns_covering

# The session's current transaction, and the patterns each workspace's enabled
# endpoints subscribe to, as read in that transaction.
_SUBSCRIPTIONS = "webhook_subscriptions"

_ENABLED_PATTERNS = select(WebhookEndpoint.event_types).where(
    WebhookEndpoint.workspace_id == bindparam("workspace_id"),
    WebhookEndpoint.enabled.is_(True),
)


async def has_subscriber(
    session: AsyncSession, workspace_id: uuid.UUID, event_type: str
) -> bool:
    """Return whether an enabled endpoint of the workspace subscribes to ``event_type``.

    The endpoints are read once per workspace and transaction. Their creation time is
    not compared with the event's, because ``dispatch_event`` compares it.
    """
    transaction = session.sync_session.get_transaction()
    cached: tuple[Any, dict[uuid.UUID, frozenset[str]]] | None = session.info.get(
        _SUBSCRIPTIONS
    )
    if cached is None or cached[0] is not transaction:
        cached = (transaction, {})
        session.info[_SUBSCRIPTIONS] = cached
    patterns_by_workspace = cached[1]
    patterns = patterns_by_workspace.get(workspace_id)
    if patterns is None:
        rows = await session.scalars(_ENABLED_PATTERNS, {"workspace_id": workspace_id})
        patterns = frozenset(pattern for row in rows for pattern in row)
        patterns_by_workspace[workspace_id] = patterns
    return not patterns.isdisjoint(patterns_covering(event_type))


def forget_subscriptions(session: AsyncSession) -> None:
    """Drop what ``has_subscriber`` read, after the session changed an endpoint."""
    session.info.pop(_SUBSCRIPTIONS, None)
