"""Activities: notes, calls, emails and meetings logged on records, and tasks.

An activity links to one or more of a lead, contact, customer and opportunity, and
shows on the timeline of each. A contact or opportunity brings its customer along,
so the customer's timeline shows everything done with its people and deals.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.activities.errors import ActivityNotCompletable, ActivityNotFound
from app.activities.lifecycle import activity_data
from app.activities.repository import ActivityRepository
from app.activities.schemas import (
    TIMED_KINDS,
    ActivityComplete,
    ActivityCreate,
    ActivityUpdate,
)
from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.concurrency import check_if_match
from app.core.errors import FieldError, InvalidInput, NotFound
from app.core.events import emit
from app.customers.service import contact_service, customer_service
from app.leads.service import lead_service
from app.models import Activity
from app.opportunities.service import opportunity_service
from app.users.service import user_service

log = structlog.get_logger(__name__)

RECORD_FIELDS = ("lead_id", "contact_id", "customer_id", "opportunity_id")


def _invalid(field: str, message: str, code: str, detail: str) -> InvalidInput:
    return InvalidInput(detail, errors=[FieldError(field, message, code)])


def check_kind_fields(kind: str, values: dict[str, Any]) -> None:
    """Raise ``InvalidInput`` for a field the kind does not take or lacks."""
    if kind == "note":
        if not values.get("body"):
            raise _invalid(
                "body", "required for a note", "missing", "A note needs a body."
            )
    elif not values.get("subject"):
        raise _invalid(
            "subject",
            f"required for a {kind}",
            "missing",
            f"A {kind} needs a subject.",
        )
    if kind != "task" and values.get("due_at") is not None:
        raise _invalid(
            "due_at",
            "only tasks have a due date",
            "not_allowed",
            f"A {kind} has no due date. Create a task to schedule work.",
        )
    if kind == "task" and values.get("occurred_at") is not None:
        raise _invalid(
            "occurred_at",
            "not allowed for a task",
            "not_allowed",
            "A task takes due_at, not occurred_at. Log a call, email or meeting "
            "for something that already happened.",
        )
    if kind not in TIMED_KINDS and values.get("duration_seconds") is not None:
        raise _invalid(
            "duration_seconds",
            "only calls and meetings have a duration",
            "not_allowed",
            f"A {kind} has no duration. Remove duration_seconds.",
        )


class ActivityService:
    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        activity_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Activity:
        activity = await ActivityRepository.from_session(session).get(
            workspace_id, activity_id, for_update=for_update
        )
        if activity is None:
            raise ActivityNotFound(
                f"No activity with id {ids.encode('activity', activity_id)} exists "
                "in this workspace."
            )
        return activity

    async def create(
        self, session: AsyncSession, principal: Principal, payload: ActivityCreate
    ) -> Activity:
        values = {name: getattr(payload, name) for name in ActivityCreate.model_fields}
        check_kind_fields(payload.kind, values)
        links = await self._links(session, principal.workspace_id, values)
        owner_id = payload.owner_id
        if owner_id is not None:
            await user_service.require_active(
                session, principal.workspace_id, owner_id, "owner_id"
            )
        else:
            owner_id = await user_service.acting_user(session, principal)

        now = utcnow()
        activity = Activity(
            id=ids.new_uuid(),
            workspace_id=principal.workspace_id,
            kind=payload.kind,
            subject=payload.subject,
            body=payload.body,
            outcome=payload.outcome,
            occurred_at=payload.occurred_at or now,
            due_at=payload.due_at,
            duration_seconds=payload.duration_seconds,
            owner_id=owner_id,
            **links,
        )
        session.add(activity)
        await session.flush()
        await session.refresh(activity)

        await self._emit(session, principal, activity, "activity.created")
        if activity.opportunity_id is not None:
            # Activity on an opportunity restarts its rotting clock.
            await opportunity_service.record_activity(
                session, activity.workspace_id, activity.opportunity_id, principal.actor
            )
        log.info("activity.created", activity_id=str(activity.id), kind=activity.kind)
        return activity

    async def create_lead_task(
        self,
        session: AsyncSession,
        *,
        workspace_id: uuid.UUID,
        lead_id: uuid.UUID,
        owner_id: uuid.UUID | None,
        subject: str,
        body: str | None,
        due_at: datetime,
        actor: str,
    ) -> Activity:
        """Create a task on a lead for a worker, which has no request principal."""
        return await self.create_worker_task(
            session,
            workspace_id=workspace_id,
            owner_id=owner_id,
            subject=subject,
            body=body,
            due_at=due_at,
            actor=actor,
            lead_id=lead_id,
        )

    async def create_worker_task(
        self,
        session: AsyncSession,
        *,
        workspace_id: uuid.UUID,
        owner_id: uuid.UUID | None,
        subject: str,
        body: str | None,
        due_at: datetime,
        actor: str,
        lead_id: uuid.UUID | None = None,
        customer_id: uuid.UUID | None = None,
    ) -> Activity:
        """Create a task on a lead or customer for a worker, without a principal."""
        activity = Activity(
            id=ids.new_uuid(),
            workspace_id=workspace_id,
            kind="task",
            subject=subject,
            body=body,
            occurred_at=utcnow(),
            due_at=due_at,
            owner_id=owner_id,
            lead_id=lead_id,
            customer_id=customer_id,
        )
        session.add(activity)
        await session.flush()
        await session.refresh(activity)

        await emit(
            session,
            workspace_id=workspace_id,
            type="activity.created",
            object_type="activity",
            object_id=activity.id,
            data=activity_data(activity),
            actor=actor,
        )
        log.info("activity.created", activity_id=str(activity.id), kind="task")
        return activity

    async def _links(
        self, session: AsyncSession, workspace_id: uuid.UUID, values: dict[str, Any]
    ) -> dict[str, uuid.UUID | None]:
        links: dict[str, uuid.UUID | None] = {
            field: values.get(field) for field in RECORD_FIELDS
        }
        if all(value is None for value in links.values()):
            raise InvalidInput(
                "An activity must link to a lead, contact, customer or opportunity. "
                "Send at least one of their ids.",
                errors=[
                    FieldError(field, "send at least one record id", "record_missing")
                    for field in RECORD_FIELDS
                ],
            )
        if links["lead_id"] is not None:
            await self._exists(
                lead_service.get(session, workspace_id, links["lead_id"]), "lead_id"
            )
        implied: dict[str, uuid.UUID] = {}
        if links["contact_id"] is not None:
            contact = await self._exists(
                contact_service.get(session, workspace_id, links["contact_id"]),
                "contact_id",
            )
            implied["contact_id"] = contact.customer_id
        if links["opportunity_id"] is not None:
            # The insert's foreign key check takes FOR KEY SHARE on the opportunity,
            # and record_activity then updates that row. Locking it first makes
            # concurrent activities queue here instead of deadlocking there.
            opportunity = await self._exists(
                opportunity_service.get(
                    session, workspace_id, links["opportunity_id"], for_update=True
                ),
                "opportunity_id",
            )
            implied["opportunity_id"] = opportunity.customer_id
        if links["customer_id"] is not None:
            await self._exists(
                customer_service.get(session, workspace_id, links["customer_id"]),
                "customer_id",
            )
        for field, customer_id in implied.items():
            if links["customer_id"] is None:
                links["customer_id"] = customer_id
            elif links["customer_id"] != customer_id:
                raise _invalid(
                    field,
                    f"belongs to customer {ids.encode('customer', customer_id)}",
                    "customer_mismatch",
                    f"The {field.removesuffix('_id')} belongs to another customer "
                    f"than customer_id. Send customer_id "
                    f"{ids.encode('customer', customer_id)} or omit it.",
                )
        return links

    @staticmethod
    async def _exists(lookup: Any, field: str) -> Any:
        try:
            return await lookup
        except NotFound as error:
            raise _invalid(
                field,
                "no such record in this workspace",
                "record_not_found",
                f"{error.detail} Send the id of an existing record in {field}.",
            ) from error

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        kind: str | None = None,
        records: dict[str, uuid.UUID] | None = None,
        owner_id: uuid.UUID | None = None,
        overdue: bool | None = None,
        due_before: datetime | None = None,
        due_after: datetime | None = None,
    ) -> tuple[Sequence[Activity], str | None, bool]:
        return await ActivityRepository.from_session(session).list(
            workspace_id,
            limit=limit,
            cursor=cursor,
            kind=kind,
            records=records,
            owner_id=owner_id,
            overdue=overdue,
            due_before=due_before,
            due_after=due_after,
        )

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        activity_id: uuid.UUID,
        payload: ActivityUpdate,
        *,
        if_match: str | None,
    ) -> Activity:
        activity = await self.get(
            session, principal.workspace_id, activity_id, for_update=True
        )
        check_if_match(if_match, activity.version)

        changes = {name: getattr(payload, name) for name in payload.model_fields_set}
        if "occurred_at" in changes and changes["occurred_at"] is None:
            raise _invalid(
                "occurred_at",
                "cannot be null",
                "null_not_allowed",
                "occurred_at cannot be null. Omit it to keep the current time.",
            )
        merged = {
            "subject": activity.subject,
            "body": activity.body,
            "due_at": activity.due_at,
            "duration_seconds": activity.duration_seconds,
            **changes,
        }
        if activity.kind == "task":
            # A task's occurred_at is its creation time, not an input.
            merged["occurred_at"] = changes.get("occurred_at")
        check_kind_fields(activity.kind, merged)
        if changes.get("owner_id") is not None:
            await user_service.require_active(
                session, principal.workspace_id, changes["owner_id"], "owner_id"
            )
        if "due_at" in changes and changes["due_at"] != activity.due_at:
            # A new due date may pass again, and that is worth a new event.
            activity.overdue_notified_at = None
        for name, value in changes.items():
            setattr(activity, name, value)
        if not session.is_modified(activity):
            return activity
        await session.flush()
        await session.refresh(activity)

        await self._emit(session, principal, activity, "activity.updated")
        log.info(
            "activity.updated", activity_id=str(activity.id), fields=sorted(changes)
        )
        return activity

    async def complete(
        self,
        session: AsyncSession,
        principal: Principal,
        activity_id: uuid.UUID,
        payload: ActivityComplete,
        *,
        if_match: str | None,
    ) -> Activity:
        activity = await self.get(
            session, principal.workspace_id, activity_id, for_update=True
        )
        check_if_match(if_match, activity.version)
        if activity.kind != "task":
            raise ActivityNotCompletable(
                f"A {activity.kind} records something already done. Only tasks can "
                "be completed.",
                kind=activity.kind,
            )
        if activity.completed_at is not None:
            raise ActivityNotCompletable(
                "The task was completed at "
                f"{activity.completed_at.isoformat()}. A task cannot be reopened, so "
                "create a new task instead.",
                completed_at=activity.completed_at.isoformat(),
            )

        activity.completed_at = payload.completed_at or utcnow()
        if payload.outcome is not None:
            activity.outcome = payload.outcome
        await session.flush()
        await session.refresh(activity)

        await self._emit(session, principal, activity, "activity.completed")
        if activity.opportunity_id is not None:
            await opportunity_service.record_activity(
                session, activity.workspace_id, activity.opportunity_id, principal.actor
            )
        log.info("activity.completed", activity_id=str(activity.id))
        return activity

    async def sweep_overdue(self, session: AsyncSession, *, batch: int) -> int:
        """Emit ``activity.overdue`` once for each task that passed its due date."""
        claimed = await ActivityRepository.from_session(session).claim_overdue(batch)
        for activity in claimed:
            await emit(
                session,
                workspace_id=activity.workspace_id,
                type="activity.overdue",
                object_type="activity",
                object_id=activity.id,
                data=activity_data(activity),
            )
        if claimed:
            log.info("activity.overdue_swept", count=len(claimed))
        return len(claimed)

    async def by_ids(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        activity_ids: builtins.list[uuid.UUID],
    ) -> dict[uuid.UUID, Activity]:
        return await ActivityRepository.from_session(session).get_many(
            workspace_id, activity_ids
        )

    async def _emit(
        self, session: AsyncSession, principal: Principal, activity: Activity, type: str
    ) -> None:
        await emit(
            session,
            workspace_id=activity.workspace_id,
            type=type,
            object_type="activity",
            object_id=activity.id,
            data=activity_data(activity),
            actor=principal.actor,
        )


activity_service = ActivityService()
