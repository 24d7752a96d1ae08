"""Choosing a lead's owner: explicit, On-Behalf-Of, or the first matching rule.

Rules run in ascending ``position``; the first enabled rule whose criteria all match
names the owner. A team target picks a member under a row lock on the team's
``assignment_cursors`` row, so concurrent creations take turns: round robin goes to
the next member in join order, weighted follows smooth weighted round robin on the
members' weights. Both skip inactive users and members at capacity (open leads
owned, counted under the same lock). Every change of owner appends a
``lead_assignments`` row and emits ``lead.assigned``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import phonenumbers
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.events import emit
from app.customers.normalize import company_domain
from app.leads.assignment_repository import AssignmentRepository
from app.leads.schemas import Lead as LeadSchema
from app.models import AssignmentRule, Lead, LeadAssignment, TeamMember
from app.users.repository import UserRepository
from app.users.service import team_service, user_service

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Decision:
    """The owner chosen for a lead and how: ``manual`` or by ``rule_id``."""

    owner_id: uuid.UUID | None
    rule_id: uuid.UUID | None = None
    method: str = "manual"


async def initial_owner(
    session: AsyncSession,
    principal: Principal,
    values: Mapping[str, Any],
    requested: uuid.UUID | None,
) -> Decision:
    """Choose the owner of a lead about to be created from ``values``."""
    if requested is not None:
        await user_service.require_active(
            session, principal.workspace_id, requested, "owner_id"
        )
        return Decision(requested)
    on_behalf_of = await user_service.acting_user(session, principal)
    if on_behalf_of is not None:
        return Decision(on_behalf_of)
    return await run_rules(session, principal.workspace_id, values)


async def record_initial(
    session: AsyncSession, principal: Principal, lead: Lead, decision: Decision
) -> None:
    """Audit the owner a new lead was created with; nothing when it has none."""
    if lead.owner_id is None:
        return
    await record_change(session, principal, lead, None, decision)


async def run_rules(
    session: AsyncSession, workspace_id: uuid.UUID, values: Mapping[str, Any]
) -> Decision:
    """Return the owner that the first matching enabled rule picks, if any."""
    rules = await AssignmentRepository.from_session(session).enabled_rules(workspace_id)
    return await apply_rules(session, workspace_id, rules, values)


async def apply_rules(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    rules: Sequence[AssignmentRule],
    values: Mapping[str, Any],
) -> Decision:
    """Return the owner that the first matching rule of ``rules`` picks, if any."""
    for rule in rules:
        if not all(matches(criterion, values) for criterion in rule.criteria):
            continue
        owner_id = await _pick(session, workspace_id, rule)
        if owner_id is None:
            log.warning(
                "lead.assignment_unavailable",
                rule_id=str(rule.id),
                team_id=str(rule.team_id) if rule.team_id else None,
            )
        return Decision(owner_id, rule.id, "rule")
    return Decision(None, None, "rule")


def lead_values(lead: Lead) -> dict[str, Any]:
    """Return the fields of a stored lead that criteria read."""
    return {
        "source": lead.source,
        "email_normalized": lead.email_normalized,
        "phone": lead.phone,
        "phone_normalized": lead.phone_normalized,
        "company_domain": lead.company_domain,
        "attributes": lead.attributes,
    }


def matches(criterion: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    actual = _fact(criterion["field"], values)
    operator = criterion["operator"]
    expected = criterion.get("value")
    if operator == "exists":
        return (actual is not None) == (expected is not False)
    if actual is None:
        return False
    if operator == "in":
        return any(_equal(actual, item) for item in expected or ())
    return _equal(actual, expected)


def _equal(actual: Any, expected: Any) -> bool:
    if isinstance(actual, str) and isinstance(expected, str):
        return actual.casefold() == expected.casefold()
    if isinstance(actual, bool) or isinstance(expected, bool):
        return actual is expected
    return bool(actual == expected)


def _fact(field: str, values: Mapping[str, Any]) -> Any:
    attributes = values.get("attributes") or {}
    if field.startswith("attributes."):
        return attributes.get(field.removeprefix("attributes."))
    if field == "source":
        return values.get("source")
    if field == "campaign_id":
        return values.get("campaign_id") or attributes.get("campaign_id")
    if field == "company_domain":
        if values.get("company_domain"):
            return values["company_domain"]
        email = values.get("email_normalized")
        return company_domain(email) if email else None
    phone = values.get("phone_normalized") or values.get("phone")
    if field == "phone_region":
        return _phone_region(phone)
    if field == "country":
        country = attributes.get("country")
        if isinstance(country, str) and country.strip():
            return country.strip()
        return _phone_region(phone)
    return None


def _phone_region(phone: str | None) -> str | None:
    if not phone:
        return None
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return None
    region: str | None = phonenumbers.region_code_for_number(number)
    return region


async def _pick(
    session: AsyncSession, workspace_id: uuid.UUID, rule: AssignmentRule
) -> uuid.UUID | None:
    if rule.strategy == "fixed":
        assert rule.user_id is not None
        user = await UserRepository.from_session(session).get(
            workspace_id, rule.user_id
        )
        return user.id if user is not None and user.active else None
    assert rule.team_id is not None
    return await pick_member(session, workspace_id, rule.team_id, rule.strategy)


async def pick_member(
    session: AsyncSession, workspace_id: uuid.UUID, team_id: uuid.UUID, strategy: str
) -> uuid.UUID | None:
    """Pick the next eligible member of a team, holding its cursor lock until commit."""
    repository = AssignmentRepository.from_session(session)
    cursor = await repository.lock_cursor(workspace_id, team_id)
    members = await team_service.members(session, team_id)
    eligible = await _eligible(session, workspace_id, members)
    if not eligible:
        return None

    if strategy == "weighted":
        chosen = _smooth_weighted(eligible)
    else:
        chosen = _next_in_turn(members, eligible, cursor.last_user_id)
    cursor.last_user_id = chosen.user_id
    cursor.assigned_count += 1
    await session.flush()
    return chosen.user_id


async def _eligible(
    session: AsyncSession, workspace_id: uuid.UUID, members: Sequence[TeamMember]
) -> list[TeamMember]:
    users = await UserRepository.from_session(session).get_many(
        workspace_id, [member.user_id for member in members]
    )
    limited = [member.user_id for member in members if member.capacity is not None]
    counts = await AssignmentRepository.from_session(session).open_lead_counts(
        workspace_id, limited
    )
    return [
        member
        for member in members
        if (user := users.get(member.user_id)) is not None
        and user.active
        and (member.capacity is None or counts.get(member.user_id, 0) < member.capacity)
    ]


def _next_in_turn(
    members: Sequence[TeamMember],
    eligible: Sequence[TeamMember],
    last_user_id: uuid.UUID | None,
) -> TeamMember:
    order = [member.user_id for member in members]
    start = order.index(last_user_id) + 1 if last_user_id in order else 0
    allowed = {member.user_id for member in eligible}
    for step in range(len(order)):
        candidate = members[(start + step) % len(order)]
        if candidate.user_id in allowed:
            return candidate
    return eligible[0]


def _smooth_weighted(eligible: Sequence[TeamMember]) -> TeamMember:
    # Smooth weighted round robin, as nginx balances upstreams: each member gains its
    # weight, the highest total wins (the earlier member on a tie) and gives back the
    # sum of the weights. Over any run of sum-of-weights picks each member gets
    # exactly its weight, interleaved rather than in bursts.
    total = sum(member.weight for member in eligible)
    for member in eligible:
        member.current_weight += member.weight
    chosen = max(eligible, key=lambda member: member.current_weight)
    chosen.current_weight -= total
    return chosen


async def reassign(
    session: AsyncSession,
    principal: Principal,
    lead: Lead,
    decision: Decision,
) -> Lead:
    """Give a locked lead the decided owner, audited; nothing when it is unchanged."""
    previous = lead.owner_id
    if decision.owner_id == previous:
        return lead
    lead.owner_id = decision.owner_id
    await session.flush()
    await session.refresh(lead)
    await record_change(session, principal, lead, previous, decision)
    return lead


async def check_owner(
    session: AsyncSession, principal: Principal, owner_id: uuid.UUID | None
) -> None:
    """Raise ``InvalidInput`` on owner_id unless it names an active user or is null."""
    if owner_id is not None:
        await user_service.require_active(
            session, principal.workspace_id, owner_id, "owner_id"
        )


async def record_change(
    session: AsyncSession,
    principal: Principal,
    lead: Lead,
    previous: uuid.UUID | None,
    decision: Decision,
) -> LeadAssignment:
    """Append the audit row of an owner change and emit ``lead.assigned``."""
    record = LeadAssignment(
        id=ids.new_uuid(),
        workspace_id=lead.workspace_id,
        lead_id=lead.id,
        from_user_id=previous,
        to_user_id=lead.owner_id,
        rule_id=decision.rule_id,
        method=decision.method,
        actor=principal.actor,
    )
    session.add(record)
    await session.flush()

    def encoded(value: uuid.UUID | None, kind: str) -> str | None:
        return ids.encode(kind, value) if value is not None else None

    await emit(
        session,
        workspace_id=lead.workspace_id,
        type="lead.assigned",
        object_type="lead",
        object_id=lead.id,
        data={
            **LeadSchema.model_validate(lead).model_dump(mode="json"),
            "assignment": {
                "id": ids.encode("lead_assignment", record.id),
                "previous_owner_id": encoded(previous, "user"),
                "owner_id": encoded(lead.owner_id, "user"),
                "rule_id": encoded(decision.rule_id, "assignment_rule"),
                "method": decision.method,
            },
        },
        actor=principal.actor,
    )
    log.info(
        "lead.assigned",
        lead_id=str(lead.id),
        from_user_id=str(previous) if previous else None,
        to_user_id=str(lead.owner_id) if lead.owner_id else None,
        rule_id=str(decision.rule_id) if decision.rule_id else None,
    )
    return record
