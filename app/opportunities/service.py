"""Opportunities: create, update, move through stages, win, lose, reopen.

Every entry into a stage goes through ``_enter_stage``: it checks the stage's required
fields and, for the won stage, the blocking objections, then appends one stage
transition and emits the events in the same transaction. The opportunity's row lock
serializes concurrent moves, and the unique key on the transition's
``(opportunity_id, opportunity_version)`` rejects any second move from one version.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.concurrency import check_if_match
from app.core.errors import FieldError, InvalidInput, with_article
from app.core.events import emit
from app.customers.errors import ContactNotFound, CustomerNotFound
from app.customers.service import contact_service, customer_service
from app.models import Customer, LostReason, Opportunity, Stage, StageTransition
from app.nurture.exits import exit_for_customer, exit_lead
from app.opportunities import states
from app.opportunities.errors import (
    AmountLocked,
    BlockingObjectionsOpen,
    InvalidOpportunityTransition,
    OpportunityNotFound,
    StageRequirementsMissing,
)
from app.opportunities.line_item_guard import check_amount_settable
from app.opportunities.listing import (
    OpportunityFilters,
    check_ranges,
    filtered,
    paginate_opportunities,
)
from app.opportunities.lost_reasons import lost_reason_service
from app.opportunities.pipelines import is_open, pipeline_service
from app.opportunities.repository import ObjectionRepository, OpportunityRepository
from app.opportunities.schemas import Opportunity as OpportunitySchema
from app.opportunities.schemas import (
    OpportunityCreate,
    OpportunityLose,
    OpportunityMove,
    OpportunityReopen,
    OpportunityUpdate,
)
from app.users.service import user_service

log = structlog.get_logger(__name__)

# PATCH may clear contact_id, expected_close_date, owner_id and probability with null.
_REQUIRED_ON_UPDATE = ("name", "amount", "currency", "competitors")


def opportunity_data(opportunity: Opportunity) -> dict[str, Any]:
    """Serialize an opportunity as the API shows it, for events."""
    return OpportunitySchema.model_validate(opportunity).model_dump(mode="json")


def missing_fields(opportunity: Opportunity, stage: Stage) -> list[str]:
    """List the fields ``stage`` requires that the opportunity lacks, in stage order."""
    missing = []
    for field in stage.required_fields:
        value = getattr(opportunity, field)
        if value is None or (field == "amount" and value == 0) or value == []:
            missing.append(field)
    return missing


class OpportunityService:
    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        opportunity_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Opportunity:
        opportunity = await OpportunityRepository.from_session(session).get(
            workspace_id, opportunity_id, for_update=for_update
        )
        if opportunity is None:
            raise OpportunityNotFound(
                f"No opportunity with id {ids.encode('opportunity', opportunity_id)} "
                "exists in this workspace."
            )
        return opportunity

    async def create(
        self,
        session: AsyncSession,
        principal: Principal,
        payload: OpportunityCreate,
        *,
        lead_id: uuid.UUID | None = None,
    ) -> Opportunity:
        """Open an opportunity in an open stage and record its first transition."""
        workspace_id = principal.workspace_id
        customer = await _referenced_customer(
            session, workspace_id, payload.customer_id
        )
        if payload.contact_id is not None:
            await _check_contact(session, customer, payload.contact_id)
        owner_id = payload.owner_id
        if owner_id is not None:
            await user_service.require_active(
                session, workspace_id, owner_id, "owner_id"
            )
        else:
            owner_id = await user_service.acting_user(session, principal)
        stage = await self._initial_stage(session, workspace_id, payload)

        now = utcnow()
        opportunity = Opportunity(
            id=ids.new_uuid(),
            workspace_id=workspace_id,
            name=payload.name,
            customer_id=customer.id,
            contact_id=payload.contact_id,
            lead_id=lead_id,
            pipeline_id=stage.pipeline_id,
            stage_id=stage.id,
            status=states.INITIAL,
            amount=payload.amount,
            currency=payload.currency or customer.currency,
            expected_close_date=payload.expected_close_date,
            owner_id=owner_id,
            probability_override=payload.probability,
            competitors=list(payload.competitors),
            stage_entered_at=now,
            last_activity_at=now,
        )
        _check_requirements(opportunity, stage)
        session.add(opportunity)
        await session.flush()
        session.add(
            _transition(opportunity, None, stage, principal, now, from_version=0)
        )
        await session.flush()
        await session.refresh(opportunity)

        await emit(
            session,
            workspace_id=workspace_id,
            type="opportunity.created",
            object_type="opportunity",
            object_id=opportunity.id,
            data=opportunity_data(opportunity),
            actor=principal.actor,
        )
        # An opportunity names its lead only when a conversion creates it. A later
        # one for the customer is an opportunity for each lead converted into it.
        if lead_id is not None:
            await exit_lead(
                session, workspace_id, lead_id, "opportunity_created", principal.actor
            )
        else:
            await exit_for_customer(
                session,
                workspace_id,
                customer.id,
                "opportunity_created",
                principal.actor,
            )
        log.info(
            "opportunity.created",
            opportunity_id=str(opportunity.id),
            customer_id=str(customer.id),
            stage_id=str(stage.id),
        )
        return opportunity

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        filters: OpportunityFilters,
        *,
        sort: str,
        limit: int,
        cursor: str | None,
    ) -> tuple[Sequence[Opportunity], str | None, bool]:
        check_ranges(filters)
        return await paginate_opportunities(
            session,
            filtered(workspace_id, filters),
            sort=sort,
            limit=limit,
            cursor=cursor,
        )

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        opportunity_id: uuid.UUID,
        payload: OpportunityUpdate,
        *,
        if_match: str | None,
    ) -> Opportunity:
        """Change fields other than the stage, which only moves change."""
        opportunity = await self.get(
            session, principal.workspace_id, opportunity_id, for_update=True
        )
        check_if_match(if_match, opportunity.version)

        # Attributes, not model_dump(), which would render ids as prefixed strings.
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
        _check_amount_open(opportunity, changes)
        await check_amount_settable(session, opportunity, changes)
        if changes.get("contact_id") is not None:
            customer = await customer_service.get(
                session, opportunity.workspace_id, opportunity.customer_id
            )
            await _check_contact(session, customer, changes["contact_id"])
        if changes.get("owner_id") is not None:
            await user_service.require_active(
                session, opportunity.workspace_id, changes["owner_id"], "owner_id"
            )
        if "probability" in changes:
            changes["probability_override"] = changes.pop("probability")
        if "competitors" in changes:
            changes["competitors"] = list(changes["competitors"])

        for name, value in changes.items():
            setattr(opportunity, name, value)
        if not session.is_modified(opportunity):
            return opportunity
        _mark_active(opportunity)
        await session.flush()
        await session.refresh(opportunity)

        await self._emit(session, principal, opportunity, "opportunity.updated")
        log.info(
            "opportunity.updated",
            opportunity_id=str(opportunity.id),
            fields=sorted(changes),
        )
        return opportunity

    async def move(
        self,
        session: AsyncSession,
        principal: Principal,
        opportunity_id: uuid.UUID,
        payload: OpportunityMove,
        *,
        if_match: str | None,
    ) -> Opportunity:
        """Move an open opportunity to any stage of its pipeline, skipping allowed.

        A won stage closes it as won, a lost stage with a lost reason as lost. Moving
        to the stage it is already in changes nothing and emits nothing.
        """
        opportunity = await self._locked_open(
            session, principal, opportunity_id, if_match
        )
        target = await self._stage_of_pipeline(session, opportunity, payload.stage_id)
        if not target.is_lost:
            extra = [
                name
                for name in ("lost_reason_id", "lost_note")
                if getattr(payload, name) is not None
            ]
            if extra:
                raise InvalidInput(
                    f"{', '.join(extra)} apply only to a lost stage, and "
                    f"{target.name!r} is not one. Remove them.",
                    errors=[
                        FieldError(
                            name, "accepted only with a lost stage", "not_allowed"
                        )
                        for name in extra
                    ],
                )
        reason = None
        if target.is_lost:
            if payload.lost_reason_id is None:
                raise InvalidInput(
                    f"Moving to the lost stage {target.name!r} needs a lost_reason_id "
                    "from GET /v1/lost-reasons.",
                    errors=[
                        FieldError(
                            "lost_reason_id",
                            "required when moving to a lost stage",
                            "lost_reason_required",
                        )
                    ],
                )
            reason = await lost_reason_service.usable(
                session, opportunity.workspace_id, payload.lost_reason_id
            )
        if target.id == opportunity.stage_id:
            return opportunity

        return await self._enter_stage(
            session,
            principal,
            opportunity,
            target,
            lost_reason=reason,
            lost_note=payload.lost_note,
        )

    async def win(
        self,
        session: AsyncSession,
        principal: Principal,
        opportunity_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> Opportunity:
        """Close an open opportunity as won by moving it to its pipeline's won stage."""
        opportunity = await self._locked_open(
            session, principal, opportunity_id, if_match
        )
        stages = await pipeline_service.stages(session, opportunity.pipeline_id)
        target = next(stage for stage in stages if stage.is_won)
        return await self._enter_stage(session, principal, opportunity, target)

    async def lose(
        self,
        session: AsyncSession,
        principal: Principal,
        opportunity_id: uuid.UUID,
        payload: OpportunityLose,
        *,
        if_match: str | None,
    ) -> Opportunity:
        """Close an open opportunity as lost, with a reason from the catalogue."""
        opportunity = await self._locked_open(
            session, principal, opportunity_id, if_match
        )
        if payload.stage_id is not None:
            target = await self._stage_of_pipeline(
                session, opportunity, payload.stage_id
            )
            if not target.is_lost:
                raise InvalidInput(
                    f"{target.name!r} is not a lost stage. Send a lost stage of the "
                    "pipeline, or omit stage_id for the first one.",
                    errors=[
                        FieldError("stage_id", "must be a lost stage", "stage_not_lost")
                    ],
                )
        else:
            stages = await pipeline_service.stages(session, opportunity.pipeline_id)
            target = next(stage for stage in stages if stage.is_lost)
        reason = await lost_reason_service.usable(
            session, opportunity.workspace_id, payload.lost_reason_id
        )
        return await self._enter_stage(
            session,
            principal,
            opportunity,
            target,
            lost_reason=reason,
            lost_note=payload.lost_note,
        )

    async def reopen(
        self,
        session: AsyncSession,
        principal: Principal,
        opportunity_id: uuid.UUID,
        payload: OpportunityReopen,
        *,
        if_match: str | None,
    ) -> Opportunity:
        """Move a won or lost opportunity back to an open stage, with the reason audited."""
        opportunity = await self.get(
            session, principal.workspace_id, opportunity_id, for_update=True
        )
        check_if_match(if_match, opportunity.version)
        if opportunity.status == "open":
            raise InvalidOpportunityTransition(
                "The opportunity is already open. Move it with POST "
                f"/v1/opportunities/{ids.encode('opportunity', opportunity.id)}/move.",
                current_status=opportunity.status,
                allowed_transitions=list(states.TRANSITIONS[opportunity.status]),
            )
        await pipeline_service.enter(
            session, opportunity.workspace_id, opportunity.pipeline_id
        )
        if payload.stage_id is not None:
            target = await self._stage_of_pipeline(
                session, opportunity, payload.stage_id
            )
            if not is_open(target):
                raise InvalidInput(
                    f"{target.name!r} is a closed stage. Reopen into an open stage.",
                    errors=[
                        FieldError(
                            "stage_id", "must be an open stage", "stage_not_open"
                        )
                    ],
                )
        else:
            target = await self._stage_before_close(session, opportunity)

        return await self._enter_stage(
            session, principal, opportunity, target, reason=payload.reason
        )

    async def transitions(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        opportunity_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
    ) -> tuple[Sequence[StageTransition], str | None, bool]:
        """List an opportunity's stage transitions, newest first."""
        await self.get(session, workspace_id, opportunity_id)
        return await OpportunityRepository.from_session(session).list_transitions(
            workspace_id, opportunity_id, limit=limit, cursor=cursor
        )

    async def record_activity(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        opportunity_id: uuid.UUID,
        actor: str | None,
    ) -> None:
        """Note an activity on the opportunity now, ending a rotting spell.

        Only clearing the rotting flag emits an event (``opportunity.updated``); the
        version never moves, so a client's If-Match stays valid.
        """
        repository = OpportunityRepository.from_session(session)
        was_rotting = await repository.record_activity(opportunity_id)
        if not was_rotting:
            return
        opportunity = await self.get(session, workspace_id, opportunity_id)
        await session.refresh(opportunity)
        await emit(
            session,
            workspace_id=workspace_id,
            type="opportunity.updated",
            object_type="opportunity",
            object_id=opportunity.id,
            data=opportunity_data(opportunity),
            actor=actor,
        )
        log.info("opportunity.rotting_cleared", opportunity_id=str(opportunity.id))

    async def sweep_rotting(self, session: AsyncSession, *, batch: int) -> int:
        """Flag opportunities that started rotting and emit opportunity.rotting once each."""
        repository = OpportunityRepository.from_session(session)
        claimed = await repository.claim_rotting(batch)
        for opportunity in await repository.get_many(claimed):
            await emit(
                session,
                workspace_id=opportunity.workspace_id,
                type="opportunity.rotting",
                object_type="opportunity",
                object_id=opportunity.id,
                data=opportunity_data(opportunity),
            )
        if claimed:
            log.info("opportunity.rotting_swept", count=len(claimed))
        return len(claimed)

    async def _initial_stage(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        payload: OpportunityCreate,
    ) -> Stage:
        """Share-lock the new opportunity's pipeline, then return its open stage."""
        if payload.stage_id is not None:
            requested = await pipeline_service.get_stage_for_field(
                session, workspace_id, payload.stage_id
            )
            await pipeline_service.enter(session, workspace_id, requested.pipeline_id)
            # Read again under the lock, because a stage edit or delete that committed
            # while this request waited for it may have changed the row.
            stage = await pipeline_service.get_stage_for_field(
                session, workspace_id, payload.stage_id
            )
            if not is_open(stage):
                raise _closed_stage_on_create(stage)
            return stage
        if payload.pipeline_id is not None:
            pipeline = await pipeline_service.get_for_field(
                session, workspace_id, payload.pipeline_id
            )
        else:
            pipeline = await pipeline_service.get_default(session, workspace_id)
        await pipeline_service.enter(session, workspace_id, pipeline.id)
        return await pipeline_service.first_open_stage(session, pipeline.id)

    async def _locked_open(
        self,
        session: AsyncSession,
        principal: Principal,
        opportunity_id: uuid.UUID,
        if_match: str | None,
    ) -> Opportunity:
        opportunity = await self.get(
            session, principal.workspace_id, opportunity_id, for_update=True
        )
        check_if_match(if_match, opportunity.version)
        if opportunity.status != "open":
            raise _closed_opportunity(opportunity)
        await pipeline_service.enter(
            session, opportunity.workspace_id, opportunity.pipeline_id
        )
        return opportunity

    async def _enter_stage(
        self,
        session: AsyncSession,
        principal: Principal,
        opportunity: Opportunity,
        target: Stage,
        *,
        lost_reason: LostReason | None = None,
        lost_note: str | None = None,
        reason: str | None = None,
    ) -> Opportunity:
        """Move a locked opportunity into ``target``, record it and emit its events.

        The caller share-locked the pipeline before it read ``target``. A stage edit
        locks the pipeline for update, so ``target`` cannot change until this commits.
        """
        _check_requirements(opportunity, target)
        if target.is_won:
            blocking = await ObjectionRepository.from_session(
                session
            ).open_blocking_ids(opportunity.id)
            if blocking:
                encoded = [ids.encode("objection", objection) for objection in blocking]
                raise BlockingObjectionsOpen(
                    f"Blocking objections are open: {', '.join(encoded)}. Resolve "
                    "them, or mark them not blocking, before winning.",
                    objection_ids=encoded,
                )

        now = utcnow()
        from_stage_id = opportunity.stage_id
        from_status = opportunity.status
        session.add(
            _transition(
                opportunity,
                from_stage_id,
                target,
                principal,
                now,
                from_version=opportunity.version,
                from_status=from_status,
                seconds=int((now - opportunity.stage_entered_at).total_seconds()),
                reason=reason,
            )
        )
        opportunity.stage_id = target.id
        opportunity.status = _status_of(target)
        opportunity.stage_entered_at = now
        opportunity.won_at = now if target.is_won else None
        opportunity.lost_at = now if target.is_lost else None
        opportunity.lost_reason_id = lost_reason.id if lost_reason else None
        opportunity.lost_note = lost_note if target.is_lost else None
        _mark_active(opportunity, now)
        await session.flush()
        await session.refresh(opportunity)

        await self._emit(session, principal, opportunity, "opportunity.stage_changed")
        if opportunity.status != from_status:
            outcome = "reopened" if opportunity.status == "open" else opportunity.status
            await self._emit(session, principal, opportunity, f"opportunity.{outcome}")
        log.info(
            "opportunity.stage_changed",
            opportunity_id=str(opportunity.id),
            from_stage_id=str(from_stage_id),
            to_stage_id=str(target.id),
            from_status=from_status,
            status=opportunity.status,
        )
        return opportunity

    async def _stage_of_pipeline(
        self, session: AsyncSession, opportunity: Opportunity, stage_id: uuid.UUID
    ) -> Stage:
        stage = await pipeline_service.get_stage_for_field(
            session, opportunity.workspace_id, stage_id
        )
        if stage.pipeline_id != opportunity.pipeline_id:
            pipeline = ids.encode("pipeline", opportunity.pipeline_id)
            raise InvalidInput(
                f"Stage {ids.encode('stage', stage.id)} belongs to another pipeline. "
                f"Choose a stage of {pipeline}, the opportunity's pipeline.",
                errors=[
                    FieldError(
                        "stage_id",
                        f"not a stage of pipeline {pipeline}",
                        "stage_not_in_pipeline",
                    )
                ],
            )
        return stage

    async def _stage_before_close(
        self, session: AsyncSession, opportunity: Opportunity
    ) -> Stage:
        """Return the open stage it left when it closed, or the first open stage."""
        closing = await OpportunityRepository.from_session(
            session
        ).last_transition_into(opportunity.id, opportunity.stage_id)
        stages = await pipeline_service.stages(session, opportunity.pipeline_id)
        if closing is not None and closing.from_stage_id is not None:
            for stage in stages:
                if stage.id == closing.from_stage_id and is_open(stage):
                    return stage
        return await pipeline_service.first_open_stage(session, opportunity.pipeline_id)

    async def _emit(
        self,
        session: AsyncSession,
        principal: Principal,
        opportunity: Opportunity,
        event_type: str,
    ) -> None:
        await emit(
            session,
            workspace_id=opportunity.workspace_id,
            type=event_type,
            object_type="opportunity",
            object_id=opportunity.id,
            data=opportunity_data(opportunity),
            actor=principal.actor,
        )


def _status_of(stage: Stage) -> str:
    if stage.is_won:
        return "won"
    if stage.is_lost:
        return "lost"
    return "open"


def _mark_active(opportunity: Opportunity, at: datetime | None = None) -> None:
    """Restart the rotting clock: an update or stage change counts as activity."""
    opportunity.last_activity_at = at or utcnow()
    opportunity.rotting = False
    opportunity.rotting_since = None


def _check_requirements(opportunity: Opportunity, stage: Stage) -> None:
    missing = missing_fields(opportunity, stage)
    if missing:
        raise StageRequirementsMissing(
            f"Stage {stage.name!r} requires {', '.join(missing)}. Send them when "
            "creating the opportunity, or set them with PATCH before moving it.",
            stage_id=ids.encode("stage", stage.id),
            missing_fields=missing,
        )


def _transition(
    opportunity: Opportunity,
    from_stage_id: uuid.UUID | None,
    to_stage: Stage,
    principal: Principal,
    at: datetime,
    *,
    from_version: int,
    from_status: str | None = None,
    seconds: int | None = None,
    reason: str | None = None,
) -> StageTransition:
    return StageTransition(
        id=ids.new_uuid(),
        workspace_id=opportunity.workspace_id,
        opportunity_id=opportunity.id,
        from_stage_id=from_stage_id,
        to_stage_id=to_stage.id,
        at=at,
        actor=principal.actor,
        opportunity_version=from_version,
        from_status=from_status,
        to_status=_status_of(to_stage),
        seconds_in_previous_stage=max(seconds, 0) if seconds is not None else None,
        reason=reason,
    )


async def _referenced_customer(
    session: AsyncSession, workspace_id: uuid.UUID, customer_id: uuid.UUID
) -> Customer:
    try:
        return await customer_service.get(session, workspace_id, customer_id)
    except CustomerNotFound as error:
        encoded = ids.encode("customer", customer_id)
        raise InvalidInput(
            f"No customer with id {encoded} exists in this workspace. Create the "
            "customer first, or check the id.",
            errors=[
                FieldError(
                    "customer_id", f"no customer {encoded} here", "customer_not_found"
                )
            ],
        ) from error


async def _check_contact(
    session: AsyncSession, customer: Customer, contact_id: uuid.UUID
) -> None:
    encoded = ids.encode("contact", contact_id)
    try:
        contact = await contact_service.get(session, customer.workspace_id, contact_id)
    except ContactNotFound as error:
        raise InvalidInput(
            f"No contact with id {encoded} exists in this workspace.",
            errors=[
                FieldError(
                    "contact_id", f"no contact {encoded} here", "contact_not_found"
                )
            ],
        ) from error
    if contact.customer_id != customer.id:
        customer_id = ids.encode("customer", customer.id)
        raise InvalidInput(
            f"Contact {encoded} belongs to another customer. Choose a contact of "
            f"{customer_id}.",
            errors=[
                FieldError(
                    "contact_id",
                    f"not a contact of customer {customer_id}",
                    "contact_customer_mismatch",
                )
            ],
        )


def _check_amount_open(opportunity: Opportunity, changes: dict[str, Any]) -> None:
    """Raise ``AmountLocked`` when a PATCH changes the amount or currency of a won or
    lost opportunity, whose line items are locked the same way until it is reopened."""
    if opportunity.status == "open":
        return
    changed = [
        name
        for name in ("amount", "currency")
        if name in changes and changes[name] != getattr(opportunity, name)
    ]
    if not changed:
        return
    encoded = ids.encode("opportunity", opportunity.id)
    raise AmountLocked(
        f"Opportunity {encoded} is {opportunity.status}, so its "
        f"{' and '.join(changed)} cannot change. Reopen it first with POST "
        f"/v1/opportunities/{encoded}/reopen.",
        current_status=opportunity.status,
        fields=changed,
    )


def _closed_stage_on_create(stage: Stage) -> InvalidInput:
    return InvalidInput(
        f"{stage.name!r} is a closed stage. Create the opportunity in an open stage, "
        "then move it.",
        errors=[FieldError("stage_id", "must be an open stage", "stage_not_open")],
    )


def _closed_opportunity(opportunity: Opportunity) -> InvalidOpportunityTransition:
    encoded = ids.encode("opportunity", opportunity.id)
    return InvalidOpportunityTransition(
        f"{with_article(opportunity.status).capitalize()} opportunity cannot change "
        f"stage. Reopen it first with POST /v1/opportunities/{encoded}/reopen.",
        current_status=opportunity.status,
        allowed_transitions=list(states.TRANSITIONS[opportunity.status]),
    )


opportunity_service = OpportunityService()
