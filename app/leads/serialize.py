"""The event form of a lead."""

from __future__ import annotations

from typing import Any

from app.leads.schemas import Lead as LeadSchema
from app.models import Lead


def lead_data(lead: Lead) -> dict[str, Any]:
    """Serialize a lead as the API shows it, for events."""
    return LeadSchema.model_validate(lead).model_dump(mode="json")
