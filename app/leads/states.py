"""The lead status machine, published at ``GET /v1/meta/state-machines``."""

from __future__ import annotations

# Conversion accepts a lead in any open status, not only a qualified one.
# Merging reaches "merged" from any status but converted and merged.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "new": (
        "working",
        "nurturing",
        "qualified",
        "converted",
        "disqualified",
        "junk",
        "merged",
    ),
    "working": (
        "nurturing",
        "qualified",
        "converted",
        "disqualified",
        "junk",
        "merged",
    ),
    "nurturing": (
        "working",
        "qualified",
        "converted",
        "disqualified",
        "junk",
        "merged",
    ),
    "qualified": ("working", "converted", "disqualified", "merged"),
    "disqualified": ("working", "merged"),
    "junk": ("merged",),
    "converted": (),
    "merged": (),
}
STATUSES = tuple(TRANSITIONS)
# "converted" and "merged" are reached only through their own operations.
SET_BY_OPERATION = frozenset({"converted", "merged"})
# Moving to these statuses requires a status_reason; junk takes an optional one.
REASON_REQUIRED = frozenset({"disqualified"})
