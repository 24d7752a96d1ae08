from __future__ import annotations

from app.core.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable


class InvoiceNotFound(NotFound):
    """No invoice with that id in the caller's workspace."""

    code = "invoice_not_found"


class InvoiceSendNotFound(NotFound):
    """No email of that invoice with that id in the caller's workspace."""

    code = "invoice_send_not_found"


class PaymentNotFound(NotFound):
    """No payment with that id in the caller's workspace."""

    code = "payment_not_found"


class InvoiceNotEditable(Conflict):
    """Only a draft invoice can be changed; an open one changes through payments."""

    code = "invoice_not_editable"
    title = "Invoice not editable"


class InvalidInvoiceTransition(Conflict):
    """The invoice cannot move from its status to the requested one."""

    code = "invalid_transition"
    title = "Invalid status transition"


class InvoiceHasPayments(Conflict):
    """The invoice cannot be voided while payments are allocated to it."""

    code = "invoice_has_payments"
    title = "Invoice has payments"


class InvoiceHasCredit(Conflict):
    """The invoice cannot be voided while credit notes or applied credit reduce it."""

    code = "invoice_has_credit"
    title = "Invoice has credit"


class InvoiceNotPayable(Conflict):
    """A payment cannot be allocated to a draft or void invoice."""

    code = "invoice_not_payable"
    title = "Invoice not payable"


class InvoiceHasNoLines(InvalidInput):
    """An invoice without lines cannot be finalized."""

    code = "invoice_has_no_lines"
    title = "Invoice has no lines"


class InvoiceTotalZero(InvalidInput):
    """An invoice whose total is zero cannot be finalized: there is nothing to collect."""

    code = "invoice_total_zero"
    title = "Invoice total is zero"


class AmountTooLarge(InvalidInput):
    """A line amount or total exceeds the largest amount the API accepts."""

    code = "amount_too_large"
    title = "Amount too large"


class PaymentMismatch(InvalidInput):
    """The payment's customer or currency differs from the invoice it should pay."""

    code = "payment_mismatch"
    title = "Payment does not match the invoice"


class ProviderNotConfigured(ServiceUnavailable):
    """The payment provider's webhook secret is not set, so no event can be verified."""

    code = "provider_not_configured"
    title = "Payment provider not configured"


class InvalidSignature(InvalidInput):
    """The provider webhook's signature is missing, malformed or wrong."""

    status = 400
    code = "invalid_signature"
    title = "Invalid signature"


class SignatureExpired(InvalidInput):
    """The provider webhook is signed correctly but its timestamp is too old."""

    status = 400
    code = "signature_expired"
    title = "Signature expired"


class InvalidProviderPayload(InvalidInput):
    """The provider webhook's verified body is not an event this API can read."""

    status = 400
    code = "invalid_payload"
    title = "Invalid payload"


class InvalidDueDate(InvalidInput):
    """The invoice's explicit due date has already passed in the customer's time zone."""

    code = "invalid_due_date"
    title = "Invalid due date"


class InvoiceAlreadyWrittenOff(Conflict):
    """The invoice was written off before; a write-off happens once."""

    code = "invoice_already_written_off"
    title = "Invoice already written off"


class WriteOffNotApproved(InvalidInput):
    """The approver of a write-off must be another active user than the requester."""

    code = "approver_is_requester"
    title = "Write-off needs another approver"


class WriteOffRequesterMissing(InvalidInput):
    """A write-off names no requesting user in On-Behalf-Of, so no one can approve it."""

    code = "requester_required"
    title = "Write-off needs a requesting user"


class WriteOffApproverNotPermitted(InvalidInput):
    """The approver of a write-off is a user whose role cannot approve write-offs."""

    code = "approver_not_permitted"
    title = "Approver cannot approve write-offs"


class PromiseAlreadyPending(Conflict):
    """The invoice has a promise to pay that is neither kept nor broken yet."""

    code = "promise_pending"
    title = "A promise to pay is pending"


class DunningPolicyNotFound(NotFound):
    """No dunning policy with that id in the caller's workspace."""

    code = "dunning_policy_not_found"


class InvoiceNotSendable(Conflict):
    """Only an open, paid or uncollectible invoice can be emailed; a draft is finalized first."""

    code = "invoice_not_sendable"
    title = "Invoice cannot be sent"
