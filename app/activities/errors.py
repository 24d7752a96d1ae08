from __future__ import annotations

from app.core.errors import Conflict, NotFound


class ActivityNotFound(NotFound):
    """No activity with that id in the caller's workspace."""

    code = "activity_not_found"


class ActivityNotCompletable(Conflict):
    """Only an open task can be completed."""

    code = "activity_not_completable"
    title = "Activity not completable"
