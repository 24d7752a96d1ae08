"""Due dates and overdue instants in the customer's time zone, DST days included."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from app.billing import terms
from app.models import Invoice

KIRITIMATI = ZoneInfo("Pacific/Kiritimati")  # UTC+14
PAGO_PAGO = ZoneInfo("Pacific/Pago_Pago")  # UTC-11
NEW_YORK = ZoneInfo("America/New_York")


def invoice(payment_terms: str, days: int | None, due: date | None = None) -> Invoice:
    fake: Any = SimpleNamespace(
        payment_terms=payment_terms, payment_terms_days=days, due_date=due
    )
    return cast(Invoice, fake)


class TestDueDate:
    def test_same_instant_different_days(self) -> None:
        now = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
        net_30 = invoice("net_30", 30)

        east = terms.due_date(net_30, now, KIRITIMATI)
        west = terms.due_date(net_30, now, PAGO_PAGO)

        # 2026-03-02 00:30 in Kiritimati, 2026-02-28 23:30 in Pago Pago.
        assert east == date(2026, 4, 1)
        assert west == date(2026, 3, 30)

    def test_due_on_receipt_is_local_today(self) -> None:
        now = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)

        due = terms.due_date(invoice("due_on_receipt", 0), now, KIRITIMATI)

        assert due == date(2026, 3, 2)

    def test_explicit_date_kept(self) -> None:
        now = datetime(2026, 3, 1, tzinfo=UTC)

        due = terms.due_date(invoice("due_date", None, date(2026, 5, 5)), now, NEW_YORK)

        assert due == date(2026, 5, 5)


class TestOverdueAt:
    def test_kiritimati_and_pago_pago(self) -> None:
        due = date(2026, 4, 1)

        assert terms.overdue_at(due, KIRITIMATI) == datetime(2026, 4, 1, 10, tzinfo=UTC)
        assert terms.overdue_at(due, PAGO_PAGO) == datetime(2026, 4, 2, 11, tzinfo=UTC)

    def test_day_before_spring_forward(self) -> None:
        # New York moves to EDT at 02:00 on 2026-03-08; that midnight is still EST.
        assert terms.overdue_at(date(2026, 3, 7), NEW_YORK) == datetime(
            2026, 3, 8, 5, tzinfo=UTC
        )
        assert terms.overdue_at(date(2026, 3, 8), NEW_YORK) == datetime(
            2026, 3, 9, 4, tzinfo=UTC
        )

    def test_day_of_fall_back(self) -> None:
        # Back to EST at 02:00 on 2026-11-01: that day lasts 25 hours.
        assert terms.overdue_at(date(2026, 10, 31), NEW_YORK) == datetime(
            2026, 11, 1, 4, tzinfo=UTC
        )
        assert terms.overdue_at(date(2026, 11, 1), NEW_YORK) == datetime(
            2026, 11, 2, 5, tzinfo=UTC
        )


zones = st.sampled_from(
    [
        "Pacific/Kiritimati",
        "Pacific/Pago_Pago",
        "America/New_York",
        "America/Santiago",
        "America/Havana",
        "Asia/Beirut",
        "Europe/Berlin",
        "Australia/Lord_Howe",
        "Asia/Kathmandu",
        "UTC",
    ]
)


@given(zones, st.dates(min_value=date(2000, 1, 1), max_value=date(2037, 12, 31)))
def test_overdue_at_is_end_of_local_day(zone_name: str, due: date) -> None:
    zone = ZoneInfo(zone_name)

    moment = terms.overdue_at(due, zone)

    # Whether or not a DST change skips local midnight, the instant is the first one
    # of the next local day, and the instant before it is still on the due date.
    assert moment.astimezone(zone).date() == due + timedelta(days=1)
    assert (moment - timedelta(microseconds=1)).astimezone(zone).date() == due
