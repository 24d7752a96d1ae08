"""The lead status machine, published at ``GET /v1/meta/state-machines``."""

from __future__ import annotations

# Conversion accepts a lead in any open status, not only a qualified one.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "new": ("working", "nurturing", "qualified", "converted", "disqualified", "junk"),
    "working": ("nurturing", "qualified", "converted", "disqualified", "junk"),
    "nurturing": ("working", "qualified", "converted", "disqualified", "junk"),
    "qualified": ("working", "converted", "disqualified"),
    "disqualified": ("working",),
    "junk": (),
    "converted": (),
    "merged": (),
}
STATUSES = tuple(TRANSITIONS)
# "converted" and "merged" are reached only through their own operations.
SET_BY_OPERATION = frozenset({"converted", "merged"})
