"""Duplicate detection: leads that share a normalized email, phone or company domain.

Only an open lead with the same email blocks a create: the partial unique index
``uq_leads_open_email`` enforces that. Phone and company domain are weaker signals, so
they are reported as candidates and never block.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.leads.errors import DuplicateLead
from app.leads.identity import IdentityKeys
from app.models import Lead
from app.models.lead import OPEN_LEAD_STATUSES

# Candidates shown per lead; a company domain can match thousands of colleagues.
MAX_CANDIDATES = 50

_CANDIDATE_COLUMNS = (
    Lead.id,
    Lead.status,
    Lead.email_normalized,
    Lead.phone_normalized,
    Lead.company_domain,
)


@dataclass(frozen=True)
class Candidate:
    """A lead that may be the same person, and the keys it shares."""

    lead_id: uuid.UUID
    status: str
    matched_keys: list[str]

    def as_problem_item(self) -> dict[str, Any]:
        return {
            "lead_id": ids.encode("lead", self.lead_id),
            "status": self.status,
            "matched_keys": self.matched_keys,
        }


class DuplicateRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def matching(
        self,
        workspace_id: uuid.UUID,
        keys: IdentityKeys,
        *,
        exclude_id: uuid.UUID | None = None,
        limit: int = MAX_CANDIDATES,
    ) -> Sequence[Row[uuid.UUID, str, str, str | None, str | None]]:
        """Fetch unmerged, unerased leads sharing any key; email matches come first."""
        conditions = [Lead.email_normalized == keys.email]
        if keys.phone is not None:
            conditions.append(Lead.phone_normalized == keys.phone)
        if keys.company_domain is not None:
            conditions.append(Lead.company_domain == keys.company_domain)
        statement = (
            select(*_CANDIDATE_COLUMNS)
            .where(
                Lead.workspace_id == workspace_id,
                Lead.status != "merged",
                Lead.erased_at.is_(None),
                or_(*conditions),
            )
            .order_by((Lead.email_normalized == keys.email).desc(), Lead.id)
            .limit(limit)
        )
        if exclude_id is not None:
            statement = statement.where(Lead.id != exclude_id)
        return (await self.session.execute(statement)).all()

    async def open_by_email(
        self, workspace_id: uuid.UUID, emails: Collection[str]
    ) -> dict[str, tuple[uuid.UUID, str]]:
        """Map each of ``emails`` that an open lead has to its id and status.

        One query serves a whole batch, and it can use the partial unique index of
        open emails.
        """
        if not emails:
            return {}
        rows = await self.session.execute(
            select(Lead.email_normalized, Lead.id, Lead.status).where(
                Lead.workspace_id == workspace_id,
                Lead.email_normalized.in_(list(emails)),
                Lead.status.in_(OPEN_LEAD_STATUSES),
            )
        )
        return {email: (lead_id, status) for email, lead_id, status in rows.all()}


async def find_candidates(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    keys: IdentityKeys,
    *,
    exclude_id: uuid.UUID | None = None,
) -> list[Candidate]:
    rows = await DuplicateRepository(session).matching(
        workspace_id, keys, exclude_id=exclude_id
    )
    return [
        Candidate(lead_id=row.id, status=row.status, matched_keys=keys.matched(row))
        for row in rows
    ]


async def duplicate_error(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    keys: IdentityKeys,
    existing_id: uuid.UUID,
    *,
    exclude_id: uuid.UUID | None = None,
) -> DuplicateLead:
    """Build the 409 for an email that the open lead ``existing_id`` already has."""
    candidates = await find_candidates(
        session, workspace_id, keys, exclude_id=exclude_id
    )
    return duplicate_problem(existing_id, candidates)


def duplicate_problem(
    existing_id: uuid.UUID, candidates: Sequence[Candidate]
) -> DuplicateLead:
    encoded = ids.encode("lead", existing_id)
    return DuplicateLead(
        f"An open lead with this email already exists: {encoded}. Update that lead, "
        "or send on_duplicate 'merge' to merge the new fields into it.",
        existing_id=encoded,
        matched_key="email",
        candidates=[candidate.as_problem_item() for candidate in candidates],
    )
