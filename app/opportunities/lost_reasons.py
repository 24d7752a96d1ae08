"""The workspace's catalogue of lost reasons, which every lost opportunity names."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.concurrency import check_if_match
from app.core.errors import FieldError, InvalidInput
from app.core.events import emit
from app.models import LostReason
from app.opportunities.errors import DuplicateName, InUse, LostReasonNotFound
from app.opportunities.repository import LostReasonRepository
from app.opportunities.schemas import LostReason as LostReasonSchema
from app.opportunities.schemas import LostReasonCreate, LostReasonUpdate

log = structlog.get_logger(__name__)


def _duplicate(name: str) -> DuplicateName:
    return DuplicateName(
        f"A lost reason named {name!r} already exists. Use it, or choose another name.",
        errors=[FieldError("name", "already used", "duplicate")],
    )


class LostReasonService:
    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        reason_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> LostReason:
        reason = await LostReasonRepository.from_session(session).get(
            workspace_id, reason_id, for_update=for_update
        )
        if reason is None:
            raise LostReasonNotFound(
                f"No lost reason with id {ids.encode('lost_reason', reason_id)} "
                "exists in this workspace."
            )
        return reason

    async def usable(
        self, session: AsyncSession, workspace_id: uuid.UUID, reason_id: uuid.UUID
    ) -> LostReason:
        """Return an active lost reason named in a request, or raise ``InvalidInput``."""
        reason = await LostReasonRepository.from_session(session).get(
            workspace_id, reason_id
        )
        encoded = ids.encode("lost_reason", reason_id)
        if reason is None:
            raise InvalidInput(
                f"No lost reason with id {encoded} exists in this workspace. List "
                "them with GET /v1/lost-reasons or create one.",
                errors=[
                    FieldError(
                        "lost_reason_id",
                        f"no lost reason {encoded} here",
                        "lost_reason_not_found",
                    )
                ],
            )
        if not reason.active:
            raise InvalidInput(
                f"Lost reason {reason.name!r} is inactive. Choose an active reason.",
                errors=[
                    FieldError(
                        "lost_reason_id",
                        "lost reason is inactive",
                        "lost_reason_inactive",
                    )
                ],
            )
        return reason

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        active: bool | None,
    ) -> tuple[Sequence[LostReason], str | None, bool]:
        return await LostReasonRepository.from_session(session).list(
            workspace_id, limit=limit, cursor=cursor, active=active
        )

    async def create(
        self, session: AsyncSession, principal: Principal, payload: LostReasonCreate
    ) -> LostReason:
        repository = LostReasonRepository.from_session(session)
        if await repository.by_name(principal.workspace_id, payload.name) is not None:
            raise _duplicate(payload.name)

        reason = LostReason(
            id=ids.new_uuid(),
            workspace_id=principal.workspace_id,
            name=payload.name,
            description=payload.description,
            active=payload.active,
        )
        session.add(reason)
        await session.flush()
        await session.refresh(reason)

        await self._emit(session, principal, reason, "lost_reason.created")
        log.info("lost_reason.created", lost_reason_id=str(reason.id))
        return reason

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        reason_id: uuid.UUID,
        payload: LostReasonUpdate,
        *,
        if_match: str | None,
    ) -> LostReason:
        reason = await self.get(
            session, principal.workspace_id, reason_id, for_update=True
        )
        check_if_match(if_match, reason.version)
        changes = {name: getattr(payload, name) for name in payload.model_fields_set}
        nulls = [
            name
            for name in ("name", "active")
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
        name = changes.get("name")
        if name is not None and name != reason.name:
            other = await LostReasonRepository.from_session(session).by_name(
                principal.workspace_id, name
            )
            if other is not None:
                raise _duplicate(name)

        for field, value in changes.items():
            setattr(reason, field, value)
        if not session.is_modified(reason):
            return reason
        await session.flush()
        await session.refresh(reason)

        await self._emit(session, principal, reason, "lost_reason.updated")
        log.info(
            "lost_reason.updated", lost_reason_id=str(reason.id), fields=sorted(changes)
        )
        return reason

    async def delete(
        self,
        session: AsyncSession,
        principal: Principal,
        reason_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> None:
        """Delete a reason no opportunity names; a used one can only be deactivated."""
        reason = await self.get(
            session, principal.workspace_id, reason_id, for_update=True
        )
        check_if_match(if_match, reason.version)
        repository = LostReasonRepository.from_session(session)
        count = await repository.count_uses(reason.id)
        if count:
            raise InUse(
                f"{count} lost {'opportunity names' if count == 1 else 'opportunities name'}"
                f" lost reason {reason.name!r}. "
                "Deactivate it with PATCH active: false instead.",
                opportunity_count=count,
            )

        await self._emit(session, principal, reason, "lost_reason.deleted")
        await repository.delete(reason.id)
        log.info("lost_reason.deleted", lost_reason_id=str(reason.id))

    async def _emit(
        self,
        session: AsyncSession,
        principal: Principal,
        reason: LostReason,
        event_type: str,
    ) -> None:
        await emit(
            session,
            workspace_id=reason.workspace_id,
            type=event_type,
            object_type="lost_reason",
            object_id=reason.id,
            data=LostReasonSchema.model_validate(reason).model_dump(mode="json"),
            actor=principal.actor,
        )


lost_reason_service = LostReasonService()
