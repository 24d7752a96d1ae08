"""The proposal status machine, published at ``GET /v1/meta/state-machines``.

A sent proposal turns expired once its ``valid_until`` date has passed in its time
zone. That status is read from the date, never requested, and ends the proposal.
"""

from __future__ import annotations

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "draft": ("sent",),
    "sent": ("accepted", "rejected", "expired"),
    "accepted": (),
    "rejected": (),
    "expired": (),
}
STATUSES = tuple(TRANSITIONS)
INITIAL = "draft"
# Statuses reached by time rather than by a request, so never offered as next steps.
DERIVED = frozenset({"expired"})
