from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Select, Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from app.core.pagination import paginate
from app.models import Team, TeamMember, User

_USERS = cast(Table, User.__table__)
# A concurrent insert of the same email returns no row instead of aborting the
# transaction, so the service can name the existing user in a 409.
_INSERT_USER = (
    pg_insert(_USERS)
    .on_conflict_do_nothing(index_elements=["workspace_id", "email_normalized"])
    .returning(*_USERS.c)
)


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> UserRepository:
        return cls(session)

    async def get(
        self, workspace_id: uuid.UUID, user_id: uuid.UUID, *, for_update: bool = False
    ) -> User | None:
        statement = select(User).where(
            User.workspace_id == workspace_id, User.id == user_id
        )
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def get_many(
        self, workspace_id: uuid.UUID, user_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, User]:
        rows = await self.session.scalars(
            select(User).where(User.workspace_id == workspace_id, User.id.in_(user_ids))
        )
        return {row.id: row for row in rows}

    async def find_id_by_email(
        self, workspace_id: uuid.UUID, email_normalized: str
    ) -> uuid.UUID | None:
        return await self.session.scalar(
            select(User.id).where(
                User.workspace_id == workspace_id,
                User.email_normalized == email_normalized,
            )
        )

    async def insert(self, values: dict[str, Any]) -> User | None:
        """Insert a user; return None, changing nothing, when the email is taken."""
        row = (await self.session.execute(_INSERT_USER, values)).one_or_none()
        if row is None:
            return None
        user = User(**row._mapping)
        make_transient_to_detached(user)
        self.session.add(user)
        return user

    async def list(
        self,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        active: bool | None = None,
    ) -> tuple[Sequence[User], str | None, bool]:
        statement: Select[User] = select(User).where(User.workspace_id == workspace_id)
        if active is not None:
            statement = statement.where(User.active == active)
        return await paginate(
            self.session, statement, User.id, limit=limit, cursor=cursor
        )


class TeamRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @classmethod
    def from_session(cls, session: AsyncSession) -> TeamRepository:
        return cls(session)

    async def get(
        self, workspace_id: uuid.UUID, team_id: uuid.UUID, *, for_update: bool = False
    ) -> Team | None:
        statement = select(Team).where(
            Team.workspace_id == workspace_id, Team.id == team_id
        )
        if for_update:
            statement = statement.with_for_update()
        return await self.session.scalar(statement)

    async def list(
        self, workspace_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> tuple[Sequence[Team], str | None, bool]:
        statement: Select[Team] = select(Team).where(Team.workspace_id == workspace_id)
        return await paginate(
            self.session, statement, Team.id, limit=limit, cursor=cursor
        )

    async def members(
        self, team_ids: Sequence[uuid.UUID], *, for_update: bool = False
    ) -> dict[uuid.UUID, builtins.list[TeamMember]]:
        """Return the members of each team, in the order they joined."""
        statement = (
            select(TeamMember)
            .where(TeamMember.team_id.in_(team_ids))
            .order_by(TeamMember.team_id, TeamMember.created_at, TeamMember.user_id)
        )
        if for_update:
            statement = statement.with_for_update()
        grouped: dict[uuid.UUID, builtins.list[TeamMember]] = {
            team_id: [] for team_id in team_ids
        }
        for member in await self.session.scalars(statement):
            grouped[member.team_id].append(member)
        return grouped

    async def member(self, team_id: uuid.UUID, user_id: uuid.UUID) -> TeamMember | None:
        return await self.session.get(TeamMember, (team_id, user_id))
