"""Errors of allocations, refunds, disputes, payment links and reconciliation."""

from __future__ import annotations

from app.core.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable


class PaymentNotSucceeded(Conflict):
    """Only a succeeded payment can be allocated or refunded."""

    code = "payment_not_succeeded"
    title = "Payment not succeeded"


class AllocationExceedsUnallocated(Conflict):
    """The allocations add up to more than the payment's unallocated amount."""

    code = "allocation_exceeds_unallocated"
    title = "Allocation exceeds the unallocated amount"


class AllocationExceedsCredit(Conflict):
    """The allocations take more than the customer's credit has left, because part
    of the payment's unallocated amount was applied to invoices as credit."""

    code = "allocation_exceeds_credit"
    title = "Allocation exceeds the customer's credit"


class AllocationExceedsInvoice(Conflict):
    """An allocation is larger than what its invoice still owes."""

    code = "allocation_exceeds_invoice"
    title = "Allocation exceeds the amount remaining"


class AllocationNotFound(NotFound):
    """The payment has no allocation to that invoice."""

    code = "allocation_not_found"


class AllocationNotRemovable(Conflict):
    """Removing the allocation would return money that credit notes gave back."""

    code = "allocation_not_removable"
    title = "Allocation cannot be removed"


class RefundExceedsRefundable(Conflict):
    """The refund is larger than what the payment still has to give back.

    What is left excludes money that credit notes of the paid invoices already gave
    back as customer credit or refund.
    """

    code = "refund_exceeds_refundable"
    title = "Refund exceeds the refundable amount"


class RefundExceedsCredit(Conflict):
    """The refund takes more customer credit than the customer has left."""

    code = "refund_exceeds_credit"
    title = "Refund exceeds the customer's credit"


class RefundExceedsUnallocated(Conflict):
    """The named allocations leave more to take from the unallocated amount than it has."""

    code = "refund_exceeds_unallocated"
    title = "Refund needs more allocations"


class RefundThroughProvider(Conflict):
    """The payment's provider cannot refund through this API; its webhook records one."""

    code = "refund_through_provider"
    title = "Refund at the provider"


class DisputeNotFound(NotFound):
    """No dispute with that id in the caller's workspace."""

    code = "dispute_not_found"


class InvoiceNotCollectable(Conflict):
    """A payment link needs an open or uncollectible invoice that still owes money."""

    code = "invoice_not_collectable"
    title = "Invoice not collectable"


class ProviderApiNotConfigured(ServiceUnavailable):
    """The provider's API key is not set, so nothing can be asked of the provider."""

    code = "provider_api_not_configured"
    title = "Payment provider API not configured"


class ProviderApiFailed(ServiceUnavailable):
    """The provider's API failed or could not be reached; the request can be retried."""

    code = "provider_api_failed"
    title = "Payment provider API failed"


class ProviderRejected(Conflict):
    """The provider rejected the request as invalid; sending it again fails again."""

    code = "provider_rejected"
    title = "Payment provider rejected the request"


class ProviderIdempotencyKeyReused(InvalidInput):
    """The provider rejected an idempotency key that an earlier request sent with
    other parameters."""

    code = "idempotency_key_reused"
    title = "Idempotency key reused"


class ReconciliationRunNotFound(NotFound):
    """No reconciliation run with that id in the caller's workspace."""

    code = "reconciliation_run_not_found"
