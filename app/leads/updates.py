"""Keeping a lead's normalized keys in step when a PATCH changes its raw fields."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import FieldError, InvalidInput
from app.leads.dedupe import DuplicateRepository, duplicate_error
from app.leads.identity import IdentityKeys
from app.leads.normalize import (
    email_company_domain,
    normalize_company_domain,
    normalize_email,
    normalize_phone,
)
from app.models import Lead
from app.models.lead import OPEN_LEAD_STATUSES


async def apply_identity_changes(
    session: AsyncSession,
    lead: Lead,
    changes: dict[str, Any],
    default_phone_region: str | None,
) -> None:
    """Apply email, phone and company domain from ``changes``, removing them from it.

    A company domain that came from the old email follows the new email, unless the
    request sets company_domain itself.
    """
    region = changes.pop("phone_region", None)
    if "phone" in changes:
        phone = changes.pop("phone")
        lead.phone = phone
        lead.phone_normalized = (
            normalize_phone(phone, region or default_phone_region)
            if phone is not None
            else None
        )
    elif region is not None:
        raise InvalidInput(
            "phone_region was sent without phone. Send the phone number it applies to.",
            errors=[FieldError("phone_region", "requires phone", "phone_required")],
        )

    if "company_domain" in changes:
        domain = changes.pop("company_domain")
        lead.company_domain = (
            normalize_company_domain(domain) if domain is not None else None
        )
    elif "email" in changes and lead.company_domain == email_company_domain(
        lead.email_normalized
    ):
        lead.company_domain = email_company_domain(normalize_email(changes["email"]))

    if "email" in changes:
        email = changes.pop("email")
        normalized = normalize_email(email)
        if normalized != lead.email_normalized and lead.status in OPEN_LEAD_STATUSES:
            existing = await DuplicateRepository(session).open_by_email(
                lead.workspace_id, [normalized]
            )
            if normalized in existing:
                keys = IdentityKeys(
                    normalized, lead.phone_normalized, lead.company_domain
                )
                raise await duplicate_error(
                    session,
                    lead.workspace_id,
                    keys,
                    existing[normalized][0],
                    exclude_id=lead.id,
                )
        lead.email = email
        lead.email_normalized = normalized
