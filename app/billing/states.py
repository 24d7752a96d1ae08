"""The invoice status machine, published at ``GET /v1/meta/state-machines``.

``paid`` is reached only by allocating payments, never by a direct request, and left
only when a refund or dispute reverses part of them. An open invoice changes its
amounts only through payments (and, later, credit notes).
"""

from __future__ import annotations

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


def payment_status(total: int, amount_paid: int) -> str:
    """Derive the payment status of an invoice from its total and what was paid."""
    if amount_paid <= 0:
        return "unpaid"
    if amount_paid < total:
        return "partially_paid"
    if amount_paid == total:
        return "paid"
    return "overpaid"
