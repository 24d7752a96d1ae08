from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from app.core.money import CurrencyCode
from app.core.schemas import InputModel, OutputModel, TimeZone, WorkspaceId

WorkspaceName = Annotated[str, Field(min_length=1, max_length=200)]


class WorkspaceUpdate(InputModel):
    name: WorkspaceName | None = Field(
        default=None, description="Shown as the {{ company.name }} merge field."
    )
    timezone: TimeZone | None = Field(
        default=None,
        description="IANA zone of send windows for leads and sequences without one.",
    )
    default_currency: CurrencyCode | None = None


class Workspace(OutputModel):
    object: Literal["workspace"] = "workspace"
    id: WorkspaceId
    name: str
    timezone: str
    default_currency: str
    version: int
    created_at: datetime
    updated_at: datetime
