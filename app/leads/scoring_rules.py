"""Scoring rules, the scoring threshold and engagement events, as API resources.

Each change of a rule or of the threshold bumps the workspace's ``scoring_version`` in
one conditional UPDATE, which also serializes concurrent changes, and defers the job
that rescores the workspace's open leads after the commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.concurrency import check_if_match
from app.core.db import defer_job
from app.core.errors import FieldError, InvalidInput, NotFound, validation_field_errors
from app.core.events import emit
from app.core.pagination import paginate
from app.leads.errors import erased_error
from app.leads.scoring import lead_scoring
from app.leads.scoring_schemas import Engagement as EngagementSchema
from app.leads.scoring_schemas import (
    EngagementCreate,
    ScoringRuleCreate,
    ScoringRuleUpdate,
    ScoringSettingsUpdate,
)
from app.leads.scoring_schemas import ScoringRule as ScoringRuleSchema
from app.leads.scoring_schemas import ScoringSettings as ScoringSettingsSchema
from app.leads.service import lead_service
from app.models import Lead, LeadEngagement, ScoringRule, Workspace
from app.nurture.exits import exit_for_engagement
from app.nurture.sources import engagement_source

log = structlog.get_logger(__name__)

RESCORE_JOB = "rescore_leads"
# Clocks of the systems that post engagements may run a little ahead of ours.
MAX_CLOCK_SKEW = timedelta(minutes=5)
_RULE_FIELDS = tuple(ScoringRuleCreate.model_fields)


class ScoringRuleNotFound(NotFound):
    """No scoring rule with that id in the caller's workspace."""

    code = "scoring_rule_not_found"


def scoring_rule_data(rule: ScoringRule) -> dict[str, Any]:
    """Serialize a rule as the API shows it, for events."""
    return ScoringRuleSchema.model_validate(rule).model_dump(mode="json")


async def bump_scoring_version(session: AsyncSession, workspace_id: uuid.UUID) -> int:
    """Increment the workspace's scoring version and defer the rescoring job."""
    version: int = (
        await session.execute(
            update(Workspace)
            .where(Workspace.id == workspace_id)
            .values(scoring_version=Workspace.scoring_version + 1)
            .returning(Workspace.scoring_version)
        )
    ).scalar_one()
    defer_job(
        session,
        RESCORE_JOB,
        str(workspace_id),
        job_id=f"rescore:{workspace_id}:{version}",
    )
    return version


def _check_rule(values: dict[str, Any]) -> ScoringRuleCreate:
    try:
        return ScoringRuleCreate.model_validate(values)
    except ValidationError as error:
        errors = validation_field_errors(error.errors())
        raise InvalidInput(
            "The scoring rule is invalid: "
            + "; ".join(f"{item['field']}: {item['message']}" for item in errors),
            errors=errors,
        ) from error


class ScoringRuleService:
    async def create(
        self, session: AsyncSession, principal: Principal, payload: ScoringRuleCreate
    ) -> ScoringRule:
        rule = ScoringRule(
            id=ids.new_uuid(),
            workspace_id=principal.workspace_id,
            **payload.model_dump(),
        )
        session.add(rule)
        await session.flush()
        await session.refresh(rule)

        await bump_scoring_version(session, rule.workspace_id)
        await self._emit(session, rule, "scoring_rule.created", principal.actor)
        return rule

    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        rule_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> ScoringRule:
        statement = select(ScoringRule).where(
            ScoringRule.workspace_id == workspace_id, ScoringRule.id == rule_id
        )
        if for_update:
            statement = statement.with_for_update()
        rule = await session.scalar(statement)
        if rule is None:
            raise ScoringRuleNotFound(
                f"No scoring rule with id {ids.encode('scoring_rule', rule_id)} "
                "exists in this workspace."
            )
        return rule

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
    ) -> tuple[Sequence[ScoringRule], str | None, bool]:
        statement = select(ScoringRule).where(ScoringRule.workspace_id == workspace_id)
        return await paginate(
            session, statement, ScoringRule.id, limit=limit, cursor=cursor
        )

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        rule_id: uuid.UUID,
        payload: ScoringRuleUpdate,
        *,
        if_match: str | None,
    ) -> ScoringRule:
        rule = await self.get(session, principal.workspace_id, rule_id, for_update=True)
        check_if_match(if_match, rule.version)

        changes = payload.model_dump(exclude_unset=True)
        merged = {name: getattr(rule, name) for name in _RULE_FIELDS} | changes
        checked = _check_rule(merged)
        for name, value in checked.model_dump().items():
            setattr(rule, name, value)
        if not session.is_modified(rule):
            return rule
        await session.flush()
        await session.refresh(rule)

        await bump_scoring_version(session, rule.workspace_id)
        await self._emit(session, rule, "scoring_rule.updated", principal.actor)
        return rule

    async def delete(
        self,
        session: AsyncSession,
        principal: Principal,
        rule_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> None:
        rule = await self.get(session, principal.workspace_id, rule_id, for_update=True)
        check_if_match(if_match, rule.version)
        data = scoring_rule_data(rule)

        await session.delete(rule)
        await session.flush()
        await bump_scoring_version(session, rule.workspace_id)
        await emit(
            session,
            workspace_id=rule.workspace_id,
            type="scoring_rule.deleted",
            object_type="scoring_rule",
            object_id=rule.id,
            data=data,
            actor=principal.actor,
        )
        log.info("scoring_rule.deleted", scoring_rule_id=str(rule.id))

    async def _emit(
        self, session: AsyncSession, rule: ScoringRule, kind: str, actor: str
    ) -> None:
        await emit(
            session,
            workspace_id=rule.workspace_id,
            type=kind,
            object_type="scoring_rule",
            object_id=rule.id,
            data=scoring_rule_data(rule),
            actor=actor,
        )
        log.info(kind, scoring_rule_id=str(rule.id))


class ScoringSettingsService:
    async def read(
        self, session: AsyncSession, workspace_id: uuid.UUID
    ) -> ScoringSettingsSchema:
        row = (
            await session.execute(
                select(Workspace.scoring_threshold, Workspace.scoring_version).where(
                    Workspace.id == workspace_id
                )
            )
        ).one()
        return ScoringSettingsSchema(threshold=row[0], scoring_version=row[1])

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        payload: ScoringSettingsUpdate,
        *,
        if_match: str | None,
    ) -> ScoringSettingsSchema:
        workspace = await session.scalar(
            select(Workspace)
            .where(Workspace.id == principal.workspace_id)
            .with_for_update()
        )
        assert workspace is not None
        check_if_match(if_match, workspace.scoring_version)
        changes = payload.model_dump(exclude_unset=True)
        if (
            "threshold" not in changes
            or changes["threshold"] == workspace.scoring_threshold
        ):
            return await self.read(session, workspace.id)

        workspace.scoring_threshold = changes["threshold"]
        await session.flush()
        await bump_scoring_version(session, workspace.id)
        settings = await self.read(session, workspace.id)
        await emit(
            session,
            workspace_id=workspace.id,
            type="scoring_settings.updated",
            object_type="scoring_settings",
            object_id=workspace.id,
            data=settings.model_dump(mode="json"),
            actor=principal.actor,
        )
        log.info("scoring_settings.updated", threshold=settings.threshold)
        return settings


class EngagementService:
    async def record(
        self,
        session: AsyncSession,
        principal: Principal,
        lead_id: uuid.UUID,
        payload: EngagementCreate,
    ) -> LeadEngagement:
        """Record one engagement of a lead, rescore the lead and apply exit rules."""
        lead = await lead_service.get(
            session, principal.workspace_id, lead_id, for_update=True
        )
        return await self.record_for_lead(session, lead, payload, principal.actor)

    async def record_for_lead(
        self,
        session: AsyncSession,
        lead: Lead,
        payload: EngagementCreate,
        actor: str | None,
    ) -> LeadEngagement:
        """Record an engagement of a lead whose row the caller holds locked."""
        if lead.erased_at is not None:
            raise erased_error(ids.encode("lead", lead.id), "engagements")
        now = utcnow()
        occurred_at = payload.occurred_at or now
        if occurred_at > now + MAX_CLOCK_SKEW:
            raise InvalidInput(
                "occurred_at is in the future. Send the time the engagement happened.",
                errors=[FieldError("occurred_at", "is in the future", "in_future")],
            )
        source = await engagement_source(
            session, lead, payload.enrollment_id, payload.message_id
        )

        engagement = LeadEngagement(
            id=ids.new_uuid(),
            workspace_id=lead.workspace_id,
            lead_id=lead.id,
            type=payload.type,
            occurred_at=occurred_at,
            details=payload.metadata,
            enrollment_id=source.enrollment_id,
            step_run_id=source.step_run_id,
            message_id=source.message_id,
        )
        session.add(engagement)
        await session.flush()
        await session.refresh(engagement)
        await emit(
            session,
            workspace_id=lead.workspace_id,
            type="engagement.created",
            object_type="engagement",
            object_id=engagement.id,
            data=EngagementSchema.model_validate(engagement).model_dump(mode="json"),
            actor=actor,
        )

        await lead_scoring.score_lead(session, lead, actor)
        await exit_for_engagement(
            session, lead, engagement.type, engagement.enrollment_id, actor
        )
        log.info(
            "engagement.created",
            engagement_id=str(engagement.id),
            lead_id=str(lead.id),
            engagement_type=engagement.type,
        )
        return engagement

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        lead_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
    ) -> tuple[Sequence[LeadEngagement], str | None, bool]:
        await lead_service.get(session, workspace_id, lead_id)
        statement = select(LeadEngagement).where(
            LeadEngagement.workspace_id == workspace_id,
            LeadEngagement.lead_id == lead_id,
        )
        return await paginate(
            session, statement, LeadEngagement.id, limit=limit, cursor=cursor
        )


scoring_rule_service = ScoringRuleService()
scoring_settings_service = ScoringSettingsService()
engagement_service = EngagementService()
