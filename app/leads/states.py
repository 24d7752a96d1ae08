"""The lead status machine, published at ``GET /v1/meta/state-machines``."""

from __future__ import annotations

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "new": ("working", "nurturing", "qualified", "disqualified", "junk"),
    "working": ("nurturing", "qualified", "disqualified", "junk"),
    "nurturing": ("working", "qualified", "disqualified", "junk"),
    "qualified": ("working", "converted", "disqualified"),
    "disqualified": ("working",),
    "junk": (),
    "converted": (),
    "merged": (),
}
STATUSES = tuple(TRANSITIONS)
# "converted" and "merged" are reached only through their own operations.
SET_BY_OPERATION = frozenset({"converted", "merged"})
