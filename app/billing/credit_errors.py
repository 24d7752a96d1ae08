from __future__ import annotations

from app.core.errors import Conflict, InvalidInput, NotFound


class CreditNoteNotFound(NotFound):
    """No credit note with that id in the caller's workspace."""

    code = "credit_note_not_found"


class InvoiceNotCreditable(Conflict):
    """Only an open, paid or uncollectible invoice can be credited."""

    code = "invoice_not_creditable"
    title = "Invoice not creditable"


class CreditExceedsInvoice(Conflict):
    """The credit is larger than what the invoice can still be credited."""

    code = "credit_exceeds_invoice"
    title = "Credit exceeds the invoice"


class InvalidCreditNote(InvalidInput):
    """The credit note's lines or distribution do not fit the invoice."""

    code = "invalid_credit_note"
    title = "Invalid credit note"


class CreditNoteNotVoidable(Conflict):
    """The credit note is void already, or its credit has been used."""

    code = "credit_note_not_voidable"
    title = "Credit note cannot be voided"


class CreditNoteRefundNotPending(Conflict):
    """The credit note has no refund waiting to be paid out."""

    code = "credit_note_refund_not_pending"
    title = "Credit note refund not pending"


class InsufficientCredit(Conflict):
    """The customer's credit in that currency is smaller than the amount."""

    code = "insufficient_credit"
    title = "Insufficient credit"


class CreditCurrencyMismatch(InvalidInput):
    """Credit in one currency cannot pay an invoice in another."""

    code = "currency_mismatch"
    title = "Currency mismatch"


class InvoiceNotOpenForCredit(Conflict):
    """Customer credit applies only to an open or uncollectible invoice that owes money."""

    code = "invoice_not_payable"
    title = "Invoice not payable"
