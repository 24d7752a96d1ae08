from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Select,
    Text,
    Uuid,
    bindparam,
    delete,
    func,
    literal,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import DriverStatement
from app.core.ids import new_uuid, uuid_floor
from app.core.pagination import (
    decode_sort_cursor,
    encode_sort_cursor,
    invalid_sort_cursor,
    paginate,
)
from app.models import (
    Event,
    UndispatchedEvent,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookRecovery,
)
from app.webhooks import catalog

Order = Literal["asc", "desc"]

# The first key of the advisory lock that serializes the claims of one endpoint. The
# second key is a hash of the endpoint id, and the first keeps apart other features'
# locks.
SLOT_LOCK_NAMESPACE = 0x5748_534C  # "WHSL"
# The first key of the advisory lock that serializes endpoint creation in a workspace,
# whose id's hash is the second key.
ENDPOINT_CREATION_LOCK_NAMESPACE = 0x5748_4550  # "WHEP"


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# The sort name in the event log's cursors, which carry the event's (tx_id, id).
LOG_SORT = "log"
# The id of the oldest transaction still running, as a bigint. Every transaction with
# a lower id has ended, so no event below it can appear any more.
# NOTE: the snapshot spans every database of the server, so a long write transaction
# in another database holds back the replay too.
_SETTLED_BELOW = text("(pg_snapshot_xmin(pg_current_snapshot())::text)::bigint")
# The id of the reading transaction, null unless it has written. Its own events are
# visible to it, although no other transaction's replay lists them before it ends.
_OWN_TRANSACTION = text("(pg_current_xact_id_if_assigned()::text)::bigint")


# Transaction ids are stored in a bigint column, so a larger one was never issued.
_MAX_TX_ID = 2**63 - 1


def _decode_log_cursor(cursor: str) -> tuple[int, uuid.UUID]:
    tx_id, event_id = decode_sort_cursor(LOG_SORT, cursor)
    if (
        not isinstance(tx_id, int)
        or isinstance(tx_id, bool)
        or not 0 <= tx_id <= _MAX_TX_ID
    ):
        raise invalid_sort_cursor("not a cursor of the event log")
    return tx_id, event_id


async def _page_log(
    session: AsyncSession,
    statement: Select[Any],
    *,
    order: Order,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[Event], str | None, bool]:
    """Page events in the log's order, (tx_id, id), newest or oldest first.

    Oldest first, only the events of transactions older than every transaction still
    running are listed, and the reading transaction's own, so a consumer that replays
    the log never passes an event that commits later. Its ``next_cursor`` is set on every page, the last one too, and an
    empty page returns the cursor it was given, so a consumer polls with it for newer
    events.
    """
    key = tuple_(Event.tx_id, Event.id)
    if cursor:
        tx_id, event_id = _decode_log_cursor(cursor)
        after = tuple_(literal(tx_id, BigInteger), literal(event_id, Uuid))
        statement = statement.where(key > after if order == "asc" else key < after)
    if order == "asc":
        settled = or_(Event.tx_id < _SETTLED_BELOW, Event.tx_id == _OWN_TRANSACTION)
        statement = statement.where(settled).order_by(Event.tx_id.asc(), Event.id.asc())
    else:
        statement = statement.order_by(Event.tx_id.desc(), Event.id.desc())
    rows = (await session.execute(statement.limit(limit + 1))).scalars().all()
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if rows and (has_more or order == "asc"):
        next_cursor = encode_sort_cursor(LOG_SORT, rows[-1].tx_id, rows[-1].id)
    elif order == "asc":
        next_cursor = cursor
    return rows, next_cursor, has_more


# Whether an enabled endpoint of the event's workspace subscribes to it, whenever the
# endpoint was created. ``starts_with(type, left(pattern, -1))`` is the SQL form of a
# ``<prefix>.*`` pattern in ``catalog.patterns_covering``.
_SUBSCRIBED = """
EXISTS (
    SELECT 1
    FROM webhook_endpoints AS endpoint,
         unnest(endpoint.event_types) AS subscribed(pattern)
    WHERE endpoint.workspace_id = events.workspace_id
      AND endpoint.enabled
      AND (
          subscribed.pattern = :wildcard
          OR subscribed.pattern = events.type
          OR (
              right(subscribed.pattern, 2) = '.*'
              AND starts_with(events.type, left(subscribed.pattern, -1))
          )
      )
)
"""
# Rows another transaction has locked, a concurrent sweep or a dispatch, are skipped.
_SETTLE_UNSUBSCRIBED = text(
    f"""
    DELETE FROM undispatched_events
    WHERE event_id IN (
        SELECT events.id FROM undispatched_events AS queued
        JOIN events ON events.id = queued.event_id
        WHERE events.created_at < :created_before
          AND NOT {_SUBSCRIBED}
        ORDER BY queued.event_id
        LIMIT :limit
        FOR UPDATE OF queued SKIP LOCKED
    )
    RETURNING event_id
    """
)


# Old events that stay: the newest event of each real object, because ``emit`` numbers
# the next event from it and the per-object sequence must never restart; an undispatched
# event; and an event with a pending delivery, such as one retried by hand. Rows that
# another transaction holds (a dispatch, a claim) are skipped until a later run.
_PRUNE_EVENTS = text(
    """
    DELETE FROM events
    WHERE id IN (
        SELECT old.id FROM events AS old
        WHERE old.created_at < :cutoff
          AND NOT EXISTS (
              SELECT 1 FROM undispatched_events AS queued
              WHERE queued.event_id = old.id
          )
          AND (
              old.test
              OR EXISTS (
                  SELECT 1 FROM events AS newer
                  WHERE newer.object_id = old.object_id
                    AND newer.sequence > old.sequence
              )
          )
          AND NOT EXISTS (
              SELECT 1 FROM webhook_deliveries AS delivery
              WHERE delivery.event_id = old.id AND delivery.status = 'pending'
          )
        ORDER BY old.id
        LIMIT :limit
        FOR UPDATE OF old SKIP LOCKED
    )
    """
)


def _claim_undispatched(columns: tuple[str, ...]) -> DriverStatement:
    """Build the statement that takes up to ``:limit`` undispatched events off the
    queue, oldest first, skipping those another transaction holds, and returns
    ``columns`` of each.

    The batch is materialized, so the locking subquery runs once and its LIMIT holds.
    The rows come in id order, which a ``DELETE … RETURNING`` does not promise.
    """
    returned = ", ".join(f"events.{column}" for column in columns)
    return DriverStatement.compile(
        text(
            f"""
        WITH batch AS MATERIALIZED (
            SELECT event_id FROM undispatched_events
            ORDER BY event_id
            LIMIT :limit
            FOR UPDATE SKIP LOCKED
        ),
        claimed AS (
            DELETE FROM undispatched_events AS queued
            USING batch
            WHERE queued.event_id = batch.event_id
            RETURNING queued.event_id
        )
        SELECT {returned} FROM events
        JOIN claimed ON events.id = claimed.event_id
        ORDER BY events.id
        """
        ),
        columns,
    )


# The columns of an event that dispatching reads, and those its payload reads too.
_DISPATCH_COLUMNS = ("id", "workspace_id", "type", "created_at")
PAYLOAD_COLUMNS = (
    "id",
    "type",
    "created_at",
    "object_type",
    "object_id",
    "sequence",
    "request_id",
    "actor",
    "data",
    "test",
)
_CLAIM_UNDISPATCHED = _claim_undispatched(_DISPATCH_COLUMNS)
_CLAIM_UNDISPATCHED_WITH_PAYLOAD = _claim_undispatched(
    ("workspace_id", *PAYLOAD_COLUMNS)
)


# A due delivery: pending, its time come, and no live lease on it.
_DUE = """
    delivery.status = 'pending'
    AND delivery.next_attempt_at <= :now
    AND (delivery.claimed_until IS NULL OR delivery.claimed_until < :now)
"""
# The lock is tried on the chosen endpoints only: the subquery with LIMIT is not
# merged into the outer query.
_LOCK_ENDPOINTS_WITH_DUE = DriverStatement.compile(
    text(
        f"""
    SELECT candidate.id FROM (
        SELECT endpoint.id FROM webhook_endpoints AS endpoint
        WHERE EXISTS (
            SELECT 1 FROM webhook_deliveries AS delivery
            WHERE delivery.endpoint_id = endpoint.id AND {_DUE}
        )
        ORDER BY random()
        LIMIT :limit
    ) AS candidate
    WHERE pg_try_advisory_xact_lock(:namespace, hashtext(candidate.id::text))
    """
    ),
    ("id",),
)
_TRY_LOCK_SLOTS = DriverStatement.compile(
    text(
        """
    SELECT candidate.id
    FROM unnest(CAST(:ids AS uuid[])) WITH ORDINALITY AS candidate(id, position)
    WHERE pg_try_advisory_xact_lock(:namespace, hashtext(candidate.id::text))
    ORDER BY candidate.position
    """
    ),
    ("id",),
)


def _fail_due(condition: str) -> DriverStatement:
    """Build the statement that fails the due deliveries of the endpoints ``:ids``
    that also meet ``condition``, an SQL fragment starting with AND, or none."""
    return DriverStatement.compile(
        text(
            f"""
    UPDATE webhook_deliveries AS delivery
    SET status = 'failed', completed_at = :now, next_attempt_at = NULL,
        claimed_until = NULL, last_error = :error, updated_at = :now
    WHERE delivery.id IN (
        SELECT delivery.id FROM webhook_deliveries AS delivery
        WHERE delivery.endpoint_id = ANY(CAST(:ids AS uuid[]))
          AND {_DUE}
          {condition}
        FOR UPDATE SKIP LOCKED
    )
    RETURNING delivery.id
    """
        ),
        ("id",),
    )


# Fails every due delivery of disabled endpoints.
_FAIL_DISABLED = _fail_due("")
# Fails the deliveries whose last lease lapsed with no attempt left. The lapsed lease
# is spelled out, so the plan reads the few leased rows of ix_webhook_deliveries_leased
# rather than an endpoint's whole backlog.
_FAIL_EXHAUSTED = _fail_due(
    """
          AND delivery.claimed_until < :now
          AND delivery.attempts >= coalesce(delivery.attempt_limit, :max_attempts)
    """
)
# One worker at a time sends to an endpoint: a worker leases an endpoint's deliveries
# only while no other worker holds a live lease on one, and it holds at most
# ``:max_leased`` at once. Counting and leasing are one statement, under the
# endpoint's slot lock.
_LEASE_DUE = DriverStatement.compile(
    text(
        f"""
    WITH chosen AS (
        SELECT delivery.id FROM webhook_deliveries AS delivery
        WHERE delivery.endpoint_id = :endpoint_id
          AND {_DUE}
          AND delivery.attempts < coalesce(delivery.attempt_limit, :max_attempts)
          AND (
              CAST(:only AS uuid[]) IS NULL
              OR delivery.id = ANY(CAST(:only AS uuid[]))
          )
          AND NOT EXISTS (
              SELECT 1 FROM webhook_deliveries AS other
              WHERE other.endpoint_id = :endpoint_id
                AND other.claimed_until > :now
                AND other.claimed_by IS DISTINCT FROM CAST(:owner AS uuid)
          )
        ORDER BY delivery.next_attempt_at, delivery.id
        LIMIT least(
            :limit,
            greatest(
                0,
                :max_leased - (
                    SELECT count(*) FROM webhook_deliveries AS leased
                    WHERE leased.endpoint_id = :endpoint_id
                      AND leased.claimed_until > :now
                )
            )
        )
        FOR UPDATE SKIP LOCKED
    )
    UPDATE webhook_deliveries AS delivery
    SET attempts = delivery.attempts + 1, claimed_until = :claimed_until,
        claimed_by = CAST(:owner AS uuid), updated_at = :now
    FROM chosen
    WHERE delivery.id = chosen.id
    RETURNING delivery.id, delivery.event_id, delivery.attempts,
              delivery.attempt_limit
    """
    ),
    ("id", "event_id", "attempts", "attempt_limit"),
)


# One statement for any number of deliveries, so it is prepared once. A delivery
# created leased has its first attempt counted, as ``_LEASE_DUE`` counts it; the others
# have null in ``:claimed_by``.
_CREATE_DELIVERIES = DriverStatement.compile(
    text(
        """
    INSERT INTO webhook_deliveries (
        id, workspace_id, endpoint_id, event_id, status, attempts, next_attempt_at,
        claimed_until, claimed_by, created_at, updated_at
    )
    SELECT row.id, row.workspace_id, row.endpoint_id, row.event_id, 'pending',
           CASE WHEN row.claimed_by IS NULL THEN 0 ELSE 1 END, :due_at,
           CASE
               WHEN row.claimed_by IS NOT NULL
               THEN CAST(:claimed_until AS timestamptz)
           END,
           row.claimed_by, :due_at, :due_at
    FROM unnest(
        CAST(:ids AS uuid[]),
        CAST(:workspace_ids AS uuid[]),
        CAST(:endpoint_ids AS uuid[]),
        CAST(:event_ids AS uuid[]),
        CAST(:claimed_by AS uuid[])
    ) AS row(id, workspace_id, endpoint_id, event_id, claimed_by)
    ON CONFLICT (endpoint_id, event_id) DO NOTHING
    RETURNING id
    """
    )
)
# The facts that leasing new deliveries at once reads for the enabled endpoints
# ``:ids``: whether another owner holds a live lease on one of their deliveries,
# whether one is due and unleased, and how many are leased. The endpoint's columns that its requests
# read come along. It runs after the slot locks are taken, in a statement of its own,
# so that its snapshot includes every lease committed before the locks were.
_SLOT_FACTS = DriverStatement.compile(
    text(
        f"""
    SELECT candidate.id, endpoint.url, endpoint.secret, endpoint.previous_secret,
        endpoint.previous_secret_expires_at, endpoint.headers, endpoint.failing_since,
        endpoint.version,
        EXISTS (
            SELECT 1 FROM webhook_deliveries AS other
            WHERE other.endpoint_id = candidate.id
              AND other.claimed_until > :now
              AND other.claimed_by IS DISTINCT FROM CAST(:owner AS uuid)
        ) AS held_elsewhere,
        EXISTS (
            SELECT 1 FROM webhook_deliveries AS delivery
            WHERE delivery.endpoint_id = candidate.id AND {_DUE}
        ) AS backlog,
        (
            SELECT count(*) FROM webhook_deliveries AS leased
            WHERE leased.endpoint_id = candidate.id AND leased.claimed_until > :now
        ) AS leased
    FROM unnest(CAST(:ids AS uuid[])) WITH ORDINALITY AS candidate(id, position)
    JOIN webhook_endpoints AS endpoint
        ON endpoint.id = candidate.id AND endpoint.enabled
    ORDER BY candidate.position
    """
    ),
    (
        "id",
        "url",
        "secret",
        "previous_secret",
        "previous_secret_expires_at",
        "headers",
        "failing_since",
        "version",
        "held_elsewhere",
        "backlog",
        "leased",
    ),
)
# The enabled endpoints of a workspace that take any of ``:patterns``, locked FOR KEY
# SHARE, so that none is deleted before the deliveries that name it are inserted.
_SUBSCRIBERS = DriverStatement.compile(
    text(
        """
    SELECT id, created_at FROM webhook_endpoints
    WHERE workspace_id = :workspace_id
      AND enabled
      AND event_types && CAST(:patterns AS text[])
    ORDER BY id
    FOR KEY SHARE
    """
    ),
    ("id", "created_at"),
)


# The statements that record a batch of attempts take one array per column, so each
# is prepared once whatever the batch size, and skips the ORM's per-row work.
_ADD_ATTEMPTS = DriverStatement.compile(
    text(
        """
    INSERT INTO webhook_attempts (
        id, delivery_id, attempted_at, status_code, error, duration_ms,
        response_excerpt
    )
    SELECT * FROM unnest(
        CAST(:id AS uuid[]),
        CAST(:delivery_id AS uuid[]),
        CAST(:attempted_at AS timestamptz[]),
        CAST(:status_code AS integer[]),
        CAST(:error AS text[]),
        CAST(:duration_ms AS integer[]),
        CAST(:response_excerpt AS text[])
    )
    """
    )
)
_LOCK_LEASED = DriverStatement.compile(
    text(
        """
    SELECT id, claimed_until FROM webhook_deliveries
    WHERE id = ANY(CAST(:ids AS uuid[]))
    ORDER BY id
    FOR UPDATE
    """
    ),
    ("id", "claimed_until"),
)
# Unsent leases given back, at a worker's stop or when one ran too short to send: the
# delivery is due at once again.
_RELEASE_LEASES = DriverStatement.compile(
    text(
        """
    UPDATE webhook_deliveries
    SET claimed_until = NULL, attempts = attempts - 1, updated_at = :now
    WHERE id = ANY(CAST(:ids AS uuid[]))
    """
    )
)
# A recorded delivery loses its lease; ``claimed_by`` stays, naming the last owner.
# A delivery whose lease is no longer the one the attempt was sent under (it lapsed
# and another owner took it) is left alone, and its id is not returned. Rows come in
# id order, the order other transactions lock deliveries in.
_RECORD_STATE = DriverStatement.compile(
    text(
        """
    UPDATE webhook_deliveries AS delivery
    SET status = row.status, claimed_until = NULL,
        last_status_code = row.last_status_code, last_error = row.last_error,
        next_attempt_at = row.next_attempt_at, completed_at = row.completed_at,
        updated_at = row.updated_at
    FROM unnest(
        CAST(:id AS uuid[]),
        CAST(:leased_until AS timestamptz[]),
        CAST(:status AS text[]),
        CAST(:last_status_code AS integer[]),
        CAST(:last_error AS text[]),
        CAST(:next_attempt_at AS timestamptz[]),
        CAST(:completed_at AS timestamptz[]),
        CAST(:updated_at AS timestamptz[])
    ) AS row(
        id, leased_until, status, last_status_code, last_error, next_attempt_at,
        completed_at, updated_at
    )
    WHERE delivery.id = row.id AND delivery.claimed_until = row.leased_until
    RETURNING delivery.id
    """
    ),
    ("id",),
)


class EventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> EventRepository:
        return cls(session)

    async def get(self, workspace_id: uuid.UUID, event_id: uuid.UUID) -> Event | None:
        return await self.session.scalar(
            select(Event).where(
                Event.workspace_id == workspace_id, Event.id == event_id
            )
        )

    async def get_by_id(self, event_id: uuid.UUID) -> Event | None:
        return await self.session.get(Event, event_id)

    async def transaction_started_at(self) -> datetime:
        """Return PostgreSQL's ``now()``: the start of this transaction by the clock
        that stamps each event's ``created_at``."""
        return (await self.session.execute(select(func.now()))).scalar_one()

    async def list(
        self,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        order: Order = "desc",
        types: Sequence[str] = (),
        object_id: uuid.UUID | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> tuple[Sequence[Event], str | None, bool]:
        statement: Select[Any] = select(Event).where(
            Event.workspace_id == workspace_id, Event.test.is_(False)
        )
        if types and catalog.WILDCARD not in types:
            conditions = []
            exact = [pattern for pattern in types if not pattern.endswith(".*")]
            if exact:
                conditions.append(Event.type.in_(exact))
            for pattern in types:
                if pattern.endswith(".*"):
                    prefix = _escape_like(pattern[:-1])
                    conditions.append(Event.type.like(prefix + "%", escape="\\"))
            statement = statement.where(or_(*conditions))
        if object_id is not None:
            statement = statement.where(Event.object_id == object_id)
        if created_after is not None:
            statement = statement.where(Event.created_at > created_after)
        if created_before is not None:
            statement = statement.where(Event.created_at < created_before)
        return await _page_log(
            self.session, statement, order=order, limit=limit, cursor=cursor
        )

    async def prune(self, *, cutoff: datetime, limit: int) -> int:
        """Delete up to ``limit`` prunable events created before ``cutoff``.

        Their deliveries and attempts go with them (ON DELETE CASCADE). Returns how
        many events were deleted.
        """
        result = await self.session.execute(
            _PRUNE_EVENTS, {"cutoff": cutoff, "limit": limit}
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def latest_data(
        self, workspace_id: uuid.UUID, object_type: str
    ) -> dict[str, Any] | None:
        """Return the data of the newest real event about an object of this type."""
        return await self.session.scalar(
            select(Event.data)
            .where(
                Event.workspace_id == workspace_id,
                Event.object_type == object_type,
                Event.test.is_(False),
            )
            .order_by(Event.id.desc())
            .limit(1)
        )

    async def lock_undispatched(self, event_id: uuid.UUID) -> Event | None:
        """Lock the event's place in the dispatch queue and return the event, unless
        it is dispatched or another worker holds it."""
        queued = await self.session.scalar(
            select(UndispatchedEvent.event_id)
            .where(UndispatchedEvent.event_id == event_id)
            .with_for_update(skip_locked=True)
        )
        if queued is None:
            return None
        return await self.session.get(Event, event_id, populate_existing=True)

    async def claim_undispatched_batch(
        self, limit: int, *, with_payload: bool = False
    ) -> Sequence[Any]:
        """Take up to ``limit`` undispatched events off the queue, oldest first,
        skipping those another transaction holds; return them.

        Each row has the id, workspace id, type and creation time of its event, and
        with ``with_payload`` every column its payload reads (``PAYLOAD_COLUMNS``).
        The caller creates their deliveries in the same transaction.
        """
        statement = (
            _CLAIM_UNDISPATCHED_WITH_PAYLOAD if with_payload else _CLAIM_UNDISPATCHED
        )
        return await statement.fetch(self.session, {"limit": limit})

    async def mark_dispatched(self, event_id: uuid.UUID) -> None:
        """Take the event off the dispatch queue."""
        await self.session.execute(
            delete(UndispatchedEvent).where(UndispatchedEvent.event_id == event_id)
        )

    async def settle_unsubscribed(self, *, created_before: datetime, limit: int) -> int:
        """Take off the queue up to ``limit`` undispatched events no endpoint
        subscribes to.

        An event counts as subscribed when an enabled endpoint of its workspace has a
        pattern covering its type (as ``catalog.patterns_covering`` lists them),
        whenever that endpoint was created, so every event ``dispatch_event`` would
        deliver is left for it. Returns how many events were settled.
        """
        result = await self.session.execute(
            _SETTLE_UNSUBSCRIBED,
            {
                "created_before": created_before,
                "limit": limit,
                "wildcard": catalog.WILDCARD,
            },
        )
        return len(result.all())

    async def undispatched_ids(
        self, *, created_before: datetime, after_id: uuid.UUID | None, limit: int
    ) -> Sequence[uuid.UUID]:
        """Return undispatched events that an enabled endpoint subscribes to.

        The others are left to ``settle_unsubscribed``. A sweep running alongside
        another therefore queues no job for the events the other is settling.
        """
        statement = (
            select(Event.id)
            .join(UndispatchedEvent, UndispatchedEvent.event_id == Event.id)
            .where(
                Event.created_at < created_before,
                text(_SUBSCRIBED).bindparams(wildcard=catalog.WILDCARD),
            )
        )
        if after_id is not None:
            statement = statement.where(Event.id > after_id)
        return (
            await self.session.scalars(statement.order_by(Event.id).limit(limit))
        ).all()


class WebhookEndpointRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> WebhookEndpointRepository:
        return cls(session)

    async def get(
        self,
        workspace_id: uuid.UUID,
        endpoint_id: uuid.UUID,
        *,
        for_update: bool = False,
        for_key_share: bool = False,
    ) -> WebhookEndpoint | None:
        """Return the endpoint, locked ``FOR UPDATE`` or ``FOR KEY SHARE`` if asked.

        ``FOR KEY SHARE`` keeps the endpoint from being deleted until the transaction
        ends, so rows inserted with its id do not break their foreign key.
        """
        statement = select(WebhookEndpoint).where(
            WebhookEndpoint.workspace_id == workspace_id,
            WebhookEndpoint.id == endpoint_id,
        )
        if for_update:
            statement = statement.with_for_update().execution_options(
                populate_existing=True
            )
        elif for_key_share:
            statement = statement.with_for_update(
                read=True, key_share=True
            ).execution_options(populate_existing=True)
        return await self.session.scalar(statement)

    async def get_by_id(
        self,
        endpoint_id: uuid.UUID,
        *,
        for_update: bool = False,
        for_no_key_update: bool = False,
    ) -> WebhookEndpoint | None:
        """Return the endpoint, locked ``FOR UPDATE`` or ``FOR NO KEY UPDATE`` if asked.

        ``FOR NO KEY UPDATE`` waits for a PATCH or a delete, but lets the dispatch
        and foreign key checks take ``FOR KEY SHARE`` meanwhile.
        """
        statement = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
        if for_update:
            statement = statement.with_for_update().execution_options(
                populate_existing=True
            )
        elif for_no_key_update:
            statement = statement.with_for_update(key_share=True).execution_options(
                populate_existing=True
            )
        return await self.session.scalar(statement)

    async def list(
        self,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        enabled: bool | None = None,
    ) -> tuple[Sequence[WebhookEndpoint], str | None, bool]:
        statement: Select[Any] = select(WebhookEndpoint).where(
            WebhookEndpoint.workspace_id == workspace_id
        )
        if enabled is not None:
            statement = statement.where(WebhookEndpoint.enabled.is_(enabled))
        return await paginate(
            self.session, statement, WebhookEndpoint.id, limit=limit, cursor=cursor
        )

    async def caught_up(self, endpoint_id: uuid.UUID) -> None:
        """Note that the endpoint has the deliveries its creation raced with.

        Neither its version nor ``updated_at`` changes: nothing a caller set did.
        """
        await self.session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id)
            .values(catch_up_pending=False, updated_at=WebhookEndpoint.updated_at)
            .execution_options(synchronize_session=False)
        )

    async def catch_up_pending_ids(
        self, *, created_before: datetime, limit: int
    ) -> Sequence[uuid.UUID]:
        """Return endpoints created before ``created_before`` not yet caught up."""
        return (
            await self.session.scalars(
                select(WebhookEndpoint.id)
                .where(
                    WebhookEndpoint.catch_up_pending.is_(True),
                    WebhookEndpoint.created_at < created_before,
                )
                .order_by(WebhookEndpoint.created_at)
                .limit(limit)
            )
        ).all()

    async def subscribed_ids(self, event: Event) -> Sequence[uuid.UUID]:
        """Return the enabled endpoints of the event's workspace that subscribe to it.

        Endpoints created after the event are left out: they subscribe to what happens
        from their creation on. The rows are locked FOR KEY SHARE, so an endpoint being
        deleted is either skipped, or its deletion waits until the deliveries exist.
        """
        patterns = catalog.patterns_covering(event.type)
        return (
            await self.session.scalars(
                select(WebhookEndpoint.id)
                .where(
                    WebhookEndpoint.workspace_id == event.workspace_id,
                    WebhookEndpoint.enabled.is_(True),
                    WebhookEndpoint.created_at <= event.created_at,
                    WebhookEndpoint.event_types.op("&&")(
                        bindparam("patterns", patterns, type_=ARRAY(Text))
                    ),
                )
                .order_by(WebhookEndpoint.id)
                .with_for_update(key_share=True)
            )
        ).all()

    async def subscribers(
        self, workspace_id: uuid.UUID, event_type: str
    ) -> Sequence[tuple[uuid.UUID, datetime]]:
        """Return the id and creation time of the enabled endpoints taking this type.

        Locked FOR KEY SHARE, as in ``subscribed_ids``.
        """
        rows = await _SUBSCRIBERS.fetch(
            self.session,
            {
                "workspace_id": workspace_id,
                "patterns": catalog.patterns_covering(event_type),
            },
        )
        return [(row.id, row.created_at) for row in rows]

    async def get_many(
        self, endpoint_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, WebhookEndpoint]:
        if not endpoint_ids:
            return {}
        rows = await self.session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.id.in_(set(endpoint_ids)))
            .execution_options(populate_existing=True)
        )
        return {endpoint.id: endpoint for endpoint in rows}

    async def lock_and_count(self, workspace_id: uuid.UUID) -> int:
        """Take the workspace's endpoint-creation lock until the transaction ends, and
        return how many endpoints the workspace has."""
        await self.session.execute(
            select(
                func.pg_advisory_xact_lock(
                    ENDPOINT_CREATION_LOCK_NAMESPACE,
                    func.hashtext(str(workspace_id)),
                )
            )
        )
        count = await self.session.scalar(
            select(func.count())
            .select_from(WebhookEndpoint)
            .where(WebhookEndpoint.workspace_id == workspace_id)
        )
        return int(count or 0)

    async def versions(self, endpoint_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        """Return the current version of each endpoint that still exists."""
        if not endpoint_ids:
            return {}
        rows = await self.session.execute(
            select(WebhookEndpoint.id, WebhookEndpoint.version).where(
                WebhookEndpoint.id.in_(set(endpoint_ids))
            )
        )
        return {row.id: row.version for row in rows}

    async def set_failing_since(
        self, endpoint_id: uuid.UUID, since: datetime | None
    ) -> None:
        """Set when the endpoint's current run of failures began; no version bump."""
        await self.session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id)
            .values(failing_since=since, updated_at=WebhookEndpoint.updated_at)
            .execution_options(synchronize_session=False)
        )


class WebhookDeliveryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> WebhookDeliveryRepository:
        return cls(session)

    async def create_for_event(
        self, event: Event, endpoint_ids: Sequence[uuid.UUID], *, due_at: datetime
    ) -> Sequence[uuid.UUID]:
        """Insert one pending delivery per endpoint; return the ids of the new ones.

        ``ON CONFLICT DO NOTHING`` on ``(endpoint_id, event_id)`` makes a second
        dispatch of the same event create nothing.
        """
        if not endpoint_ids:
            return []
        statement = (
            insert(WebhookDelivery)
            .values(
                [
                    {
                        "id": new_uuid(),
                        "workspace_id": event.workspace_id,
                        "endpoint_id": endpoint_id,
                        "event_id": event.id,
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": due_at,
                    }
                    for endpoint_id in endpoint_ids
                ]
            )
            .on_conflict_do_nothing(index_elements=["endpoint_id", "event_id"])
            .returning(WebhookDelivery.id)
        )
        return (await self.session.scalars(statement)).all()

    async def create_many(
        self,
        pairs: Sequence[tuple[Any, uuid.UUID]],
        *,
        due_at: datetime,
        leased: Sequence[bool] = (),
        owner: uuid.UUID | None = None,
        claimed_until: datetime | None = None,
    ) -> list[uuid.UUID | None]:
        """Insert one pending delivery per (event, endpoint) pair; return their ids.

        Of each event only ``id`` and ``workspace_id`` are read. A pair whose flag in
        ``leased`` is true gets a delivery leased to ``owner`` until
        ``claimed_until``, with its first attempt counted. The caller holds the
        endpoint's slot lock. A pair that already has its delivery is skipped, as in
        ``create_for_event``, and its place in the result is None.
        """
        if not pairs:
            return []
        flags = list(leased) or [False] * len(pairs)
        new_ids = [new_uuid() for _ in pairs]
        rows = await _CREATE_DELIVERIES.fetch(
            self.session,
            {
                "ids": new_ids,
                "workspace_ids": [event.workspace_id for event, _ in pairs],
                "endpoint_ids": [endpoint_id for _, endpoint_id in pairs],
                "event_ids": [event.id for event, _ in pairs],
                "claimed_by": [owner if flag else None for flag in flags],
                "claimed_until": claimed_until,
                "due_at": due_at,
            },
        )
        created = {row[0] for row in rows}
        return [id_ if id_ in created else None for id_ in new_ids]

    async def lock_slots_for_new(
        self, endpoint_ids: Sequence[uuid.UUID], now: datetime, owner: uuid.UUID
    ) -> Sequence[Any]:
        """Take the slot locks no one else holds, as ``try_lock_endpoint_slots``.

        Returns a row per enabled endpoint locked. Each row has the ``id``, the
        columns the requests read (``url``, the secrets, ``headers`` and
        ``failing_since``), and three facts read once the locks are held:
        ``held_elsewhere``, whether another owner holds a live lease on one of its
        deliveries; ``backlog``, whether one is due and unleased; ``leased``, how
        many live leases it has.
        """
        locked = await self.try_lock_endpoint_slots(endpoint_ids)
        if not locked:
            return []
        return await _SLOT_FACTS.fetch(
            self.session, {"ids": list(locked), "now": now, "owner": owner}
        )

    async def get(
        self,
        workspace_id: uuid.UUID,
        delivery_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> WebhookDelivery | None:
        statement = select(WebhookDelivery).where(
            WebhookDelivery.workspace_id == workspace_id,
            WebhookDelivery.id == delivery_id,
        )
        if for_update:
            statement = statement.with_for_update().execution_options(
                populate_existing=True
            )
        return await self.session.scalar(statement)

    async def lock_endpoints_with_due(
        self, now: datetime, *, limit: int
    ) -> Sequence[uuid.UUID]:
        """Take the slot locks of up to ``limit`` endpoints with an unleased due delivery.

        Endpoints come in random order, so a backlog at some does not keep the
        others waiting; those whose lock another worker holds are left out.
        """
        rows = await _LOCK_ENDPOINTS_WITH_DUE.fetch(
            self.session,
            {"now": now, "limit": limit, "namespace": SLOT_LOCK_NAMESPACE},
        )
        return [row.id for row in rows]

    async def endpoints_of(
        self, delivery_ids: Sequence[uuid.UUID]
    ) -> Sequence[uuid.UUID]:
        return (
            await self.session.scalars(
                select(WebhookDelivery.endpoint_id)
                .where(WebhookDelivery.id.in_(set(delivery_ids)))
                .distinct()
            )
        ).all()

    async def try_lock_endpoint_slots(
        self, endpoint_ids: Sequence[uuid.UUID]
    ) -> Sequence[uuid.UUID]:
        """Take, until the transaction ends, the slot locks that no one else holds.

        Returns the endpoints whose lock was taken; another worker is leasing for
        the others right now.
        """
        if not endpoint_ids:
            return []
        rows = await _TRY_LOCK_SLOTS.fetch(
            self.session,
            {"namespace": SLOT_LOCK_NAMESPACE, "ids": sorted(endpoint_ids)},
        )
        return [row.id for row in rows]

    async def fail_unsendable(
        self,
        endpoint_ids: Sequence[uuid.UUID],
        now: datetime,
        *,
        max_attempts: int,
        disabled: bool,
        error: str,
    ) -> Sequence[uuid.UUID]:
        """Fail the due, unleased deliveries of the endpoints that cannot be sent.

        With ``disabled`` that is all of them; otherwise those that used their last
        attempt, whose worker stopped before recording it.
        """
        if not endpoint_ids:
            return []
        parameters = {
            "ids": list(endpoint_ids),
            "now": now,
            "max_attempts": max_attempts,
            "error": error,
        }
        statement = _FAIL_DISABLED if disabled else _FAIL_EXHAUSTED
        rows = await statement.fetch(self.session, parameters)
        return [row.id for row in rows]

    async def lease_due(
        self,
        endpoint_id: uuid.UUID,
        now: datetime,
        *,
        claimed_until: datetime,
        owner: uuid.UUID,
        max_leased: int,
        max_attempts: int,
        limit: int,
        only: Sequence[uuid.UUID] | None = None,
    ) -> Sequence[Any]:
        """Lease the endpoint's due deliveries for one attempt each, oldest first.

        Nothing is leased while another owner holds a live lease on the endpoint.
        Takes at most ``max_leased`` less the live leases, and at most ``limit``.
        The caller holds the endpoint's slot lock, so the count and the leases are
        one step. ``only`` restricts the choice to those deliveries. Returns the id,
        event id, attempt number and attempt limit of each.
        """
        return await _LEASE_DUE.fetch(
            self.session,
            {
                "endpoint_id": endpoint_id,
                "now": now,
                "claimed_until": claimed_until,
                "owner": owner,
                "max_leased": max_leased,
                "max_attempts": max_attempts,
                "limit": limit,
                "only": list(only) if only is not None else None,
            },
        )

    async def lock_leased(
        self, delivery_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, datetime | None]:
        """Lock the deliveries in id order; return the lease each holds now."""
        if not delivery_ids:
            return {}
        rows = await _LOCK_LEASED.fetch(
            self.session, {"ids": sorted(set(delivery_ids))}
        )
        return {row.id: row.claimed_until for row in rows}

    async def release_leases(
        self, delivery_ids: Sequence[uuid.UUID], now: datetime
    ) -> None:
        """Clear the leases of locked deliveries and take back their attempts."""
        if not delivery_ids:
            return
        await _RELEASE_LEASES.fetch(
            self.session, {"ids": list(delivery_ids), "now": now}
        )

    async def record_states(self, values: Sequence[dict[str, Any]]) -> set[uuid.UUID]:
        """Store each delivery's state after an attempt, in one statement; return the
        ids of those stored.

        A delivery is stored only while it holds the lease the attempt was sent
        under. Each dict contains the ``id``, that lease in ``leased_until``, and the
        columns ``_RECORD_STATE`` sets.
        """
        if not values:
            return set()
        ordered = sorted(values, key=lambda value: value["id"])
        rows = await _RECORD_STATE.fetch(
            self.session,
            {
                column: [value[column] for value in ordered]
                for column in (
                    "id",
                    "leased_until",
                    "status",
                    "last_status_code",
                    "last_error",
                    "next_attempt_at",
                    "completed_at",
                    "updated_at",
                )
            },
        )
        return {row.id for row in rows}

    async def add_attempts(self, values: Sequence[dict[str, Any]]) -> None:
        """Insert attempts in one statement; each dict names the columns."""
        if not values:
            return
        await _ADD_ATTEMPTS.fetch(
            self.session,
            {
                "id": [new_uuid() for _ in values],
                **{
                    column: [value[column] for value in values]
                    for column in (
                        "delivery_id",
                        "attempted_at",
                        "status_code",
                        "error",
                        "duration_ms",
                        "response_excerpt",
                    )
                },
            },
        )

    async def list_for_endpoint(
        self,
        endpoint_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        status: str | None = None,
        event_id: uuid.UUID | None = None,
    ) -> tuple[Sequence[WebhookDelivery], str | None, bool]:
        statement: Select[Any] = select(WebhookDelivery).where(
            WebhookDelivery.endpoint_id == endpoint_id
        )
        if status is not None:
            statement = statement.where(WebhookDelivery.status == status)
        if event_id is not None:
            statement = statement.where(WebhookDelivery.event_id == event_id)
        return await paginate(
            self.session, statement, WebhookDelivery.id, limit=limit, cursor=cursor
        )

    async def list_for_event(
        self,
        workspace_id: uuid.UUID,
        event_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
    ) -> tuple[Sequence[WebhookDelivery], str | None, bool]:
        statement: Select[Any] = select(WebhookDelivery).where(
            WebhookDelivery.workspace_id == workspace_id,
            WebhookDelivery.event_id == event_id,
        )
        return await paginate(
            self.session, statement, WebhookDelivery.id, limit=limit, cursor=cursor
        )

    async def latest_attempts(
        self, delivery_ids: Sequence[uuid.UUID], *, limit: int
    ) -> dict[uuid.UUID, list[WebhookAttempt]]:
        """Return the last ``limit`` attempts of each delivery, oldest first, in one
        query."""
        grouped: dict[uuid.UUID, list[WebhookAttempt]] = {
            delivery_id: [] for delivery_id in delivery_ids
        }
        if not delivery_ids:
            return grouped
        ranked = (
            select(
                WebhookAttempt.id,
                func.row_number()
                .over(
                    partition_by=WebhookAttempt.delivery_id,
                    order_by=(
                        WebhookAttempt.attempted_at.desc(),
                        WebhookAttempt.id.desc(),
                    ),
                )
                .label("rank"),
            )
            .where(WebhookAttempt.delivery_id.in_(set(delivery_ids)))
            .subquery()
        )
        rows = await self.session.scalars(
            select(WebhookAttempt)
            .join(ranked, ranked.c.id == WebhookAttempt.id)
            .where(ranked.c.rank <= limit)
            .order_by(WebhookAttempt.attempted_at, WebhookAttempt.id)
        )
        for attempt in rows:
            grouped[attempt.delivery_id].append(attempt)
        return grouped

    async def list_attempts(
        self, delivery_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> tuple[Sequence[WebhookAttempt], str | None, bool]:
        """Return one page of a delivery's attempts, the last recorded first."""
        return await paginate(
            self.session,
            select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id),
            WebhookAttempt.id,
            limit=limit,
            cursor=cursor,
        )

    async def event_types(self, event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        """Return the type of each event, in one query."""
        if not event_ids:
            return {}
        rows = await self.session.execute(
            select(Event.id, Event.type).where(Event.id.in_(set(event_ids)))
        )
        return {row.id: row.type for row in rows}

    async def requeue_failed(
        self,
        endpoint_id: uuid.UUID,
        *,
        created_since: datetime,
        failed_before: datetime,
        after_id: uuid.UUID | None,
        limit: int,
        now: datetime,
    ) -> Sequence[tuple[uuid.UUID, int]]:
        """Make up to ``limit`` failed deliveries pending again, for one more attempt.

        Takes the endpoint's deliveries created at or after ``created_since`` that
        failed before ``failed_before``, in id order after ``after_id``. Returns the id
        and attempt count of each.
        """
        chosen = (
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.endpoint_id == endpoint_id,
                WebhookDelivery.status == "failed",
                WebhookDelivery.created_at >= created_since,
                WebhookDelivery.completed_at <= failed_before,
            )
            .order_by(WebhookDelivery.id)
            .limit(limit)
            # Waits for a row another transaction holds, such as a retry's, rather
            # than skip it: the recovery's bookmark passes every row it returns, so
            # a skipped row would never be taken.
            .with_for_update()
        )
        if after_id is not None:
            chosen = chosen.where(WebhookDelivery.id > after_id)
        rows = await self.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(chosen.scalar_subquery()))
            .values(
                status="pending",
                attempt_limit=WebhookDelivery.attempts + 1,
                next_attempt_at=now,
                completed_at=None,
                updated_at=now,
            )
            .returning(WebhookDelivery.id, WebhookDelivery.attempts)
            .execution_options(synchronize_session=False)
        )
        return sorted((row.id, row.attempts) for row in rows)

    async def missing_events(
        self,
        endpoint: WebhookEndpoint,
        *,
        event_types: Sequence[str],
        emitted_since: datetime,
        emitted_until: datetime,
        after_id: uuid.UUID | None,
        limit: int,
    ) -> tuple[Sequence[Any], Sequence[Any]]:
        """Find, among the next ``limit`` events of the endpoint's workspace and
        ``event_types``, emitted in the window, those the endpoint has no delivery of.

        The events are taken in id order after ``after_id``; test events are left
        out. Returns the events looked at and those of them without a delivery, each
        with its ``id`` and ``workspace_id``.
        """
        window = (
            select(Event.id, Event.workspace_id)
            .where(
                Event.workspace_id == endpoint.workspace_id,
                Event.type.in_(event_types),
                Event.test.is_(False),
                Event.created_at >= emitted_since,
                Event.created_at <= emitted_until,
            )
            .order_by(Event.id)
            .limit(limit)
        )
        if after_id is not None:
            window = window.where(Event.id > after_id)
        else:
            # The floor bounds the scan of the ids. An event's id comes from the
            # clock of the process that emitted it, and created_at from PostgreSQL's,
            # so the hour allows for the first clock running behind.
            floor = uuid_floor(emitted_since - timedelta(hours=1))
            window = window.where(Event.id >= floor)
        events = (await self.session.execute(window)).all()
        if not events:
            return [], []
        delivered = set(
            (
                await self.session.scalars(
                    select(WebhookDelivery.event_id).where(
                        WebhookDelivery.endpoint_id == endpoint.id,
                        WebhookDelivery.event_id.in_([event.id for event in events]),
                    )
                )
            ).all()
        )
        return events, [event for event in events if event.id not in delivered]


class WebhookRecoveryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> WebhookRecoveryRepository:
        return cls(session)

    async def get(
        self, workspace_id: uuid.UUID, recovery_id: uuid.UUID
    ) -> WebhookRecovery | None:
        return await self.session.scalar(
            select(WebhookRecovery).where(
                WebhookRecovery.workspace_id == workspace_id,
                WebhookRecovery.id == recovery_id,
            )
        )

    async def lock_pending(self, recovery_id: uuid.UUID) -> WebhookRecovery | None:
        """Lock the recovery unless it is finished or another worker runs it."""
        return await self.session.scalar(
            select(WebhookRecovery)
            .where(
                WebhookRecovery.id == recovery_id,
                WebhookRecovery.status == "pending",
            )
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )

    async def stale_pending_ids(
        self, *, updated_before: datetime, limit: int
    ) -> Sequence[uuid.UUID]:
        """Return pending recoveries that no job has advanced since ``updated_before``."""
        return (
            await self.session.scalars(
                select(WebhookRecovery.id)
                .where(
                    WebhookRecovery.status == "pending",
                    WebhookRecovery.updated_at < updated_before,
                )
                .order_by(WebhookRecovery.updated_at)
                .limit(limit)
            )
        ).all()
