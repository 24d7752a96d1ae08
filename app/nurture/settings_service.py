"""The workspace's nurture settings, which hold the per-lead frequency cap."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import structlog
from pydantic import Field
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.auth import Principal
from app.core.concurrency import check_if_match
from app.core.events import emit
from app.core.schemas import InputModel, OutputModel
from app.models import NurtureSettings
from app.nurture.frequency import DEFAULT_WINDOW_HOURS

log = structlog.get_logger(__name__)

MAX_CAP_COUNT = 1000
MAX_WINDOW_HOURS = 24 * 90


class NurtureSettingsView(OutputModel):
    object: Literal["nurture_settings"] = "nurture_settings"
    email_cap_count: int | None = Field(
        description="The most marketing emails one lead receives within "
        "email_cap_window_hours, across all sequences; null (the default): no cap. "
        "An email step over the cap waits until the oldest counted email leaves the "
        "window."
    )
    email_cap_window_hours: int = Field(
        description="Length of the rolling window of the cap, in hours."
    )
    version: int


class NurtureSettingsUpdate(InputModel):
    email_cap_count: Annotated[int, Field(ge=1, le=MAX_CAP_COUNT)] | None = Field(
        default=None, description="Null turns the cap off."
    )
    email_cap_window_hours: Annotated[int, Field(ge=1, le=MAX_WINDOW_HOURS)] = (
        DEFAULT_WINDOW_HOURS
    )


def _view(row: NurtureSettings | None) -> NurtureSettingsView:
    if row is None:
        return NurtureSettingsView(
            email_cap_count=None,
            email_cap_window_hours=DEFAULT_WINDOW_HOURS,
            version=0,
        )
    return NurtureSettingsView(
        email_cap_count=row.email_cap_count,
        email_cap_window_hours=row.email_cap_window_hours,
        version=row.version,
    )


class NurtureSettingsService:
    async def read(
        self, session: AsyncSession, workspace_id: uuid.UUID
    ) -> NurtureSettingsView:
        return _view(await session.get(NurtureSettings, workspace_id))

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        payload: NurtureSettingsUpdate,
        *,
        if_match: str | None,
    ) -> NurtureSettingsView:
        # The row is created on the first update; the insert that does nothing on a
        # conflict lets the lock below find it either way.
        await session.execute(
            insert(NurtureSettings)
            .values(workspace_id=principal.workspace_id, version=0)
            .on_conflict_do_nothing(index_elements=["workspace_id"])
        )
        row = await session.get(
            NurtureSettings,
            principal.workspace_id,
            with_for_update=True,
            populate_existing=True,
        )
        assert row is not None
        check_if_match(if_match, row.version)
        changes = payload.model_dump(exclude_unset=True)
        changed = {
            name: value
            for name, value in changes.items()
            if getattr(row, name) != value
        }
        if not changed:
            return _view(row)

        for name, value in changed.items():
            setattr(row, name, value)
        row.version += 1
        await session.flush()
        view = _view(row)
        await emit(
            session,
            workspace_id=principal.workspace_id,
            type="nurture_settings.updated",
            object_type="nurture_settings",
            object_id=principal.workspace_id,
            data=view.model_dump(mode="json"),
            actor=principal.actor,
        )
        log.info(
            "nurture_settings.updated",
            email_cap_count=view.email_cap_count,
            email_cap_window_hours=view.email_cap_window_hours,
        )
        return view


nurture_settings_service = NurtureSettingsService()
