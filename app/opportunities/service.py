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
from app.models import Customer, Opportunity, Stage, StageTransition
from app.nurture.exits import exit_for_customer, exit_lead
from app.opportunities import states
from app.opportunities.errors import InvalidOpportunityTransition, OpportunityNotFound
from app.opportunities.line_item_guard import check_amount_settable
from app.opportunities.pipelines import is_open, pipeline_service
from app.opportunities.repository import OpportunityRepository
from app.opportunities.schemas import Opportunity as OpportunitySchema
from app.opportunities.schemas import (
    OpportunityCreate,
    OpportunityMove,
    OpportunityReopen,
    OpportunityUpdate,
)

log = structlog.get_logger(__name__)

# PATCH may clear contact_id, expected_close_date and owner_id with null.
_REQUIRED_ON_UPDATE = ("name", "amount", "currency")


def opportunity_data(opportunity: Opportunity) -> dict[str, Any]:
    """Serialize an opportunity as the API shows it, for events."""
    return OpportunitySchema.model_validate(opportunity).model_dump(mode="json")


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
        if payload.stage_id is not None:
            stage = await pipeline_service.get_stage_for_field(
                session, workspace_id, payload.stage_id
            )
            if not is_open(stage):
                raise _closed_stage_on_create(stage)
        else:
            pipeline = await pipeline_service.get_default(session, workspace_id)
            stage = await pipeline_service.first_open_stage(session, pipeline.id)

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
            owner_id=payload.owner_id or principal.on_behalf_of,
        )
        session.add(opportunity)
        await session.flush()
        session.add(_transition(opportunity, None, stage.id, principal))
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
        *,
        limit: int,
        cursor: str | None,
        status: str | None = None,
        pipeline_id: uuid.UUID | None = None,
        stage_id: uuid.UUID | None = None,
        customer_id: uuid.UUID | None = None,
        owner_id: str | None = None,
    ) -> tuple[Sequence[Opportunity], str | None, bool]:
        return await OpportunityRepository.from_session(session).list(
            workspace_id,
            limit=limit,
            cursor=cursor,
            status=status,
            pipeline_id=pipeline_id,
            stage_id=stage_id,
            customer_id=customer_id,
            owner_id=owner_id,
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
        """Change fields other than the stage, which only ``move`` changes."""
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
        await check_amount_settable(session, opportunity, changes)
        if changes.get("contact_id") is not None:
            customer = await customer_service.get(
                session, opportunity.workspace_id, opportunity.customer_id
            )
            await _check_contact(session, customer, changes["contact_id"])
        for name, value in changes.items():
            setattr(opportunity, name, value)
        if not session.is_modified(opportunity):
            return opportunity
        await session.flush()
        await session.refresh(opportunity)

        await emit(
            session,
            workspace_id=opportunity.workspace_id,
            type="opportunity.updated",
            object_type="opportunity",
            object_id=opportunity.id,
            data=opportunity_data(opportunity),
            actor=principal.actor,
        )
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
        """Move an open opportunity to another stage of its pipeline.

        The won stage closes it as won and the lost stage, with a reason, as lost.
        Moving to the stage it is already in changes nothing and emits nothing.
        """
        opportunity = await self.get(
            session, principal.workspace_id, opportunity_id, for_update=True
        )
        check_if_match(if_match, opportunity.version)
        if opportunity.status != "open":
            raise _closed_opportunity(opportunity)
        target = await self._stage_of_pipeline(session, opportunity, payload.stage_id)
        if target.is_lost and payload.lost_reason is None:
            raise InvalidInput(
                f"Moving to the lost stage {target.name!r} needs a lost_reason. Say "
                "why the deal was lost.",
                errors=[
                    FieldError(
                        "lost_reason",
                        "required when moving to the lost stage",
                        "lost_reason_required",
                    )
                ],
            )
        if not target.is_lost and payload.lost_reason is not None:
            raise InvalidInput(
                f"lost_reason applies only to the lost stage, and {target.name!r} is "
                "not it. Remove lost_reason.",
                errors=[
                    FieldError(
                        "lost_reason",
                        "accepted only when moving to the lost stage",
                        "lost_reason_not_allowed",
                    )
                ],
            )
        if target.id == opportunity.stage_id:
            return opportunity

        from_stage_id = opportunity.stage_id
        now = utcnow()
        opportunity.stage_id = target.id
        if target.is_won:
            opportunity.status = "won"
            opportunity.won_at = now
        elif target.is_lost:
            opportunity.status = "lost"
            opportunity.lost_at = now
            opportunity.lost_reason = payload.lost_reason
        session.add(_transition(opportunity, from_stage_id, target.id, principal, now))
        await session.flush()
        await session.refresh(opportunity)

        await self._emit_stage_change(session, opportunity, principal)
        if opportunity.status != "open":
            await emit(
                session,
                workspace_id=opportunity.workspace_id,
                type=f"opportunity.{opportunity.status}",
                object_type="opportunity",
                object_id=opportunity.id,
                data=opportunity_data(opportunity),
                actor=principal.actor,
            )
        log.info(
            "opportunity.stage_changed",
            opportunity_id=str(opportunity.id),
            from_stage_id=str(from_stage_id),
            to_stage_id=str(target.id),
            status=opportunity.status,
        )
        return opportunity

    async def reopen(
        self,
        session: AsyncSession,
        principal: Principal,
        opportunity_id: uuid.UUID,
        payload: OpportunityReopen,
        *,
        if_match: str | None,
    ) -> Opportunity:
        """Move a won or lost opportunity back to an open stage of its pipeline."""
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

        from_stage_id = opportunity.stage_id
        previous_status = opportunity.status
        opportunity.stage_id = target.id
        opportunity.status = "open"
        opportunity.won_at = None
        opportunity.lost_at = None
        opportunity.lost_reason = None
        session.add(_transition(opportunity, from_stage_id, target.id, principal))
        await session.flush()
        await session.refresh(opportunity)

        await self._emit_stage_change(session, opportunity, principal)
        await emit(
            session,
            workspace_id=opportunity.workspace_id,
            type="opportunity.reopened",
            object_type="opportunity",
            object_id=opportunity.id,
            data=opportunity_data(opportunity),
            actor=principal.actor,
        )
        log.info(
            "opportunity.reopened",
            opportunity_id=str(opportunity.id),
            from_status=previous_status,
            to_stage_id=str(target.id),
        )
        return opportunity

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

    async def _emit_stage_change(
        self, session: AsyncSession, opportunity: Opportunity, principal: Principal
    ) -> None:
        await emit(
            session,
            workspace_id=opportunity.workspace_id,
            type="opportunity.stage_changed",
            object_type="opportunity",
            object_id=opportunity.id,
            data=opportunity_data(opportunity),
            actor=principal.actor,
        )


def _transition(
    opportunity: Opportunity,
    from_stage_id: uuid.UUID | None,
    to_stage_id: uuid.UUID,
    principal: Principal,
    at: datetime | None = None,
) -> StageTransition:
    return StageTransition(
        id=ids.new_uuid(),
        workspace_id=opportunity.workspace_id,
        opportunity_id=opportunity.id,
        from_stage_id=from_stage_id,
        to_stage_id=to_stage_id,
        at=at or utcnow(),
        actor=principal.actor,
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


def _closed_stage_on_create(stage: Stage) -> InvalidInput:
    return InvalidInput(
        f"{stage.name!r} is a closed stage. Create the opportunity in an open stage, "
        "then move it.",
        errors=[FieldError("stage_id", "must be an open stage", "stage_not_open")],
    )


def _closed_opportunity(opportunity: Opportunity) -> InvalidOpportunityTransition:
    encoded = ids.encode("opportunity", opportunity.id)
    return InvalidOpportunityTransition(
        f"{with_article(opportunity.status).capitalize()} opportunity cannot change stage. Reopen it first "
        f"with POST /v1/opportunities/{encoded}/reopen.",
        current_status=opportunity.status,
        allowed_transitions=list(states.TRANSITIONS[opportunity.status]),
    )


opportunity_service = OpportunityService()
