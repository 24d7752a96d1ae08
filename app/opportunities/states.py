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
