"""The stored identity keys of a lead, computed from what a request sends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.leads.normalize import (
    email_company_domain,
    normalize_company_domain,
    normalize_email,
    normalize_phone,
    website_domain,
)
from app.leads.schemas import LeadCreate

# LeadCreate fields that steer the create and are no column of the lead.
REQUEST_ONLY_FIELDS = {"phone_region", "website", "on_duplicate"}


@dataclass(frozen=True)
class IdentityKeys:
    """The normalized keys that duplicate detection matches on."""

    email: str
    phone: str | None
    company_domain: str | None

    def matched(self, row: Any) -> list[str]:
        """Name the keys that ``row`` (a lead or a row with the same columns) shares."""
        keys = []
        if row.email_normalized == self.email:
            keys.append("email")
        if self.phone is not None and row.phone_normalized == self.phone:
            keys.append("phone")
        if (
            self.company_domain is not None
            and row.company_domain == self.company_domain
        ):
            keys.append("company_domain")
        return keys


def resolve_company_domain(
    company_domain: str | None, website: str | None, email_normalized: str
) -> str | None:
    """Pick the company domain: explicit, else the website's, else the email's."""
    if company_domain is not None:
        return normalize_company_domain(company_domain)
    if website is not None:
        return website_domain(website)
    return email_company_domain(email_normalized)


def create_values(
    payload: LeadCreate, default_phone_region: str | None
) -> dict[str, Any]:
    """Return the lead columns of a create request, with its normalized keys."""
    values = payload.model_dump(exclude=REQUEST_ONLY_FIELDS)
    # model_dump renders ids as prefixed strings; the column takes the uuid.
    values["owner_id"] = payload.owner_id
    values["email_normalized"] = normalize_email(payload.email)
    values["phone_normalized"] = (
        normalize_phone(payload.phone, payload.phone_region or default_phone_region)
        if payload.phone is not None
        else None
    )
    values["company_domain"] = resolve_company_domain(
        payload.company_domain, payload.website, values["email_normalized"]
    )
    return values


def keys_of(values: dict[str, Any]) -> IdentityKeys:
    return IdentityKeys(
        email=values["email_normalized"],
        phone=values["phone_normalized"],
        company_domain=values["company_domain"],
    )
