from __future__ import annotations

from app.core.errors import Conflict, NotFound


class LeadNotFound(NotFound):
    """No lead with that id in the caller's workspace."""

    code = "lead_not_found"


class DuplicateLead(Conflict):
    """An open lead with the same normalized email exists."""

    code = "duplicate_lead"
    title = "Duplicate lead"


class InvalidLeadTransition(Conflict):
    """The lead cannot move from its status to the requested one."""

    code = "invalid_transition"
    title = "Invalid status transition"


class LeadAlreadyConverted(Conflict):
    """The lead was converted before. The problem names the rows it created."""

    code = "lead_already_converted"
    title = "Lead already converted"


class LeadNotConvertible(Conflict):
    """The lead's status (disqualified, junk or merged) rules out a conversion."""

    code = "lead_not_convertible"
    title = "Lead not convertible"


class LeadNotMergeable(Conflict):
    """The lead's status (converted or merged) or its erasure rules out a merge."""

    code = "lead_not_mergeable"
    title = "Lead not mergeable"


class LeadErased(Conflict):
    """The lead's personal data was erased, so none can be written to it again."""

    code = "lead_erased"
    title = "Lead erased"


def erased_error(lead_id: str, what: str) -> LeadErased:
    return LeadErased(
        f"Lead {lead_id} was erased, so it takes no {what}. Create a new lead for "
        "the person instead.",
        lead_id=lead_id,
    )
