"""API schemas of refunds, disputes, payment links and reconciliation runs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from app.billing.schemas import Allocations, PositiveMinorUnits
from app.core.schemas import (
    DisputeId,
    InputModel,
    InvoiceId,
    OutputModel,
    PaymentId,
    ReconciliationRunId,
    RefundId,
)

RedirectUrl = Annotated[
    str, Field(min_length=8, max_length=2000, pattern=r"^https?://[^\s]+$")
]
RefundReason = Annotated[str, Field(min_length=1, max_length=500)]
DisputeStatus = Literal["open", "won", "lost"]
ReconciliationStatus = Literal["queued", "running", "completed", "failed"]


class RefundCreate(InputModel):
    # The schema leaves null out of the types, since the validator rejects it.
    amount: PositiveMinorUnits | SkipJsonSchema[None] = Field(
        default=None,
        description="Integer of minor units; when left out, everything still "
        "refundable (amount - amount_refunded - amount_disputed). null is rejected.",
    )
    reason: RefundReason | None = None
    allocations: Allocations | None = Field(
        default=None,
        description="Which invoices lose how much of what this payment paid them. "
        "The rest of the refund comes from the payment's unallocated amount. When "
        "omitted, the unallocated amount goes first, then the newest allocation.",
    )

    @field_validator("amount", mode="before")
    @classmethod
    def _reject_null_amount(cls, value: Any) -> Any:
        # A refund cannot be undone, so only a missing amount refunds all that is
        # left. An explicit null is more likely a client bug than such a request.
        if value is None:
            raise PydanticCustomError(
                "null_not_allowed",
                "amount cannot be null. Send an integer of minor units, or leave "
                "amount out to refund all that is left",
            )
        return value


class AllocationReversal(OutputModel):
    invoice_id: InvoiceId
    amount: int
    restored: bool = Field(
        description="True once a dispute closed won gave the amount back to the "
        "invoice."
    )


class Refund(OutputModel):
    object: Literal["refund"] = "refund"
    id: RefundId
    payment_id: PaymentId
    amount: int
    currency: str
    status: Literal["succeeded"]
    reason: str | None
    provider: str | None
    provider_refund_id: str | None
    reversals: list[AllocationReversal] = Field(
        description="What each invoice lost of its payment; the rest of the amount "
        "came from the payment's unallocated amount."
    )
    refunded_at: datetime
    created_at: datetime


class Dispute(OutputModel):
    object: Literal["dispute"] = "dispute"
    id: DisputeId
    payment_id: PaymentId
    amount: int
    currency: str
    status: DisputeStatus
    reason: str | None
    provider: str | None
    provider_dispute_id: str | None
    reversals: list[AllocationReversal] = Field(
        description="What each invoice lost while the dispute is open; restored when "
        "it closes won."
    )
    opened_at: datetime
    closed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class PaymentLink(OutputModel):
    object: Literal["payment_link"] = "payment_link"
    invoice_id: InvoiceId
    url: str
    provider: Literal["stripe"]
    provider_session_id: str
    amount: int = Field(description="What the page collects: the amount remaining.")
    currency: str


class PaymentLinkCreate(InputModel):
    success_url: RedirectUrl | None = Field(
        default=None,
        description="Where the customer lands after paying; defaults to the "
        "stripe_checkout_success_url setting.",
    )
    cancel_url: RedirectUrl | None = Field(
        default=None,
        description="Where the customer lands after cancelling; defaults to the "
        "stripe_checkout_cancel_url setting.",
    )


class ReconciliationRunCreate(InputModel):
    provider: Literal["stripe"] = "stripe"


class ReconciliationDifference(OutputModel):
    object_type: Literal["payment", "refund", "dispute"]
    object_id: str | None = Field(description="The local id, null if none exists.")
    provider_id: str
    field: str = Field(
        description="What differs: status, amount, currency, amount_refunded, "
        "missing_locally or missing_at_provider."
    )
    local: Any
    provider: Any


class ReconciliationRun(OutputModel):
    object: Literal["reconciliation_run"] = "reconciliation_run"
    id: ReconciliationRunId
    provider: str
    status: ReconciliationStatus
    checked_count: int = Field(description="Provider objects compared so far.")
    difference_count: int
    differences: list[ReconciliationDifference]
    error: str | None
    started_at: datetime | None
    completed_at: datetime | None
    created_at: datetime
