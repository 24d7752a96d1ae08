from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import EmailStr, Field

from app.core.schemas import InputModel, OutputModel, TeamId, TimeZone, UserId

UserRole = Literal["rep", "manager", "admin"]
UserName = Annotated[str, Field(min_length=1, max_length=200)]
TeamName = Annotated[str, Field(min_length=1, max_length=200)]
Capacity = Annotated[
    int,
    Field(
        ge=0,
        le=1_000_000,
        description="Maximum open leads that assignment rules give the member; "
        "null for no limit.",
    ),
]
Weight = Annotated[
    int,
    Field(
        ge=1,
        le=1_000,
        description="Share of leads under the weighted strategy, relative to the "
        "other members.",
    ),
]
MAX_INITIAL_MEMBERS = 100


class UserCreate(InputModel):
    name: UserName
    email: EmailStr = Field(max_length=320)
    role: UserRole = "rep"
    active: bool = True
    timezone: TimeZone | None = None


class UserUpdate(InputModel):
    name: UserName | None = None
    email: EmailStr | None = Field(default=None, max_length=320)
    role: UserRole | None = None
    active: bool | None = Field(
        default=None,
        description="false deactivates the user: assignment skips them and new leads "
        "cannot name them as owner.",
    )
    timezone: TimeZone | None = Field(default=None, description="null clears it.")


class User(OutputModel):
    object: Literal["user"] = "user"
    id: UserId
    name: str
    email: str
    email_normalized: str
    role: UserRole
    active: bool
    timezone: str | None
    version: int
    created_at: datetime
    updated_at: datetime


class TeamMemberCreate(InputModel):
    user_id: UserId
    capacity: Capacity | None = None
    weight: Weight = 1


class TeamMemberUpdate(InputModel):
    capacity: Capacity | None = None
    weight: Weight | None = None


class TeamMember(OutputModel):
    object: Literal["team_member"] = "team_member"
    user_id: UserId
    capacity: int | None
    weight: int
    created_at: datetime


class TeamCreate(InputModel):
    name: TeamName
    members: list[TeamMemberCreate] = Field(
        default_factory=list, max_length=MAX_INITIAL_MEMBERS
    )


class TeamUpdate(InputModel):
    name: TeamName | None = None


class Team(OutputModel):
    object: Literal["team"] = "team"
    id: TeamId
    name: str
    members: list[TeamMember] = Field(description="In the order they joined.")
    version: int
    created_at: datetime
    updated_at: datetime
