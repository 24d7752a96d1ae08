"""Assignment rules: CRUD, and the lead operations that run them or set an owner."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.concurrency import check_if_match
from app.core.errors import FieldError, InvalidInput, NotFound
from app.core.events import emit
from app.leads import assignment
from app.leads.assignment_repository import AssignmentRepository
from app.leads.assignment_schemas import AssignmentRule as RuleSchema
from app.leads.assignment_schemas import (
    AssignmentRuleCreate,
    AssignmentRuleUpdate,
    LeadAssign,
)
from app.leads.service import lead_service
from app.models import AssignmentRule, Lead, LeadAssignment, LeadTouch
from app.users.errors import TeamNotFound
from app.users.service import team_service, user_service

log = structlog.get_logger(__name__)

_REQUIRED_ON_UPDATE = ("name", "position", "enabled", "criteria", "strategy")


class AssignmentRuleNotFound(NotFound):
    """No assignment rule with that id in the caller's workspace."""

    code = "assignment_rule_not_found"


def rule_data(rule: AssignmentRule) -> dict[str, Any]:
    return RuleSchema.model_validate(rule).model_dump(mode="json")


class AssignmentRuleService:
    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        rule_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> AssignmentRule:
        rule = await AssignmentRepository.from_session(session).get_rule(
            workspace_id, rule_id, for_update=for_update
        )
        if rule is None:
            raise AssignmentRuleNotFound(
                f"No assignment rule with id {ids.encode('assignment_rule', rule_id)} "
                "exists in this workspace."
            )
        return rule

    async def list(
        self, session: AsyncSession, workspace_id: uuid.UUID, *, limit: int
    ) -> Sequence[AssignmentRule]:
        return await AssignmentRepository.from_session(session).list_rules(
            workspace_id, limit=limit
        )

    async def create(
        self, session: AsyncSession, principal: Principal, payload: AssignmentRuleCreate
    ) -> AssignmentRule:
        await self._check_target(
            session, principal, payload.strategy, payload.team_id, payload.user_id
        )
        position = payload.position
        if position is None:
            repository = AssignmentRepository.from_session(session)
            position = await repository.next_position(principal.workspace_id)

        rule = AssignmentRule(
            id=ids.new_uuid(),
            workspace_id=principal.workspace_id,
            name=payload.name,
            position=position,
            enabled=payload.enabled,
            criteria=[item.model_dump(mode="json") for item in payload.criteria],
            strategy=payload.strategy,
            team_id=payload.team_id,
            user_id=payload.user_id,
        )
        session.add(rule)
        await session.flush()
        await session.refresh(rule)

        await self._emit(session, principal, rule, "assignment_rule.created")
        log.info("assignment_rule.created", rule_id=str(rule.id))
        return rule

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        rule_id: uuid.UUID,
        payload: AssignmentRuleUpdate,
        *,
        if_match: str | None,
    ) -> AssignmentRule:
        rule = await self.get(session, principal.workspace_id, rule_id, for_update=True)
        check_if_match(if_match, rule.version)

        changes = {name: getattr(payload, name) for name in payload.model_fields_set}
        nulls = [n for n in _REQUIRED_ON_UPDATE if n in changes and changes[n] is None]
        if nulls:
            raise InvalidInput(
                f"{', '.join(nulls)} cannot be null. Omit a field to keep its value.",
                errors=[
                    FieldError(n, "cannot be null", "null_not_allowed") for n in nulls
                ],
            )
        if "criteria" in changes:
            changes["criteria"] = [
                item.model_dump(mode="json") for item in changes["criteria"]
            ]
        strategy = changes.get("strategy", rule.strategy)
        # Switching to or from fixed replaces the target: the other one is cleared.
        team_id = changes.get("team_id", rule.team_id if strategy != "fixed" else None)
        user_id = changes.get("user_id", rule.user_id if strategy == "fixed" else None)
        await self._check_target(session, principal, strategy, team_id, user_id)
        changes["team_id"], changes["user_id"] = team_id, user_id
        for name, value in changes.items():
            setattr(rule, name, value)
        if not session.is_modified(rule):
            return rule
        await session.flush()
        await session.refresh(rule)

        await self._emit(session, principal, rule, "assignment_rule.updated")
        log.info(
            "assignment_rule.updated", rule_id=str(rule.id), fields=sorted(changes)
        )
        return rule

    async def delete(
        self, session: AsyncSession, principal: Principal, rule_id: uuid.UUID
    ) -> None:
        rule = await self.get(session, principal.workspace_id, rule_id, for_update=True)
        data = rule_data(rule)
        await session.delete(rule)
        await session.flush()
        await emit(
            session,
            workspace_id=principal.workspace_id,
            type="assignment_rule.deleted",
            object_type="assignment_rule",
            object_id=rule_id,
            data=data,
            actor=principal.actor,
        )
        log.info("assignment_rule.deleted", rule_id=str(rule_id))

    async def _check_target(
        self,
        session: AsyncSession,
        principal: Principal,
        strategy: str,
        team_id: uuid.UUID | None,
        user_id: uuid.UUID | None,
    ) -> None:
        if strategy == "fixed":
            if user_id is None or team_id is not None:
                raise _target_error(
                    "user_id", "The fixed strategy needs user_id and no team_id."
                )
            await user_service.require_active(
                session, principal.workspace_id, user_id, "user_id"
            )
            return
        if team_id is None or user_id is not None:
            raise _target_error(
                "team_id", f"The {strategy} strategy needs team_id and no user_id."
            )
        try:
            await team_service.get(session, principal.workspace_id, team_id)
        except TeamNotFound as error:
            encoded = ids.encode("team", team_id)
            raise InvalidInput(
                f"No team with id {encoded} exists in this workspace. Create it with "
                "POST /v1/teams or send another id.",
                errors=[
                    FieldError("team_id", f"no team {encoded} here", "team_not_found")
                ],
            ) from error

    async def _emit(
        self,
        session: AsyncSession,
        principal: Principal,
        rule: AssignmentRule,
        type: str,
    ) -> None:
        await emit(
            session,
            workspace_id=rule.workspace_id,
            type=type,
            object_type="assignment_rule",
            object_id=rule.id,
            data=rule_data(rule),
            actor=principal.actor,
        )


def _target_error(field: str, detail: str) -> InvalidInput:
    return InvalidInput(
        detail + " Send the target that matches the strategy.",
        errors=[FieldError(field, "missing or conflicting target", "invalid_target")],
    )


async def first_touch_campaign(session: AsyncSession, lead: Lead) -> uuid.UUID | None:
    """Return the campaign of the lead's first touch, which campaign criteria read."""
    if lead.first_touch_id is None:
        return None
    return await session.scalar(
        select(LeadTouch.campaign_id).where(
            LeadTouch.workspace_id == lead.workspace_id,
            LeadTouch.id == lead.first_touch_id,
        )
    )


async def assign_lead(
    session: AsyncSession,
    principal: Principal,
    lead_id: uuid.UUID,
    payload: LeadAssign,
    *,
    if_match: str | None,
) -> Lead:
    """Set a lead's owner by hand, or run the assignment rules on it."""
    lead = await lead_service.get(
        session, principal.workspace_id, lead_id, for_update=True
    )
    check_if_match(if_match, lead.version)

    if payload.rule == "auto":
        values = assignment.lead_values(lead)
        campaign_id = await first_touch_campaign(session, lead)
        values["campaign_id"] = (
            ids.encode("campaign", campaign_id) if campaign_id is not None else None
        )
        decision = await assignment.run_rules(session, principal.workspace_id, values)
    else:
        await assignment.check_owner(session, principal, payload.owner_id)
        decision = assignment.Decision(payload.owner_id)
    return await assignment.reassign(session, principal, lead, decision)


async def list_assignments(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    lead_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[LeadAssignment], str | None, bool]:
    await lead_service.get(session, workspace_id, lead_id)
    return await AssignmentRepository.from_session(session).list_assignments(
        workspace_id, lead_id, limit=limit, cursor=cursor
    )


assignment_rule_service = AssignmentRuleService()
