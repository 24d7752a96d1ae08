"""Payment terms: the due date and the overdue moment, in the customer's time zone.

Terms are ``due_on_receipt`` (due the day the invoice is finalized), ``net_N`` (N days
later, 0 to 365) or ``due_date`` (an explicit date). Days are calendar days in the
customer's IANA time zone at finalization. The invoice becomes overdue at the first
instant after its due date there: local midnight at the start of the next day, or the
first instant of that day when a DST change skips midnight.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from app.billing.errors import InvalidDueDate
from app.core import ids
from app.core.errors import FieldError
from app.models import Invoice

DUE_ON_RECEIPT = "due_on_receipt"
EXPLICIT = "due_date"


def resolve(
    payment_terms: str | None,
    payment_terms_days: int | None,
    due_date: date | None,
    *,
    customer_default: int,
) -> tuple[str, int | None]:
    """Return the stored ``(payment_terms, payment_terms_days)`` of a request.

    The request schema lets at most one of the three through. None of them means the
    customer's default terms.
    """
    if due_date is not None:
        return EXPLICIT, None
    if payment_terms is not None:
        if payment_terms == DUE_ON_RECEIPT:
            return DUE_ON_RECEIPT, 0
        days = int(payment_terms.removeprefix("net_"))
        return payment_terms, days
    days = payment_terms_days if payment_terms_days is not None else customer_default
    return (DUE_ON_RECEIPT if days == 0 else f"net_{days}"), days


def local_day(now: datetime, zone: ZoneInfo) -> date:
    return now.astimezone(zone).date()


def due_date(invoice: Invoice, now: datetime, zone: ZoneInfo) -> date:
    """Return the due date of an invoice finalized at ``now`` for a customer in ``zone``."""
    if invoice.payment_terms == EXPLICIT and invoice.due_date is not None:
        return invoice.due_date
    return local_day(now, zone) + timedelta(days=invoice.payment_terms_days or 0)


def overdue_at(due: date, zone: ZoneInfo) -> datetime:
    """Return the UTC instant at which local day ``due`` has ended in ``zone``.

    ``datetime.combine`` with ``fold=0`` maps a local midnight that a DST change
    skipped to the instant of the change, which is the start of that local day.
    """
    local_midnight = datetime.combine(due + timedelta(days=1), time(0), tzinfo=zone)
    return local_midnight.astimezone(UTC)


def check_explicit_due_date(invoice: Invoice, now: datetime, zone: ZoneInfo) -> None:
    """Reject finalizing with an explicit due date already past in ``zone``."""
    if invoice.payment_terms != EXPLICIT or invoice.due_date is None:
        return
    today = local_day(now, zone)
    if invoice.due_date < today:
        raise InvalidDueDate(
            f"Invoice {ids.encode('invoice', invoice.id)} is due on "
            f"{invoice.due_date.isoformat()}, before today ({today.isoformat()}) in "
            f"the customer's time zone {zone.key}. Set a later due_date or "
            "payment_terms with PATCH, then finalize.",
            errors=[
                FieldError(
                    "due_date",
                    f"{invoice.due_date.isoformat()} is in the past in {zone.key}",
                    "due_date_past",
                )
            ],
        )
