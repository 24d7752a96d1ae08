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
