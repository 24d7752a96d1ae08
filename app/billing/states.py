"""The invoice status machine, published at ``GET /v1/meta/state-machines``.

``paid`` is reached when payments, credit notes or applied customer credit settle the
invoice, never by a direct request, and left only when a refund, a dispute or a
removed allocation reverses part of its payments. The invoice then goes back to the
status it was paid from: ``uncollectible`` when it was marked uncollectible or written
off before, else ``open``. An open invoice changes its amounts only through those.
"""

from __future__ import annotations

from datetime import datetime

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "draft": ("open",),
    "open": ("paid", "void", "uncollectible"),
    "uncollectible": ("paid",),
    "paid": ("open", "uncollectible"),
    "void": (),
}
STATUSES = tuple(TRANSITIONS)
INITIAL = "draft"

# Transitions that only allocating or reversing payments makes: a paid invoice goes back
# to open or uncollectible when a refund, a dispute or a removed allocation leaves part
# of it unpaid.
PAYMENT_DRIVEN = frozenset(
    {
        ("open", "paid"),
        ("uncollectible", "paid"),
        ("paid", "open"),
        ("paid", "uncollectible"),
    }
)

# Statuses whose invoice may receive a payment allocation. A paid invoice may still take
# one: the surplus shows as payment_status "overpaid" instead of being lost.
PAYABLE = frozenset({"open", "uncollectible", "paid"})


def unpaid_status(uncollectible_at: datetime | None) -> str:
    """Return the status a paid invoice goes back to when part of it is unpaid again.

    ``uncollectible_at`` is set only when an open invoice turns uncollectible, and
    an uncollectible invoice never turns open, so it records which status the invoice
    was paid from. Going back to ``uncollectible`` keeps dunning off the invoice.
    """
    return "uncollectible" if uncollectible_at is not None else "open"


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
