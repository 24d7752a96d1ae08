from __future__ import annotations

from datetime import date

from sqlalchemy import ARRAY, Date, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin, VersionMixin, WorkspaceMixin


class HolidayCalendar(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """Dates on which a sequence that uses the calendar sends nothing."""

    __tablename__ = "holiday_calendars"

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    dates: Mapped[list[date]] = mapped_column(ARRAY(Date), default=list)
