from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.concurrency import check_if_match
from app.core.errors import Conflict, FieldError, InvalidInput
from app.core.events import emit
from app.leads import assignment, states
from app.leads.errors import DuplicateLead, InvalidLeadTransition, LeadNotFound
from app.leads.normalize import normalize_email
from app.leads.repository import LeadRepository
from app.leads.schemas import Lead as LeadSchema
from app.leads.schemas import LeadCreate, LeadUpdate
from app.models import Lead

log = structlog.get_logger(__name__)


def lead_data(lead: Lead) -> dict[str, Any]:
    """Serialize a lead as the API shows it, for events."""
    return LeadSchema.model_validate(lead).model_dump(mode="json")


class LeadService:
    async def create(
        self, session: AsyncSession, principal: Principal, payload: LeadCreate
    ) -> Lead:
        repository = LeadRepository.from_session(session)
        email_normalized = normalize_email(payload.email)
        await self._reject_duplicate(
            repository, principal.workspace_id, email_normalized
        )

        values: dict[str, Any] = {
            "id": ids.new_uuid(),
            "workspace_id": principal.workspace_id,
            "email_normalized": email_normalized,
            **payload.model_dump(),
        }
        decision = await assignment.initial_owner(
            session, principal, values, payload.owner_id
        )
        values["owner_id"] = decision.owner_id
        lead = await repository.insert(values)
        if lead is None:
            # A concurrent request created the same open lead after our check.
            await self._reject_duplicate(
                repository, principal.workspace_id, email_normalized
            )
            # That lead left the open statuses before this check could see it.
            raise Conflict(
                "The request conflicts with data written meanwhile. Fetch the object "
                "again and retry."
            )

        await emit(
            session,
            workspace_id=lead.workspace_id,
            type="lead.created",
            object_type="lead",
            object_id=lead.id,
            data=lead_data(lead),
            actor=principal.actor,
        )
        log.info("lead.created", lead_id=str(lead.id))
        await assignment.record_initial(session, principal, lead, decision)
        return lead

    async def _reject_duplicate(
        self, repository: LeadRepository, workspace_id: uuid.UUID, email_normalized: str
    ) -> None:
        existing = await repository.find_open_id_by_email(
            workspace_id, email_normalized
        )
        if existing is not None:
            existing_id = ids.encode("lead", existing)
            raise DuplicateLead(
                f"An open lead with this email already exists: {existing_id}. Update "
                "that lead instead.",
                existing_id=existing_id,
                matched_key="email",
            )

    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        lead_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Lead:
        lead = await LeadRepository.from_session(session).get(
            workspace_id, lead_id, for_update=for_update
        )
        if lead is None:
            raise _not_found(lead_id)
        return lead

    async def read(
        self, session: AsyncSession, workspace_id: uuid.UUID, lead_id: uuid.UUID
    ) -> Mapping[str, Any]:
        """Return one lead's columns for display; use ``get`` to change the lead."""
        lead = await LeadRepository.from_session(session).read(workspace_id, lead_id)
        if lead is None:
            raise _not_found(lead_id)
        return lead

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        status: str | None = None,
        owner_id: uuid.UUID | None = None,
        email: str | None = None,
        query: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> tuple[Sequence[Lead], str | None, bool]:
        return await LeadRepository.from_session(session).list(
            workspace_id,
            limit=limit,
            cursor=cursor,
            status=status,
            owner_id=owner_id,
            email=_lookup_email(email) if email else None,
            query=query,
            created_after=created_after,
            created_before=created_before,
        )

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        lead_id: uuid.UUID,
        payload: LeadUpdate,
        *,
        if_match: str | None,
    ) -> Lead:
        lead = await self.get(session, principal.workspace_id, lead_id, for_update=True)
        check_if_match(if_match, lead.version)

        changes = payload.model_dump(exclude_unset=True)
        if "email" in changes:
            if changes["email"] is None:
                raise _null_email()
            normalized = normalize_email(changes["email"])
            if normalized != lead.email_normalized:
                repository = LeadRepository.from_session(session)
                await self._reject_duplicate(repository, lead.workspace_id, normalized)
            lead.email_normalized = normalized
        if "attributes" in changes and changes["attributes"] is None:
            changes["attributes"] = {}
        if "owner_id" in changes:
            changes["owner_id"] = payload.owner_id
            await assignment.check_owner(session, principal, payload.owner_id)
        previous_owner_id = lead.owner_id
        new_status = changes.pop("status", None)
        previous_status = lead.status
        if new_status is not None and new_status != lead.status:
            self._check_transition(lead.status, new_status)
        for name, value in changes.items():
            setattr(lead, name, value)
        if new_status is not None:
            lead.status = new_status
        if not session.is_modified(lead):
            return lead
        await session.flush()
        await session.refresh(lead)

        await emit(
            session,
            workspace_id=lead.workspace_id,
            type="lead.updated",
            object_type="lead",
            object_id=lead.id,
            data=lead_data(lead),
            actor=principal.actor,
        )
        if lead.owner_id != previous_owner_id:
            await assignment.record_change(
                session,
                principal,
                lead,
                previous_owner_id,
                assignment.Decision(lead.owner_id),
            )
        if lead.status != previous_status:
            log.info(
                "lead.status_changed",
                lead_id=str(lead.id),
                from_status=previous_status,
                to_status=lead.status,
            )
        return lead

    @staticmethod
    def _check_transition(current: str, target: str) -> None:
        allowed = states.TRANSITIONS.get(current, ())
        if target in states.SET_BY_OPERATION or target not in allowed:
            raise InvalidLeadTransition(
                f"A {current} lead cannot move to {target}. Allowed next statuses: "
                f"{', '.join(s for s in allowed if s not in states.SET_BY_OPERATION) or 'none'}.",
                current_status=current,
                allowed_transitions=[
                    status
                    for status in allowed
                    if status not in states.SET_BY_OPERATION
                ],
            )


def _lookup_email(email: str) -> str:
    # A filter value that is not an address matches no lead, rather than failing.
    try:
        return normalize_email(email)
    except InvalidInput:
        return email.strip().lower()


def _not_found(lead_id: uuid.UUID) -> LeadNotFound:
    return LeadNotFound(
        f"No lead with id {ids.encode('lead', lead_id)} exists in this workspace."
    )


def _null_email() -> InvalidInput:
    return InvalidInput(
        "email cannot be null. Omit it to keep the current address.",
        errors=[FieldError("email", "cannot be null", "null_not_allowed")],
    )


lead_service = LeadService()
