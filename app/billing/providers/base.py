"""Types that every payment provider module produces for the inbox."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class VerifiedEvent:
    """A webhook whose signature checked out, with the fields the inbox stores."""

    event_id: str
    type: str
    created: datetime
    payload: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """Result of processing an event: the inbox status, and the reason if not applied."""

    status: str
    error: str | None = None
    workspace_id: uuid.UUID | None = None
