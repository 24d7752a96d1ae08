"""Objections a customer raises on an opportunity, and how the team handled them.

An open blocking objection keeps the opportunity from being won. Recording or
changing an objection counts as activity on the opportunity, so it ends a rotting
spell.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.concurrency import check_if_match
from app.core.errors import FieldError, InvalidInput
from app.core.events import emit
from app.models import Objection
from app.opportunities.errors import ObjectionNotFound
from app.opportunities.repository import ObjectionRepository
from app.opportunities.schemas import Objection as ObjectionSchema
from app.opportunities.schemas import ObjectionCreate, ObjectionUpdate
from app.opportunities.service import opportunity_service

log = structlog.get_logger(__name__)

_REQUIRED_ON_UPDATE = ("category", "text", "status", "blocking")


class ObjectionService:
    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        opportunity_id: uuid.UUID,
        objection_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Objection:
        await opportunity_service.get(session, workspace_id, opportunity_id)
        objection = await ObjectionRepository.from_session(session).get(
            workspace_id, opportunity_id, objection_id, for_update=for_update
        )
        if objection is None:
            raise ObjectionNotFound(
                f"No objection with id {ids.encode('objection', objection_id)} exists "
                f"on opportunity {ids.encode('opportunity', opportunity_id)}."
            )
        return objection

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        opportunity_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        status: str | None,
    ) -> tuple[Sequence[Objection], str | None, bool]:
        await opportunity_service.get(session, workspace_id, opportunity_id)
        return await ObjectionRepository.from_session(session).list(
            opportunity_id, limit=limit, cursor=cursor, status=status
        )

    async def create(
        self,
        session: AsyncSession,
        principal: Principal,
        opportunity_id: uuid.UUID,
        payload: ObjectionCreate,
    ) -> Objection:
        # The opportunity's row lock orders objections against a concurrent win.
        opportunity = await opportunity_service.get(
            session, principal.workspace_id, opportunity_id, for_update=True
        )

        objection = Objection(
            id=ids.new_uuid(),
            workspace_id=opportunity.workspace_id,
            opportunity_id=opportunity.id,
            category=payload.category,
            text=payload.text,
            status=payload.status,
            resolution_notes=payload.resolution_notes,
            blocking=payload.blocking,
            resolved_at=utcnow() if payload.status == "resolved" else None,
            created_by=principal.actor,
        )
        session.add(objection)
        await session.flush()
        await session.refresh(objection)

        await self._emit(session, principal, objection, "objection.created")
        await opportunity_service.record_activity(
            session, opportunity.workspace_id, opportunity.id, principal.actor
        )
        log.info(
            "objection.created",
            objection_id=str(objection.id),
            opportunity_id=str(opportunity.id),
            category=objection.category,
            blocking=objection.blocking,
        )
        return objection

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        opportunity_id: uuid.UUID,
        objection_id: uuid.UUID,
        payload: ObjectionUpdate,
        *,
        if_match: str | None,
    ) -> Objection:
        """Change an objection; resolving it stamps resolved_at and emits objection.resolved."""
        await opportunity_service.get(
            session, principal.workspace_id, opportunity_id, for_update=True
        )
        objection = await self.get(
            session,
            principal.workspace_id,
            opportunity_id,
            objection_id,
            for_update=True,
        )
        check_if_match(if_match, objection.version)
        changes = {name: getattr(payload, name) for name in payload.model_fields_set}
        nulls = [
            name
            for name in _REQUIRED_ON_UPDATE
            if name in changes and changes[name] is None
        ]
        if nulls:
            raise InvalidInput(
                f"{', '.join(nulls)} cannot be null. Omit a field to keep its value.",
                errors=[
                    FieldError(name, "cannot be null", "null_not_allowed")
                    for name in nulls
                ],
            )

        previous_status = objection.status
        for field, value in changes.items():
            setattr(objection, field, value)
        if objection.status != previous_status:
            objection.resolved_at = utcnow() if objection.status == "resolved" else None
        if not session.is_modified(objection):
            return objection
        await session.flush()
        await session.refresh(objection)

        await self._emit(session, principal, objection, "objection.updated")
        if objection.status == "resolved" and previous_status != "resolved":
            await self._emit(session, principal, objection, "objection.resolved")
        await opportunity_service.record_activity(
            session, principal.workspace_id, opportunity_id, principal.actor
        )
        log.info(
            "objection.updated",
            objection_id=str(objection.id),
            fields=sorted(changes),
            status=objection.status,
        )
        return objection

    async def delete(
        self,
        session: AsyncSession,
        principal: Principal,
        opportunity_id: uuid.UUID,
        objection_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> None:
        await opportunity_service.get(
            session, principal.workspace_id, opportunity_id, for_update=True
        )
        objection = await self.get(
            session,
            principal.workspace_id,
            opportunity_id,
            objection_id,
            for_update=True,
        )
        check_if_match(if_match, objection.version)

        await self._emit(session, principal, objection, "objection.deleted")
        await ObjectionRepository.from_session(session).delete(objection.id)
        session.expunge(objection)
        log.info("objection.deleted", objection_id=str(objection.id))

    async def _emit(
        self,
        session: AsyncSession,
        principal: Principal,
        objection: Objection,
        event_type: str,
    ) -> None:
        await emit(
            session,
            workspace_id=objection.workspace_id,
            type=event_type,
            object_type="objection",
            object_id=objection.id,
            data=ObjectionSchema.model_validate(objection).model_dump(mode="json"),
            actor=principal.actor,
        )


objection_service = ObjectionService()
