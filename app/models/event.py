from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, WorkspaceMixin

# The id of the writing transaction, as a bigint: xid8 has no cast to it but text.
TRANSACTION_ID = "(pg_current_xact_id()::text)::bigint"


class Event(IdMixin, WorkspaceMixin, Base):
    """One state change, written in the transaction that made it; also the outbox.

    ``sequence`` counts the events of one object from 1, so a consumer can drop an update
    older than one it has already applied. The row never changes once written: until
    the worker has created the event's webhook deliveries, an ``UndispatchedEvent``
    names it. A ``test`` event describes no real object: it was sent to one endpoint on
    request, and the log lists it only by id.
    """

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("object_id", "sequence"),
        # The event log lists a workspace's events in (tx_id, id) order, a page at
        # a time, filtered by type or object or not at all.
        Index("ix_events_workspace_log", "workspace_id", "tx_id", "id"),
        Index("ix_events_workspace_type_log", "workspace_id", "type", "tx_id", "id"),
        Index(
            "ix_events_workspace_object_log",
            "workspace_id",
            "object_id",
            "tx_id",
            "id",
        ),
    )

    # Declared here, not by WorkspaceMixin, to leave out the mixin's index on
    # workspace_id alone: ix_events_workspace_log serves the foreign key.
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE")
    )
    type: Mapped[str] = mapped_column(String(100))
    object_type: Mapped[str] = mapped_column(String(50))
    object_id: Mapped[uuid.UUID]
    sequence: Mapped[int]
    data: Mapped[dict[str, Any]]
    request_id: Mapped[str | None] = mapped_column(String(200))
    actor: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    test: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    # The 64-bit id of the transaction that wrote the event. Transactions take their
    # ids in order, so once no transaction older than some id is running, no event
    # can appear below it: the log replays in (tx_id, id) order without missing one
    # that committed late. Events written before the column existed have 0.
    tx_id: Mapped[int] = mapped_column(BigInteger, server_default=text(TRANSACTION_ID))


class UndispatchedEvent(Base):
    """An event whose webhook deliveries the worker has not created yet.

    ``emit`` writes one with each event, and the dispatch deletes it in the
    transaction that creates the deliveries (or, with no subscriber, the sweep does).
    Keeping this state out of the event row spares the event log a second version of
    every row and the index entries that come with it.
    """

    __tablename__ = "undispatched_events"

    event_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("events.id", ondelete="CASCADE"), primary_key=True
    )
