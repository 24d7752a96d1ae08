"""The amount an invoice requests once credit notes and customer credit count.

Every reader of an invoice's amounts goes through ``invoice_amounts``, so the API view,
the payment status, the overdue check and the credit balance agree:

- ``amount_due = total - pre_payment_credit_notes_amount - customer_credit_applied``
- ``amount_remaining = max(amount_due - amount_paid, 0)``
- ``amount_overpaid = max(amount_paid - amount_due, 0)``
- ``creditable = total - credited_amount``: what later credit notes may still credit.
- ``amount_returnable = max(amount_paid + customer_credit_applied
  - post_payment_credit_notes_amount, 0)``: what the invoice received and has not
  given back yet.

Pre-payment credit notes lower what is owed; post-payment ones (customer credit or a
refund) return money already received and leave ``amount_due`` unchanged. Money goes
back from an invoice in two ways, post-payment credit notes and refunds of the
payments allocated to it, and together they never exceed what it received: both take
at most ``amount_returnable``.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.billing import states
from app.models import Invoice


@dataclass(frozen=True)
class InvoiceAmounts:
    """The derived amounts of one invoice, in minor units of its currency."""

    total: int
    pre_payment_credit_notes_amount: int
    post_payment_credit_notes_amount: int
    credited_amount: int
    customer_credit_applied: int
    amount_due: int
    amount_paid: int
    amount_remaining: int
    amount_overpaid: int
    creditable: int
    amount_returnable: int
    payment_status: str


def invoice_amounts(invoice: Invoice) -> InvoiceAmounts:
    """Derive amount due, remaining, overpaid and creditable from the stored columns."""
    pre = invoice.pre_payment_credit_notes_amount or 0
    post = invoice.post_payment_credit_notes_amount or 0
    applied = invoice.customer_credit_applied or 0
    total = invoice.total or 0
    paid = invoice.amount_paid or 0
    due = total - pre - applied
    return InvoiceAmounts(
        total=total,
        pre_payment_credit_notes_amount=pre,
        post_payment_credit_notes_amount=post,
        credited_amount=pre + post,
        customer_credit_applied=applied,
        amount_due=due,
        amount_paid=paid,
        amount_remaining=max(due - paid, 0),
        amount_overpaid=max(paid - due, 0),
        creditable=total - pre - post,
        amount_returnable=max(paid + applied - post, 0),
        payment_status=states.payment_status(due, paid, applied),
    )


def is_settled(invoice: Invoice) -> bool:
    """Tell whether payments, credit notes and credit cover the whole amount due."""
    return invoice_amounts(invoice).amount_remaining == 0


def refresh_payment_status(invoice: Invoice) -> None:
    """Store the payment status that ``invoice_amounts`` derives; call after a change."""
    invoice.payment_status = invoice_amounts(invoice).payment_status
