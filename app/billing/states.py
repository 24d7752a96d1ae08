"""The invoice status machine, published at ``GET /v1/meta/state-machines``.

``paid`` is reached when payments, credit notes or applied customer credit settle the
invoice, never by a direct request, and left only when a refund or dispute reverses
part of its payments. An open invoice changes its amounts only through those.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "draft": ("open",),
    "open": ("paid", "void", "uncollectible"),
    "uncollectible": ("paid",),
    "paid": ("open",),
    "void": (),
}
STATUSES = tuple(TRANSITIONS)
INITIAL = "draft"

# Transitions that only allocating or reversing payments makes: a paid invoice goes back
# to open when a refund, a dispute or a removed allocation leaves part of it unpaid.
PAYMENT_DRIVEN = frozenset(
    {("open", "paid"), ("uncollectible", "paid"), ("paid", "open")}
)

# Statuses whose invoice may receive a payment allocation. A paid invoice may still take
# one: the surplus shows as payment_status "overpaid" instead of being lost.
PAYABLE = frozenset({"open", "uncollectible", "paid"})

PAYMENT_STATUSES = ("unpaid", "partially_paid", "paid", "overpaid")


def payment_status(amount_due: int, amount_paid: int, credit_applied: int = 0) -> str:
    """Derive the payment status of an invoice from its amount due and amount paid.

    ``amount_due`` is net of pre-payment credit notes and applied customer credit,
    as ``app.billing.amounts`` derives it. So an invoice is paid once nothing
    remains, whether payments, credit or both settled it. Credit applied to part of
    the amount due makes it partially paid even without a payment.
    """
    if amount_paid > amount_due:
        return "overpaid"
    if amount_paid == amount_due:
        return "paid"
    if amount_paid > 0 or credit_applied > 0:
        return "partially_paid"
    return "unpaid"
