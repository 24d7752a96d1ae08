from __future__ import annotations

from app.core.errors import Conflict, NotFound


class OpportunityNotFound(NotFound):
    """No opportunity with that id in the caller's workspace."""

    code = "opportunity_not_found"


class PipelineNotFound(NotFound):
    """No pipeline with that id in the caller's workspace."""

    code = "pipeline_not_found"


class InvalidOpportunityTransition(Conflict):
    """The opportunity's status does not allow the requested change."""

    code = "invalid_transition"
    title = "Invalid status transition"
