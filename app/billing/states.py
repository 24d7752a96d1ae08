"""The invoice status machine, published at ``GET /v1/meta/state-machines``.

``paid`` is reached only by allocating payments, never by a direct request, and an
open invoice changes its amounts only through payments (and, later, credit notes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.models import Invoice

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "draft": ("open",),
    "open": ("paid", "void", "uncollectible"),
    "uncollectible": ("paid",),
    "paid": (),
    "void": (),
}
STATUSES = tuple(TRANSITIONS)
INITIAL = "draft"

# Statuses whose invoice may receive a payment allocation. A paid invoice may still take
# one: the surplus shows as payment_status "overpaid" instead of being lost.
PAYABLE = frozenset({"open", "uncollectible", "paid"})

PAYMENT_STATUSES = ("unpaid", "partially_paid", "paid", "overpaid")


def payment_status(total: int, amount_paid: int) -> str:
    """Derive the payment status of an invoice from its total and what was paid."""
    if amount_paid <= 0:
        return "unpaid"
    if amount_paid < total:
        return "partially_paid"
    if amount_paid == total:
        return "paid"
    return "overpaid"


@dataclass(frozen=True)
class PaymentState:
    """The amounts an invoice shows about its payment, all in minor units."""

    amount_due: int
    amount_paid: int
    amount_remaining: int
    amount_overpaid: int
    payment_status: str


def payment_state(invoice: Invoice) -> PaymentState:
    """Derive the payment amounts and status of ``invoice`` from its stored figures.

    ``amount_due`` is the total. This is the one place that derives these amounts, so
    a later reduction of what is due changes them everywhere at once.
    """
    due = invoice.total
    return PaymentState(
        amount_due=due,
        amount_paid=invoice.amount_paid,
        amount_remaining=max(due - invoice.amount_paid, 0),
        amount_overpaid=max(invoice.amount_paid - due, 0),
        payment_status=payment_status(due, invoice.amount_paid),
    )


def refresh_payment_status(invoice: Invoice) -> None:
    """Store the payment status that ``payment_state`` derives; call after a change."""
    invoice.payment_status = payment_state(invoice).payment_status
