from __future__ import annotations

from app.core.errors import Conflict, NotFound


class UserNotFound(NotFound):
    """No user with that id in the caller's workspace."""

    code = "user_not_found"


class DuplicateUser(Conflict):
    """A user of the workspace has the same normalized email."""

    code = "duplicate_user"
    title = "Duplicate user"


class TeamNotFound(NotFound):
    """No team with that id in the caller's workspace."""

    code = "team_not_found"


class TeamMemberNotFound(NotFound):
    """The user is not a member of the team."""

    code = "team_member_not_found"


class DuplicateTeamMember(Conflict):
    """The user is already a member of the team."""

    code = "duplicate_team_member"
    title = "Already a member"
