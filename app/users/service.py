"""Users (the reps who own leads) and teams (the groups rules assign across)."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.concurrency import check_if_match
from app.core.errors import FieldError, InvalidInput
from app.core.events import emit
from app.leads.normalize import normalize_email
from app.models import Team, TeamMember, User
from app.users.errors import (
    DuplicateTeamMember,
    DuplicateUser,
    TeamMemberNotFound,
    TeamNotFound,
    UserNotFound,
)
from app.users.repository import TeamRepository, UserRepository
from app.users.schemas import Team as TeamSchema
from app.users.schemas import (
    TeamCreate,
    TeamMemberCreate,
    TeamMemberUpdate,
    TeamUpdate,
    UserCreate,
    UserUpdate,
)
from app.users.schemas import User as UserSchema

log = structlog.get_logger(__name__)

_REQUIRED_ON_UPDATE = ("name", "email", "role", "active")


def user_data(user: User) -> dict[str, Any]:
    """Serialize a user as the API shows it, for events."""
    return UserSchema.model_validate(user).model_dump(mode="json")


def team_view(team: Team, members: Sequence[TeamMember]) -> TeamSchema:
    return TeamSchema.model_validate(
        {
            "id": team.id,
            "name": team.name,
            "members": [
                {
                    "user_id": member.user_id,
                    "capacity": member.capacity,
                    "weight": member.weight,
                    "created_at": member.created_at,
                }
                for member in members
            ],
            "version": team.version,
            "created_at": team.created_at,
            "updated_at": team.updated_at,
        }
    )


def _null_fields(changes: dict[str, Any], names: Sequence[str]) -> None:
    nulls = [name for name in names if name in changes and changes[name] is None]
    if nulls:
        raise InvalidInput(
            f"{', '.join(nulls)} cannot be null. Omit a field to keep its value.",
            errors=[
                FieldError(name, "cannot be null", "null_not_allowed") for name in nulls
            ],
        )


def _user_not_found(user_id: uuid.UUID) -> UserNotFound:
    return UserNotFound(
        f"No user with id {ids.encode('user', user_id)} exists in this workspace."
    )


class UserService:
    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        user_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> User:
        user = await UserRepository.from_session(session).get(
            workspace_id, user_id, for_update=for_update
        )
        if user is None:
            raise _user_not_found(user_id)
        return user

    async def require_active(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        user_id: uuid.UUID,
        field: str,
    ) -> User:
        """Return the active user ``user_id``, or raise ``InvalidInput`` on ``field``."""
        user = await UserRepository.from_session(session).get(workspace_id, user_id)
        encoded = ids.encode("user", user_id)
        if user is None:
            raise InvalidInput(
                f"No user with id {encoded} exists in this workspace. Create the user "
                "with POST /v1/users or send another id.",
                errors=[FieldError(field, f"no user {encoded} here", "user_not_found")],
            )
        if not user.active:
            raise InvalidInput(
                f"The user {encoded} is inactive. Reactivate them with PATCH "
                "/v1/users/{id} or choose an active user.",
                errors=[FieldError(field, f"user {encoded} is inactive", "inactive")],
            )
        return user

    async def acting_user(
        self, session: AsyncSession, principal: Principal
    ) -> uuid.UUID | None:
        """Return the user that On-Behalf-Of names, when it is a user id.

        A value without the ``usr_`` prefix stays a free-text actor. A ``usr_`` value
        that is no valid id, or the id of no active user, is rejected.
        """
        if principal.on_behalf_of is None:
            return None
        if not principal.on_behalf_of.startswith("usr_"):
            return None
        try:
            user_id = ids.decode("user", principal.on_behalf_of)
        except ids.InvalidId as error:
            raise InvalidInput(
                f"On-Behalf-Of {principal.on_behalf_of!r} starts like a user id but is "
                "not one. Send a usr_ id from GET /v1/users, or a name without the "
                "usr_ prefix.",
                errors=[
                    FieldError("header.On-Behalf-Of", str(error), "invalid_user_id")
                ],
            ) from error
        await self.require_active(
            session, principal.workspace_id, user_id, "header.On-Behalf-Of"
        )
        return user_id

    async def create(
        self, session: AsyncSession, principal: Principal, payload: UserCreate
    ) -> User:
        repository = UserRepository.from_session(session)
        email_normalized = normalize_email(payload.email)

        user = await repository.insert(
            {
                "id": ids.new_uuid(),
                "workspace_id": principal.workspace_id,
                "name": payload.name,
                "email": payload.email,
                "email_normalized": email_normalized,
                "role": payload.role,
                "active": payload.active,
                "timezone": payload.timezone,
            }
        )
        if user is None:
            raise await self._duplicate(
                repository, principal.workspace_id, email_normalized
            )

        await emit(
            session,
            workspace_id=user.workspace_id,
            type="user.created",
            object_type="user",
            object_id=user.id,
            data=user_data(user),
            actor=principal.actor,
        )
        log.info("user.created", user_id=str(user.id))
        return user

    async def _duplicate(
        self, repository: UserRepository, workspace_id: uuid.UUID, email: str
    ) -> DuplicateUser:
        existing = await repository.find_id_by_email(workspace_id, email)
        existing_id = ids.encode("user", existing) if existing else None
        return DuplicateUser(
            f"A user with this email already exists: {existing_id}. Update that user "
            "instead.",
            existing_id=existing_id,
            matched_key="email",
        )

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        active: bool | None,
    ) -> tuple[Sequence[User], str | None, bool]:
        return await UserRepository.from_session(session).list(
            workspace_id, limit=limit, cursor=cursor, active=active
        )

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        user_id: uuid.UUID,
        payload: UserUpdate,
        *,
        if_match: str | None,
    ) -> User:
        user = await self.get(session, principal.workspace_id, user_id, for_update=True)
        check_if_match(if_match, user.version)

        changes = payload.model_dump(exclude_unset=True)
        _null_fields(changes, _REQUIRED_ON_UPDATE)
        repository = UserRepository.from_session(session)
        if "email" in changes:
            normalized = normalize_email(changes["email"])
            if normalized != user.email_normalized:
                existing = await repository.find_id_by_email(
                    user.workspace_id, normalized
                )
                if existing is not None:
                    raise await self._duplicate(
                        repository, user.workspace_id, normalized
                    )
            user.email_normalized = normalized
        for name, value in changes.items():
            setattr(user, name, value)
        if not session.is_modified(user):
            return user
        # NOTE: a concurrent update taking the same email fails on the unique key
        # uq_users_workspace_id_email_normalized rather than with a 409.
        await session.flush()
        await session.refresh(user)

        await emit(
            session,
            workspace_id=user.workspace_id,
            type="user.updated",
            object_type="user",
            object_id=user.id,
            data=user_data(user),
            actor=principal.actor,
        )
        log.info("user.updated", user_id=str(user.id), fields=sorted(changes))
        return user


class TeamService:
    async def get(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        team_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Team:
        team = await TeamRepository.from_session(session).get(
            workspace_id, team_id, for_update=for_update
        )
        if team is None:
            raise TeamNotFound(
                f"No team with id {ids.encode('team', team_id)} exists in this "
                "workspace."
            )
        return team

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
    ) -> tuple[Sequence[Team], str | None, bool]:
        return await TeamRepository.from_session(session).list(
            workspace_id, limit=limit, cursor=cursor
        )

    async def view(self, session: AsyncSession, team: Team) -> TeamSchema:
        members = await TeamRepository.from_session(session).members([team.id])
        return team_view(team, members[team.id])

    async def views(
        self, session: AsyncSession, teams: Sequence[Team]
    ) -> builtins.list[TeamSchema]:
        members = await TeamRepository.from_session(session).members(
            [team.id for team in teams]
        )
        return [team_view(team, members[team.id]) for team in teams]

    async def members(
        self, session: AsyncSession, team_id: uuid.UUID, *, for_update: bool = False
    ) -> builtins.list[TeamMember]:
        grouped = await TeamRepository.from_session(session).members(
            [team_id], for_update=for_update
        )
        return grouped[team_id]

    async def create(
        self, session: AsyncSession, principal: Principal, payload: TeamCreate
    ) -> TeamSchema:
        seen: set[uuid.UUID] = set()
        for index, member in enumerate(payload.members):
            field = f"members.{index}.user_id"
            if member.user_id in seen:
                raise InvalidInput(
                    f"The user {ids.encode('user', member.user_id)} is listed twice. "
                    "List each member once.",
                    errors=[FieldError(field, "duplicate member", "duplicate")],
                )
            seen.add(member.user_id)
            await user_service.require_active(
                session, principal.workspace_id, member.user_id, field
            )

        team = Team(
            id=ids.new_uuid(), workspace_id=principal.workspace_id, name=payload.name
        )
        session.add(team)
        await session.flush()
        for member in payload.members:
            session.add(self._member(team, member))
        await session.flush()
        await session.refresh(team)

        view = await self._emit(session, principal, team, "team.created")
        log.info("team.created", team_id=str(team.id), members=len(payload.members))
        return view

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        team_id: uuid.UUID,
        payload: TeamUpdate,
        *,
        if_match: str | None,
    ) -> TeamSchema:
        team = await self.get(session, principal.workspace_id, team_id, for_update=True)
        check_if_match(if_match, team.version)

        changes = payload.model_dump(exclude_unset=True)
        _null_fields(changes, ("name",))
        for name, value in changes.items():
            setattr(team, name, value)
        if not session.is_modified(team):
            return await self.view(session, team)
        await session.flush()
        await session.refresh(team)

        view = await self._emit(session, principal, team, "team.updated")
        log.info("team.updated", team_id=str(team.id), fields=sorted(changes))
        return view

    async def add_member(
        self,
        session: AsyncSession,
        principal: Principal,
        team_id: uuid.UUID,
        payload: TeamMemberCreate,
        *,
        if_match: str | None,
    ) -> TeamSchema:
        # The team row stays locked until commit, so two requests adding one user
        # run one after the other and the second finds the member.
        team = await self.get(session, principal.workspace_id, team_id, for_update=True)
        check_if_match(if_match, team.version)
        await user_service.require_active(
            session, principal.workspace_id, payload.user_id, "user_id"
        )
        repository = TeamRepository.from_session(session)
        if await repository.member(team.id, payload.user_id) is not None:
            raise DuplicateTeamMember(
                f"The user {ids.encode('user', payload.user_id)} is already a member "
                "of this team. Change their capacity or weight with PATCH instead.",
                user_id=ids.encode("user", payload.user_id),
            )

        session.add(self._member(team, payload))
        view = await self._touch(session, principal, team)
        log.info(
            "team.member_added", team_id=str(team.id), user_id=str(payload.user_id)
        )
        return view

    async def update_member(
        self,
        session: AsyncSession,
        principal: Principal,
        team_id: uuid.UUID,
        user_id: uuid.UUID,
        payload: TeamMemberUpdate,
        *,
        if_match: str | None,
    ) -> TeamSchema:
        team = await self.get(session, principal.workspace_id, team_id, for_update=True)
        check_if_match(if_match, team.version)
        member = await self._member_or_404(session, team, user_id)

        changes = payload.model_dump(exclude_unset=True)
        _null_fields(changes, ("weight",))
        for name, value in changes.items():
            setattr(member, name, value)
        if not session.is_modified(member):
            return await self.view(session, team)
        view = await self._touch(session, principal, team)
        log.info("team.member_updated", team_id=str(team.id), user_id=str(user_id))
        return view

    async def remove_member(
        self,
        session: AsyncSession,
        principal: Principal,
        team_id: uuid.UUID,
        user_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> TeamSchema:
        team = await self.get(session, principal.workspace_id, team_id, for_update=True)
        check_if_match(if_match, team.version)
        member = await self._member_or_404(session, team, user_id)

        await session.delete(member)
        view = await self._touch(session, principal, team)
        log.info("team.member_removed", team_id=str(team.id), user_id=str(user_id))
        return view

    async def _member_or_404(
        self, session: AsyncSession, team: Team, user_id: uuid.UUID
    ) -> TeamMember:
        member = await TeamRepository.from_session(session).member(team.id, user_id)
        if member is None:
            raise TeamMemberNotFound(
                f"The user {ids.encode('user', user_id)} is not a member of team "
                f"{ids.encode('team', team.id)}."
            )
        return member

    @staticmethod
    def _member(team: Team, payload: TeamMemberCreate) -> TeamMember:
        return TeamMember(
            team_id=team.id,
            user_id=payload.user_id,
            workspace_id=team.workspace_id,
            capacity=payload.capacity,
            weight=payload.weight,
        )

    async def _touch(
        self, session: AsyncSession, principal: Principal, team: Team
    ) -> TeamSchema:
        # A membership change is a change of the team: its version moves on.
        team.updated_at = utcnow()
        await session.flush()
        await session.refresh(team)
        return await self._emit(session, principal, team, "team.updated")

    async def _emit(
        self, session: AsyncSession, principal: Principal, team: Team, type: str
    ) -> TeamSchema:
        view = await self.view(session, team)
        await emit(
            session,
            workspace_id=team.workspace_id,
            type=type,
            object_type="team",
            object_id=team.id,
            data=view.model_dump(mode="json"),
            actor=principal.actor,
        )
        return view


user_service = UserService()
team_service = TeamService()
