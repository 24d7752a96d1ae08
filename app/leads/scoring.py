"""Lead scoring: declarative rules turn a lead's fields and engagements into points.

A lead's score is the sum of its rules' points, and ``score_breakdown`` lists every rule
that gave non-zero points. The score is derived data: a change writes only the scoring
columns, so it bumps neither the lead's ``version`` nor its ``updated_at``, and emits
``lead.score_changed``. When the score reaches the workspace's threshold,
``sales_ready_at`` is set and ``lead.sales_ready`` emitted. Nothing more is emitted
while the score stays at or above the threshold. When it falls below, ``sales_ready_at`` is
cleared, so a later rise emits ``lead.sales_ready`` again.

Scores are recomputed in the request that writes the lead or records an engagement.
Every change of a rule or of the threshold bumps the workspace's ``scoring_version``
and defers a job that rescores the open leads whose ``scored_version`` is older; the
worker's sweep redoes that when the job is lost, and also rescores leads whose
decaying engagement points are due to change (``rescore_at``).
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, cast

import structlog
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from app.core import ids
from app.core.clock import utcnow
from app.core.events import emit
from app.customfields.values import is_number
from app.leads.schemas import Lead as LeadSchema
from app.models import Lead, LeadEngagement, ScoringRule, Workspace
from app.models.lead import OPEN_LEAD_STATUSES

log = structlog.get_logger(__name__)

# Half-life points change continuously; they are rescored daily until they round to 0.
DECAY_RESCORE_INTERVAL = timedelta(days=1)
RESCORE_BATCH = 500

_LEADS = cast(Table, Lead.__table__)
_WRITE_SCORE = (
    update(_LEADS)
    .where(_LEADS.c.id == bindparam("lead_id"))
    .values(
        score=bindparam("score"),
        score_breakdown=bindparam("score_breakdown"),
        sales_ready_at=bindparam("sales_ready_at"),
        scored_version=bindparam("scored_version"),
        rescore_at=bindparam("rescore_at"),
        # Set to itself so that the column's onupdate does not touch it.
        updated_at=_LEADS.c.updated_at,
    )
)
SCORE_COLUMNS = (
    "score",
    "score_breakdown",
    "sales_ready_at",
    "scored_version",
    "rescore_at",
)


@dataclass(frozen=True)
class Rule:
    id: uuid.UUID
    name: str
    kind: str
    points: int
    field: str | None = None
    operator: str | None = None
    value: Any = None
    event_type: str | None = None
    max_count: int | None = None
    half_life_days: int | None = None
    expires_after_days: int | None = None

    @classmethod
    def from_row(cls, row: ScoringRule) -> Rule:
        return cls(
            id=row.id,
            name=row.name,
            kind=row.kind,
            points=row.points,
            field=row.field,
            operator=row.operator,
            value=row.value,
            event_type=row.event_type,
            max_count=row.max_count,
            half_life_days=row.half_life_days,
            expires_after_days=row.expires_after_days,
        )


@dataclass(frozen=True)
class Occurrence:
    type: str
    occurred_at: datetime


@dataclass(frozen=True)
class ScoringContext:
    """A workspace's rules, threshold and scoring version, loaded once per batch."""

    rules: tuple[Rule, ...]
    threshold: int | None
    version: int

    @property
    def engagement_types(self) -> list[str]:
        return sorted(
            {rule.event_type for rule in self.rules if rule.event_type is not None}
        )


@dataclass
class ScoreResult:
    score: int
    breakdown: list[dict[str, Any]] = field(default_factory=list)
    rescore_at: datetime | None = None


def _round(value: float) -> int:
    return int(Decimal(repr(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _same(left: Any, right: Any) -> bool:
    # JSON true is not the number 1, though Python compares them equal.
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    return bool(left == right)


def field_value(lead: Mapping[str, Any], name: str) -> Any:
    if name.startswith("attributes."):
        attributes = lead.get("attributes") or {}
        return attributes.get(name.removeprefix("attributes."))
    return lead.get(name)


def _present(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def matches(rule: Rule, value: Any) -> bool:
    """Tell whether a field rule's condition holds for the field's ``value``."""
    operator, expected = rule.operator, rule.value
    if operator == "exists":
        return _present(value) is bool(expected)
    if operator == "equals":
        return _same(value, expected)
    if operator == "not_equals":
        return not _same(value, expected)
    if operator == "in":
        return any(_same(value, item) for item in expected)
    if operator == "contains":
        if isinstance(value, str):
            return str(expected).lower() in value.lower()
        if isinstance(value, list):
            return any(_same(item, expected) for item in value)
        return False
    if operator in ("gt", "lt") and is_number(value):
        return bool(value > expected) if operator == "gt" else bool(value < expected)
    return False


def engagement_points(
    rule: Rule, occurrences: Iterable[Occurrence], now: datetime
) -> tuple[int, datetime | None]:
    """Return a rule's points for the lead's engagements, and when they next change."""
    times = sorted(
        (item.occurred_at for item in occurrences if item.type == rule.event_type),
        reverse=True,
    )
    next_change: datetime | None = None
    if rule.expires_after_days is not None:
        lifetime = timedelta(days=rule.expires_after_days)
        times = [moment for moment in times if moment + lifetime > now]
    if rule.max_count is not None:
        times = times[: rule.max_count]
    if rule.expires_after_days is not None and times:
        next_change = min(times) + timedelta(days=rule.expires_after_days)
    if rule.half_life_days is None:
        return rule.points * len(times), next_change
    total = 0.0
    for moment in times:
        age_days = max((now - moment).total_seconds(), 0.0) / 86_400
        total += rule.points * math.pow(0.5, age_days / rule.half_life_days)
    points = _round(total)
    return points, (now + DECAY_RESCORE_INTERVAL) if points else None


def compute(
    context: ScoringContext,
    lead: Mapping[str, Any],
    occurrences: Sequence[Occurrence],
    now: datetime,
) -> ScoreResult:
    """Score one lead, given as its column values, with its engagements."""
    result = ScoreResult(score=0)
    for rule in context.rules:
        if rule.kind == "field":
            assert rule.field is not None
            points = rule.points if matches(rule, field_value(lead, rule.field)) else 0
        else:
            points, next_change = engagement_points(rule, occurrences, now)
            if next_change is not None and (
                result.rescore_at is None or next_change < result.rescore_at
            ):
                result.rescore_at = next_change
        if points:
            result.score += points
            result.breakdown.append(
                {
                    "rule_id": ids.encode("scoring_rule", rule.id),
                    "name": rule.name,
                    "points": points,
                }
            )
    return result


async def load_context(
    session: AsyncSession, workspace_id: uuid.UUID
) -> ScoringContext:
    """Load a workspace's threshold, scoring version and rules in one query."""
    rows = (
        await session.execute(
            select(Workspace.scoring_threshold, Workspace.scoring_version, ScoringRule)
            .outerjoin(ScoringRule, ScoringRule.workspace_id == Workspace.id)
            .where(Workspace.id == workspace_id)
            .order_by(ScoringRule.id)
        )
    ).all()
    if not rows:
        return ScoringContext(rules=(), threshold=None, version=0)
    threshold, version = rows[0][0], rows[0][1]
    rules = tuple(Rule.from_row(row[2]) for row in rows if row[2] is not None)
    return ScoringContext(rules=rules, threshold=threshold, version=version)


async def load_occurrences(
    session: AsyncSession, lead_ids: Sequence[uuid.UUID], types: Sequence[str]
) -> dict[uuid.UUID, list[Occurrence]]:
    """Load the engagements of ``types`` of several leads in one query."""
    found: dict[uuid.UUID, list[Occurrence]] = defaultdict(list)
    if not lead_ids or not types:
        return found
    rows = await session.execute(
        select(
            LeadEngagement.lead_id, LeadEngagement.type, LeadEngagement.occurred_at
        ).where(LeadEngagement.lead_id.in_(lead_ids), LeadEngagement.type.in_(types))
    )
    for lead_id, kind, occurred_at in rows:
        found[lead_id].append(Occurrence(kind, occurred_at))
    return found


def lead_values(lead: Lead) -> dict[str, Any]:
    return {name: getattr(lead, name) for name in ("attributes", *_RULE_COLUMNS)}


_RULE_COLUMNS = (
    "email_normalized",
    "first_name",
    "last_name",
    "company",
    "title",
    "phone",
    "timezone",
    "source",
    "status",
    "owner_id",
    "tags",
)


async def apply(
    session: AsyncSession,
    lead: Lead,
    context: ScoringContext,
    occurrences: Sequence[Occurrence],
    *,
    now: datetime,
    actor: str | None,
) -> bool:
    """Store a lead's new score and emit its events; return whether the score changed.

    The caller holds the lead's row lock, so the event sequence stays gapless.
    """
    result = compute(context, lead_values(lead), occurrences, now)
    ready = context.threshold is not None and result.score >= context.threshold
    sales_ready_at = (lead.sales_ready_at or now) if ready else None
    crossed = ready and lead.sales_ready_at is None
    changed = result.score != lead.score or result.breakdown != lead.score_breakdown
    values = {
        "score": result.score,
        "score_breakdown": result.breakdown,
        "sales_ready_at": sales_ready_at,
        "scored_version": context.version,
        "rescore_at": result.rescore_at,
    }
    if all(getattr(lead, name) == values[name] for name in SCORE_COLUMNS):
        return False

    await session.execute(_WRITE_SCORE, {"lead_id": lead.id, **values})
    for name, value in values.items():
        set_committed_value(lead, name, value)
    data = LeadSchema.model_validate(lead).model_dump(mode="json")
    if changed:
        await emit(
            session,
            workspace_id=lead.workspace_id,
            type="lead.score_changed",
            object_type="lead",
            object_id=lead.id,
            data=data,
            actor=actor,
        )
    if crossed:
        await emit(
            session,
            workspace_id=lead.workspace_id,
            type="lead.sales_ready",
            object_type="lead",
            object_id=lead.id,
            data=data,
            actor=actor,
        )
        log.info("lead.sales_ready", lead_id=str(lead.id), score=result.score)
    return changed


class LeadScoring:
    async def score_lead(
        self, session: AsyncSession, lead: Lead, actor: str | None = None
    ) -> None:
        """Rescore one lead after a write; the caller holds its row lock."""
        context = await load_context(session, lead.workspace_id)
        occurrences = await load_occurrences(
            session, [lead.id], context.engagement_types
        )
        await apply(
            session,
            lead,
            context,
            occurrences.get(lead.id, []),
            now=utcnow(),
            actor=actor,
        )

    async def rescore_stale(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        after: uuid.UUID | None = None,
        batch: int = RESCORE_BATCH,
        now: datetime | None = None,
    ) -> tuple[int, uuid.UUID | None]:
        """Rescore one batch of open leads scored with an older scoring version.

        Return how many leads were rescored and the last id seen, to pass as ``after``
        for the next batch; None when no lead is left. Leads locked by a request are
        skipped: that request rescores them, or the sweep does later.
        """
        context = await load_context(session, workspace_id)
        statement = (
            select(Lead)
            .where(
                Lead.workspace_id == workspace_id,
                Lead.status.in_(OPEN_LEAD_STATUSES),
                Lead.scored_version < context.version,
            )
            .order_by(Lead.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        if after is not None:
            statement = statement.where(Lead.id > after)
        leads = (await session.scalars(statement)).all()
        await self._rescore(session, context, leads, now or utcnow())
        return len(leads), (leads[-1].id if len(leads) == batch else None)

    async def rescore_due(
        self,
        session: AsyncSession,
        *,
        batch: int = RESCORE_BATCH,
        now: datetime | None = None,
    ) -> int:
        """Rescore one batch of leads whose decaying points are due to change."""
        moment = now or utcnow()
        leads = (
            await session.scalars(
                select(Lead)
                .where(Lead.rescore_at <= moment)
                .order_by(Lead.rescore_at)
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
        ).all()
        by_workspace: dict[uuid.UUID, list[Lead]] = defaultdict(list)
        for lead in leads:
            by_workspace[lead.workspace_id].append(lead)
        for workspace_id, members in by_workspace.items():
            context = await load_context(session, workspace_id)
            await self._rescore(session, context, members, moment)
        return len(leads)

    async def stale_workspaces(
        self, session: AsyncSession, *, limit: int = 100
    ) -> list[uuid.UUID]:
        """List workspaces with open leads scored with an older scoring version."""
        stale = (
            select(Lead.id)
            .where(
                Lead.workspace_id == Workspace.id,
                Lead.status.in_(OPEN_LEAD_STATUSES),
                Lead.scored_version < Workspace.scoring_version,
            )
            .exists()
        )
        rows = await session.scalars(
            select(Workspace.id)
            .where(Workspace.scoring_version > 0, stale)
            .order_by(Workspace.id)
            .limit(limit)
        )
        return list(rows)

    async def _rescore(
        self,
        session: AsyncSession,
        context: ScoringContext,
        leads: Sequence[Lead],
        now: datetime,
    ) -> None:
        occurrences = await load_occurrences(
            session, [lead.id for lead in leads], context.engagement_types
        )
        changed = 0
        for lead in leads:
            if await apply(
                session,
                lead,
                context,
                occurrences.get(lead.id, []),
                now=now,
                actor="system:scoring",
            ):
                changed += 1
        if leads:
            log.info("lead_scores.rescored", count=len(leads), changed=changed)


lead_scoring = LeadScoring()
