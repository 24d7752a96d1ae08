"""Emitting events into the log, which is also the outbox of outbound webhooks.

``emit`` adds the event to the caller's session, so the event commits or rolls back with
the change it describes. When an enabled endpoint subscribes to the event, a
``dispatch_event`` job fans it out to the webhook endpoints after the commit (one job
for all the events of a transaction); the
worker's sweep dispatches any event whose job was lost, and marks the events that no
endpoint subscribes to as dispatched.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, cast

import structlog
from sqlalchemy import Table, bindparam, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from app.core.db import PendingJob, defer_job, pending_jobs
from app.core.ids import new_uuid
from app.models import Event, UndispatchedEvent
from app.webhooks.subscriptions import has_subscriber

log = structlog.get_logger(__name__)

DISPATCH_JOB = "dispatch_event"
# The actor of events emitted in a worker job without one.
SYSTEM_ACTOR = "system"
_DEFAULT_ACTOR: ContextVar[str | None] = ContextVar("default_actor", default=None)
# The dispatch job deferred in the session's current transaction, with the list of
# jobs it belongs to.
_DISPATCH_HINT = "dispatch_hint"
# The keyword argument of that job that lists the transaction's other events.
MORE_EVENTS = "more_event_ids"

# One statement numbers and inserts the event and returns its row. It is a Core insert,
# because the ORM-enabled form cost about 0.6 ms more CPU per event on the 2-core
# benchmark machine, and it is built once, because building it per call cost about as
# much CPU as running it.
# The same statement queues the event for the webhook dispatch.
_EVENTS = cast(Table, Event.__table__)
_INSERTED = (
    insert(_EVENTS)
    .values(
        {
            **{
                name: bindparam(name)
                for name in (
                    "id",
                    "workspace_id",
                    "type",
                    "object_type",
                    "object_id",
                    "data",
                    "request_id",
                    "actor",
                )
            },
            "sequence": select(func.coalesce(func.max(_EVENTS.c.sequence), 0) + 1)
            .where(_EVENTS.c.object_id == bindparam("numbered_object_id"))
            .scalar_subquery(),
        }
    )
    .returning(*_EVENTS.c)
    .cte("inserted")
)
_QUEUED = (
    insert(cast(Table, UndispatchedEvent.__table__))
    .from_select(["event_id"], select(_INSERTED.c.id))
    .cte("queued")
)
_INSERT_EVENT = select(_INSERTED).add_cte(_QUEUED)


@contextmanager
def acting_as_system() -> Iterator[None]:
    """Make ``system`` the actor of events emitted meanwhile without one."""
    token = _DEFAULT_ACTOR.set(SYSTEM_ACTOR)
    try:
        yield
    finally:
        _DEFAULT_ACTOR.reset(token)


async def emit(
    session: AsyncSession,
    *,
    workspace_id: uuid.UUID,
    type: str,
    object_type: str,
    object_id: uuid.UUID,
    data: dict[str, Any],
    actor: str | None = None,
) -> Event:
    """Record that ``type`` happened to an object whose full state is ``data``.

    The caller has locked the object's row (it was just inserted, or updated under its
    version check), so concurrent emits for one object are serialized and the sequence
    has no gap. The unique key on ``(object_id, sequence)`` guards the rest.
    """
    # Changes the caller has not flushed yet go first, so they precede their event.
    await session.flush()
    context = structlog.contextvars.get_contextvars()
    result = await session.execute(
        _INSERT_EVENT,
        {
            "id": new_uuid(),
            "workspace_id": workspace_id,
            "type": type,
            "object_type": object_type,
            "object_id": object_id,
            "numbered_object_id": object_id,
            "data": data,
            "request_id": context.get("request_id"),
            "actor": actor if actor is not None else _DEFAULT_ACTOR.get(),
        },
    )
    # The returned row becomes a persistent Event in the session without a SELECT.
    event = Event(**result.one()._mapping)
    make_transient_to_detached(event)
    session.add(event)
    if await has_subscriber(session, workspace_id, type):
        _defer_dispatch(session, event.id)
    log.info(
        "event.emitted",
        event_id=str(event.id),
        event_type=type,
        object_type=object_type,
        object_id=str(object_id),
    )
    return event


def _defer_dispatch(session: AsyncSession, event_id: uuid.UUID) -> None:
    """Defer one ``dispatch_event`` job per transaction, naming all its events.

    The first subscribed event of a transaction names the job. The others join its
    ``more_event_ids``, and a transaction of many events costs the worker one job.
    """
    hint: tuple[list[PendingJob] | None, PendingJob] | None = session.info.get(
        _DISPATCH_HINT
    )
    if hint is not None and hint[0] is pending_jobs(session):
        hint[1].kwargs.setdefault(MORE_EVENTS, []).append(str(event_id))
        return
    job = defer_job(session, DISPATCH_JOB, str(event_id), job_id=f"dispatch:{event_id}")
    session.info[_DISPATCH_HINT] = (pending_jobs(session), job)
