from __future__ import annotations

from app.core.errors import Conflict, NotFound


class OpportunityNotFound(NotFound):
    """No opportunity with that id in the caller's workspace."""

    code = "opportunity_not_found"


class AmountLocked(Conflict):
    """The opportunity is won or lost, so its amount and currency cannot change."""

    code = "amount_locked"
    title = "Amount cannot change"


class PipelineNotFound(NotFound):
    """No pipeline with that id in the caller's workspace."""

    code = "pipeline_not_found"


class InvalidOpportunityTransition(Conflict):
    """The opportunity's status does not allow the requested change."""

    code = "invalid_transition"
    title = "Invalid status transition"


class StageNotFound(NotFound):
    """No stage with that id in the pipeline."""

    code = "stage_not_found"


class LostReasonNotFound(NotFound):
    """No lost reason with that id in the caller's workspace."""

    code = "lost_reason_not_found"


class ObjectionNotFound(NotFound):
    """No objection with that id on the opportunity."""

    code = "objection_not_found"


class InvalidPipelineShape(Conflict):
    """The change would leave a pipeline without exactly one won stage, at least one
    lost stage and at least one open stage."""

    code = "invalid_pipeline_shape"
    title = "Invalid pipeline shape"


class TooManyStages(Conflict):
    """The pipeline already has the maximum number of stages."""

    code = "too_many_stages"
    title = "Too many stages"


class InUse(Conflict):
    """The object is still used by opportunities, so it cannot be removed or changed."""

    code = "in_use"
    title = "In use"


class DuplicateName(Conflict):
    """Another object of the same kind already has that name."""

    code = "duplicate_name"
    title = "Duplicate name"


class PipelineArchived(Conflict):
    """The pipeline is archived, so no opportunity can enter it or change it."""

    code = "pipeline_archived"
    title = "Pipeline archived"


class StageRequirementsMissing(Conflict):
    """The opportunity lacks fields that the target stage requires."""

    code = "stage_requirements_missing"
    title = "Stage requirements missing"


class BlockingObjectionsOpen(Conflict):
    """Open blocking objections prevent winning the opportunity."""

    code = "blocking_objections_open"
    title = "Blocking objections open"
