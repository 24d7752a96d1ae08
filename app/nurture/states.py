"""The enrollment status machine, published at ``GET /v1/meta/state-machines``."""

from __future__ import annotations

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "active": ("paused", "completed", "exited", "failed"),
    # A step already being sent when the enrollment was paused still finishes, so a
    # paused enrollment can complete or fail.
    "paused": ("active", "completed", "exited", "failed"),
    "completed": (),
    "exited": (),
    # Resuming a failed enrollment retries the step that failed.
    "failed": ("active",),
}
STATUSES = tuple(TRANSITIONS)
# The statuses the partial unique index uq_enrollments_running covers: a lead is in a
# sequence at most once at a time in one of them.
RUNNING_STATUSES = ("active", "paused")
# "completed" and "failed" are reached only through the worker running the steps.
SET_BY_WORKER = frozenset({"completed", "failed"})

EXIT_REASONS = (
    "replied",
    "converted",
    "unsubscribed",
    "bounced",
    "opportunity_created",
    "manual",
    "lead_closed",
    "merged",
)


def requestable(status: str) -> list[str]:
    """List the statuses a client may move an enrollment in ``status`` to."""
    return [target for target in TRANSITIONS[status] if target not in SET_BY_WORKER]
