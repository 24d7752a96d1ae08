"""The enrollment status machine, published at ``GET /v1/meta/state-machines``."""

from __future__ import annotations

from collections.abc import Iterable

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
    "disqualified",
    "invoice_paid",
)
# The exit reasons a sequence's exit_rules may list. "manual" is always allowed, and
# the rest are set by the system rather than by a rule.
EXIT_RULE_REASONS = (
    "replied",
    "converted",
    "opportunity_created",
    "unsubscribed",
    "bounced",
    "disqualified",
    "invoice_paid",
)
# An unsubscribed or bounced address must get no more mail, so these exit the lead
# from every sequence whatever its exit_rules list.
ALWAYS_EXIT_REASONS = frozenset({"unsubscribed", "bounced"})


def exit_rules(requested: Iterable[str] | None) -> list[str]:
    """Return the exit rules to store: all when none were given, else deduplicated."""
    if requested is None:
        return list(EXIT_RULE_REASONS)
    chosen = set(requested)
    return [reason for reason in EXIT_RULE_REASONS if reason in chosen]


def requestable(status: str) -> list[str]:
    """List the statuses a client may move an enrollment in ``status`` to."""
    return [target for target in TRANSITIONS[status] if target not in SET_BY_WORKER]
