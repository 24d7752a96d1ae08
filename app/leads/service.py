from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.concurrency import check_if_match
from app.core.errors import Conflict, FieldError, InvalidInput, with_article
from app.core.events import emit
from app.customfields.service import check_attributes
from app.leads import assignment, states
from app.leads.attribution import record_touch
from app.leads.attribution_schemas import LeadAttribution
from app.leads.dedupe import duplicate_error
from app.leads.errors import InvalidLeadTransition, LeadErased, LeadNotFound
from app.leads.identity import IdentityKeys, create_values, keys_of
from app.leads.listing import DEFAULT_SORT, listing_filters
from app.leads.normalize import normalize_email
from app.leads.repository import LeadRepository
from app.leads.schemas import LeadCreate, LeadUpdate
from app.leads.scoring import lead_scoring
from app.leads.serialize import lead_data as lead_data
from app.leads.status import apply_status
from app.leads.survivorship import merge_capture
from app.leads.updates import apply_identity_changes
from app.models import Lead
from app.models.lead import OPEN_LEAD_STATUSES

log = structlog.get_logger(__name__)

# Fields an erased lead may still change, because none of them describes the person.
KEPT_AFTER_ERASURE = frozenset({"status", "status_reason", "owner_id"})


@dataclass(frozen=True)
class CreateOutcome:
    """The lead a create returned, and whether the create inserted it."""

    lead: Lead
    created: bool


class LeadService:
    async def create(
        self,
        session: AsyncSession,
        principal: Principal,
        payload: LeadCreate,
        *,
        default_phone_region: str | None = None,
    ) -> Lead:
        outcome = await self.create_or_merge(
            session, principal, payload, default_phone_region=default_phone_region
        )
        return outcome.lead

    async def create_or_merge(
        self,
        session: AsyncSession,
        principal: Principal,
        payload: LeadCreate,
        *,
        default_phone_region: str | None = None,
    ) -> CreateOutcome:
        """Insert a lead, or merge it into the open lead with its email when asked."""
        repository = LeadRepository.from_session(session)
        values = create_values(payload, default_phone_region)
        workspace_id = principal.workspace_id
        existing = await repository.find_open_id_by_email(
            workspace_id, values["email_normalized"]
        )

        if existing is None:
            lead = await self.insert_new(
                session, principal, values, attribution=payload.attribution
            )
            if lead is not None:
                return CreateOutcome(lead, created=True)
            # A concurrent request created the same open lead after our check.
            existing = await repository.find_open_id_by_email(
                workspace_id, values["email_normalized"]
            )
            if existing is None:
                # That lead left the open statuses before this check could see it.
                raise Conflict(
                    "The request conflicts with data written meanwhile. Fetch the "
                    "object again and retry."
                )

        if payload.on_duplicate == "merge":
            await check_attributes(session, workspace_id, "lead", payload.attributes)
            lead = await merge_capture(
                session, principal, existing, values, attribution=payload.attribution
            )
            return CreateOutcome(lead, created=False)
        raise await duplicate_error(session, workspace_id, keys_of(values), existing)

    async def insert_new(
        self,
        session: AsyncSession,
        principal: Principal,
        values: dict[str, Any],
        *,
        attribution: LeadAttribution | None = None,
    ) -> Lead | None:
        """Insert a lead from column values and emit ``lead.created``.

        Return None, and change nothing, when an open lead has the same email.
        """
        repository = LeadRepository.from_session(session)
        await check_attributes(
            session, principal.workspace_id, "lead", values.get("attributes")
        )
        values = {
            "id": ids.new_uuid(),
            "workspace_id": principal.workspace_id,
            **values,
        }
        # Rules read the campaign of the capture's attribution or form.
        campaign_id = attribution.campaign_id if attribution is not None else None
        decision = await assignment.initial_owner(
            session,
            principal,
            {
                **values,
                "campaign_id": ids.encode("campaign", campaign_id)
                if campaign_id is not None
                else None,
            },
            values.get("owner_id"),
        )
        values["owner_id"] = decision.owner_id
        lead = await repository.insert(values)
        if lead is None:
            return None
        await record_touch(session, lead, channel=lead.source, attribution=attribution)

        await emit(
            session,
            workspace_id=lead.workspace_id,
            type="lead.created",
            object_type="lead",
            object_id=lead.id,
            data=lead_data(lead),
            actor=principal.actor,
        )
        await lead_scoring.score_lead(session, lead, principal.actor)
        log.info("lead.created", lead_id=str(lead.id))
        await assignment.record_initial(session, principal, lead, decision)
        return lead

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
        status: Sequence[str] | None = None,
        owner_id: uuid.UUID | None = None,
        email: str | None = None,
        query: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        campaign_id: uuid.UUID | None = None,
        partner_id: uuid.UUID | None = None,
        sources: Sequence[str] | None = None,
        score_min: int | None = None,
        score_max: int | None = None,
        tags: Sequence[str] | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        attribute_filters: Sequence[str] | None = None,
        sort: str = DEFAULT_SORT,
    ) -> tuple[Sequence[Lead], str | None, bool]:
        filters = await listing_filters(
            session, workspace_id, score_min, score_max, attribute_filters
        )
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
            campaign_id=campaign_id,
            partner_id=partner_id,
            sources=sources,
            score_min=score_min,
            score_max=score_max,
            tags=[tag.lower() for tag in tags or ()],
            updated_after=updated_after,
            updated_before=updated_before,
            attribute_filters=filters,
            sort=sort,
        )

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        lead_id: uuid.UUID,
        payload: LeadUpdate,
        *,
        if_match: str | None,
        default_phone_region: str | None = None,
    ) -> Lead:
        lead = await self.get(session, principal.workspace_id, lead_id, for_update=True)
        check_if_match(if_match, lead.version)

        changes = payload.model_dump(exclude_unset=True)
        if lead.erased_at is not None and set(changes) - KEPT_AFTER_ERASURE:
            raise LeadErased(
                f"Lead {ids.encode('lead', lead.id)} was erased, so it takes no new "
                "personal data. Change only its status or owner, or create a "
                "new lead.",
                erased_at=lead.erased_at.isoformat().replace("+00:00", "Z"),
            )
        if "email" in changes and changes["email"] is None:
            raise _null_email()
        if "attributes" in changes and changes["attributes"] is None:
            changes["attributes"] = {}
        if "tags" in changes and changes["tags"] is None:
            changes["tags"] = []
        await check_attributes(
            session, lead.workspace_id, "lead", changes.get("attributes")
        )
        if "owner_id" in changes:
            changes["owner_id"] = payload.owner_id
            await assignment.check_owner(session, principal, payload.owner_id)
        previous_owner_id = lead.owner_id
        new_status = changes.pop("status", None)
        status_reason = changes.pop("status_reason", None)
        previous_status = lead.status
        if new_status is not None and new_status != lead.status:
            self._check_transition(lead.status, new_status)
        await apply_identity_changes(session, lead, changes, default_phone_region)
        for name, value in changes.items():
            setattr(lead, name, value)
        apply_status(lead, new_status, status_reason)
        if lead.status in OPEN_LEAD_STATUSES and previous_status not in (
            OPEN_LEAD_STATUSES
        ):
            await self._reject_reopened_duplicate(session, lead)
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
        await lead_scoring.score_lead(session, lead, principal.actor)
        if lead.status != previous_status:
            # Imported here because app.nurture imports this module.
            from app.nurture.exits import exit_for_status

            await exit_for_status(session, lead, principal.actor)
            log.info(
                "lead.status_changed",
                lead_id=str(lead.id),
                from_status=previous_status,
                to_status=lead.status,
            )
        return lead

    @staticmethod
    async def _reject_reopened_duplicate(session: AsyncSession, lead: Lead) -> None:
        # A reopened lead joins the open leads, where its email must be unique.
        with session.no_autoflush:
            existing = await LeadRepository.from_session(session).find_open_id_by_email(
                lead.workspace_id, lead.email_normalized
            )
            if existing is not None and existing != lead.id:
                raise await duplicate_error(
                    session,
                    lead.workspace_id,
                    IdentityKeys(
                        lead.email_normalized,
                        lead.phone_normalized,
                        lead.company_domain,
                    ),
                    existing,
                    exclude_id=lead.id,
                )

    @staticmethod
    def _check_transition(current: str, target: str) -> None:
        allowed = states.TRANSITIONS.get(current, ())
        if target in states.SET_BY_OPERATION or target not in allowed:
            raise InvalidLeadTransition(
                f"{with_article(current).capitalize()} lead cannot move to {target}. Allowed next statuses: "
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
