"""The moment an invoice turns overdue: the end of its due date in its time zone.

An invoice due on 2026-03-10 in ``Pacific/Kiritimati`` (UTC+14) is overdue from
2026-03-10T10:00Z, the same invoice in ``Pacific/Pago_Pago`` (UTC-11) from
2026-03-11T11:00Z. ``overdue_at`` computes it in Python and ``overdue_at_sql`` in
PostgreSQL, for the sweep; both read the zone stored on the invoice at finalization.
A local midnight that a DST change skips is read with the offset before the change by
both, so they agree.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import TIMESTAMP, cast, func, literal
from sqlalchemy.sql.elements import ColumnElement

from app.billing.amounts import invoice_amounts
from app.models import Invoice

# Statuses of an invoice that still expects money, so that it can be overdue.
COLLECTING = frozenset({"open", "uncollectible"})


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_instant(day: date, timezone: str | None, hour: int = 0) -> datetime:
    """Return the UTC instant of ``hour``:00 on ``day`` in the IANA zone ``timezone``."""
    local = datetime.combine(day, time(hour), tzinfo=_zone(timezone))
    return local.astimezone(UTC)


def local_date(instant: datetime, timezone: str | None) -> date:
    """Return the calendar date of ``instant`` in the IANA zone ``timezone``."""
    return instant.astimezone(_zone(timezone)).date()


def overdue_at(due_date: date | None, timezone: str | None) -> datetime | None:
    """Return when an invoice due on ``due_date`` turns overdue, or None without one.

    That is the end of the due date, the next local midnight, in ``timezone``.
    """
    if due_date is None:
        return None
    return local_instant(due_date + timedelta(days=1), timezone)


def end_of_day_sql(day: ColumnElement[Any]) -> ColumnElement[Any]:
    """Build the SQL instant of the midnight after ``day`` in the invoice's zone."""
    next_day = cast(day + literal(1), TIMESTAMP(timezone=False))
    return func.timezone(func.coalesce(Invoice.timezone, "UTC"), next_day)


def overdue_at_sql() -> ColumnElement[Any]:
    """Build the SQL expression of an invoice's overdue moment over its columns.

    Finalization stores ``overdue_at``. A row written without it uses the computed end
    of its due date.
    """
    return func.coalesce(Invoice.overdue_at, end_of_day_sql(Invoice.due_date))  # type: ignore[arg-type]


def overdue_moment(invoice: Invoice) -> datetime | None:
    """Return when ``invoice`` turns overdue: its stored ``overdue_at``, or computed."""
    if invoice.overdue_at is not None:
        return invoice.overdue_at
    return overdue_at(invoice.due_date, invoice.timezone)


def is_overdue(invoice: Invoice, now: datetime) -> bool:
    """Tell whether ``invoice`` is past its overdue moment with money still owed."""
    if invoice.status not in COLLECTING:
        return False
    if invoice_amounts(invoice).amount_remaining == 0:
        return False
    moment = overdue_moment(invoice)
    return moment is not None and now >= moment


def days_overdue(invoice: Invoice, now: datetime) -> int:
    """Count the local calendar days since the due date; 0 unless overdue."""
    if not is_overdue(invoice, now) or invoice.due_date is None:
        return 0
    return (local_date(now, invoice.timezone) - invoice.due_date).days
