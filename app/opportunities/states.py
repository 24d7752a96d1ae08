"""The opportunity status machine, published at ``GET /v1/meta/state-machines``.

Moving to a pipeline's won or lost stage closes the opportunity, and reopening moves it
back to an open stage. A closed opportunity changes stage only by reopening.
"""

from __future__ import annotations

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "open": ("won", "lost"),
    "won": ("open",),
    "lost": ("open",),
}
STATUSES = tuple(TRANSITIONS)
INITIAL = "open"

# Request fields needed to move to a status. A loss needs a catalogued reason, and
# reopening a closed deal (the only way back to open) needs a reason too.
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "lost": ("lost_reason_id",),
    "open": ("reason",),
}
