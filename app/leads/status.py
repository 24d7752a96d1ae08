"""Status reasons: which statuses need one, and recording a status change."""

from __future__ import annotations

from app.core.clock import utcnow
from app.core.errors import FieldError, InvalidInput
from app.leads import states
from app.models import Lead


def apply_status(lead: Lead, target: str | None, reason: str | None) -> None:
    """Move ``lead`` to ``target`` with ``reason``; the transition is already checked.

    A change of status replaces ``status_reason`` with ``reason`` (None clears it) and
    sets ``status_changed_at``. A reason sent with the current status replaces the
    stored reason.
    """
    if target is None:
        if reason is not None:
            raise InvalidInput(
                "status_reason was sent without status. Send the status it explains.",
                errors=[
                    FieldError("status_reason", "requires status", "status_required")
                ],
            )
        return
    if target in states.REASON_REQUIRED and reason is None:
        raise InvalidInput(
            f"Moving a lead to {target} requires status_reason. Send why, such as "
            "'no budget'.",
            errors=[
                FieldError(
                    "status_reason",
                    f"required when status is {target}",
                    "status_reason_required",
                )
            ],
        )

    if target == lead.status:
        if reason is not None:
            lead.status_reason = reason
        return
    lead.status = target
    lead.status_reason = reason
    lead.status_changed_at = utcnow()
