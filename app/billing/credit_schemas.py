"""Request and response bodies of credit notes and customer credit."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt, ValidationInfo, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from app.billing.schemas import (
    MAX_LINES,
    Currency,
    Memo,
    MinorUnits,
    PositiveMinorUnits,
    Quantity,
    Series,
)
from app.core import money
from app.core.schemas import (
    CreditNoteId,
    CreditNoteLineId,
    CustomerCreditTransactionId,
    CustomerId,
    InputModel,
    InvoiceId,
    InvoiceLineId,
    OutputModel,
    PaymentId,
)

CreditNoteReason = Literal[
    "duplicate", "fraudulent", "order_change", "product_unsatisfactory", "other"
]
CreditNoteStatus = Literal["issued", "void"]
RefundStatus = Literal["pending", "succeeded", "canceled"]
CreditSource = Literal[
    "credit_note", "overpayment", "applied_to_invoice", "refunded", "adjustment"
]
SignedMinorUnits = Annotated[
    StrictInt, Field(ge=-money.MAX_AMOUNT, le=money.MAX_AMOUNT)
]
Description = Annotated[str, Field(min_length=1, max_length=500)]


class CreditNoteLineCreate(InputModel):
    """A credited part of one invoice line: a quantity or a net amount."""

    invoice_line_id: InvoiceLineId
    quantity: Quantity | None = Field(
        default=None,
        description="How many units of the line to credit; the credited amount is "
        "quantity x unit price, rounded by the invoice's rounding.",
    )
    amount: PositiveMinorUnits | None = Field(
        default=None,
        description="Net amount (before tax) of the line to credit, in minor units.",
    )

    @model_validator(mode="after")
    def _quantity_or_amount(self) -> CreditNoteLineCreate:
        if (self.quantity is None) == (self.amount is None):
            raise PydanticCustomError(
                "quantity_or_amount",
                "Send quantity or amount for each credited line, not both",
            )
        return self


class CreditNoteCreate(InputModel):
    """A credit note by lines or by a lump amount, and where its total goes.

    When none of amount_to_reduce, amount_to_credit and refund_amount is sent, the
    total reduces the amount still owed and any rest becomes customer credit.
    """

    reason: CreditNoteReason
    memo: Memo | None = None
    lines: Annotated[list[CreditNoteLineCreate], Field(max_length=MAX_LINES)] | None = (
        Field(
            default=None,
            description="Invoice lines to credit. Send lines or amount, not both.",
        )
    )
    amount: PositiveMinorUnits | None = Field(
        default=None,
        description="A lump amount including tax; the tax part is split over the "
        "invoice's tax rates in proportion to what each is still creditable for.",
    )
    amount_to_reduce: MinorUnits | None = Field(
        default=None, description="Part that lowers the invoice's amount due."
    )
    amount_to_credit: MinorUnits | None = Field(
        default=None, description="Part added to the customer's credit balance."
    )
    refund_amount: MinorUnits | None = Field(
        default=None,
        description="Part owed back to the customer as a refund to be paid out; the "
        "credit note shows it under the same name.",
    )
    amount_to_refund: MinorUnits | None = Field(
        default=None,
        description="Deprecated: the earlier name of refund_amount, still accepted. "
        "Send refund_amount instead.",
        json_schema_extra={"deprecated": True},
    )
    refund_payment_id: PaymentId | None = Field(
        default=None,
        description="The payment the refund goes back through, if known: a "
        "succeeded payment allocated to this invoice, which must still pay at least "
        "the refund after the refunds of earlier notes through it.",
    )
    series: Series = Field(
        default="CN", description="Numbering series, e.g. CN-2026-000001."
    )

    @field_validator("amount_to_refund")
    @classmethod
    def _one_refund_name(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and info.data.get("refund_amount") is not None:
            raise PydanticCustomError(
                "refund_amount_twice",
                "amount_to_refund is the deprecated name of refund_amount. Send only "
                "refund_amount",
            )
        return value

    @model_validator(mode="after")
    def _lines_or_amount(self) -> CreditNoteCreate:
        if self.amount_to_refund is not None:
            self.refund_amount = self.amount_to_refund
            self.amount_to_refund = None
        if (self.lines is None) == (self.amount is None):
            raise PydanticCustomError(
                "lines_or_amount", "Send lines or a lump amount, exactly one of them"
            )
        if self.lines is not None and not self.lines:
            raise PydanticCustomError(
                "lines_empty", "lines must name at least one invoice line"
            )
        return self

    @property
    def distribution_sent(self) -> bool:
        return any(
            value is not None
            for value in (
                self.amount_to_reduce,
                self.amount_to_credit,
                self.refund_amount,
            )
        )


class CreditNoteVoid(InputModel):
    reason: Description | None = Field(
        default=None, description="Why the credit note is voided."
    )


class CreditNoteLine(OutputModel):
    object: Literal["credit_note_line"] = "credit_note_line"
    id: CreditNoteLineId | None = Field(description="Null in a preview.")
    invoice_line_id: InvoiceLineId | None = Field(
        description="The credited invoice line; null for a lump credit."
    )
    description: str
    quantity: str | None
    tax_rate: str
    amount: int = Field(description="Credited net amount, in minor units.")
    tax_amount: int = Field(description="Credited tax, in minor units.")


class CreditNoteAmounts(OutputModel):
    currency: str
    subtotal: int
    tax_total: int
    total: int = Field(description="Always subtotal + tax_total.")
    amount_reduced: int = Field(description="Part that lowered the amount due.")
    amount_credited: int = Field(description="Part added to the customer's credit.")
    refund_amount: int = Field(description="Part owed back as a refund.")
    lines: list[CreditNoteLine]


class CreditNote(CreditNoteAmounts):
    object: Literal["credit_note"] = "credit_note"
    id: CreditNoteId
    number: str = Field(description="Gapless per series and year.")
    series: str
    invoice_id: InvoiceId
    customer_id: CustomerId
    status: CreditNoteStatus
    reason: CreditNoteReason
    memo: str | None
    refund_status: RefundStatus | None = Field(
        description="pending until the refund is paid out; null without a refund."
    )
    refund_payment_id: PaymentId | None
    void_reason: str | None
    voided_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime


class CreditNotePreview(CreditNoteAmounts):
    object: Literal["credit_note_preview"] = "credit_note_preview"
    invoice_id: InvoiceId
    creditable_before: int = Field(
        description="What the invoice could still be credited before this note."
    )
    creditable_after: int
    invoice_amount_due_after: int
    invoice_amount_remaining_after: int


class ApplyCredit(InputModel):
    # The schema leaves null out of the types, since the validator rejects it.
    amount: PositiveMinorUnits | SkipJsonSchema[None] = Field(
        default=None,
        description="Credit to apply; when left out, as much as the balance and the "
        "amount remaining allow. null is rejected.",
    )
    currency: Currency | None = Field(
        default=None,
        description="Must be the invoice's currency when sent; credit in another "
        "currency cannot be applied.",
    )

    @field_validator("amount", mode="before")
    @classmethod
    def _reject_null_amount(cls, value: Any) -> Any:
        # Only a missing amount applies as much credit as possible. An explicit null
        # is more likely a client bug than such a request.
        if value is None:
            raise PydanticCustomError(
                "null_not_allowed",
                "amount cannot be null. Send an integer of minor units, or leave "
                "amount out to apply as much credit as the balance and the amount "
                "remaining allow",
            )
        return value


class CreditAdjustmentCreate(InputModel):
    amount: SignedMinorUnits = Field(
        description="Signed minor units: positive adds credit, negative removes it. "
        "Not zero."
    )
    currency: Currency | None = Field(
        default=None, description="Defaults to the customer's currency."
    )
    description: Description = Field(description="Why the balance is adjusted.")


class CustomerCreditTransaction(OutputModel):
    object: Literal["customer_credit_transaction"] = "customer_credit_transaction"
    id: CustomerCreditTransactionId
    customer_id: CustomerId
    currency: str
    amount: int = Field(description="Signed minor units: positive adds credit.")
    source: CreditSource
    credit_note_id: CreditNoteId | None
    invoice_id: InvoiceId | None
    payment_id: PaymentId | None
    description: str | None
    created_at: datetime


class CreditBalance(OutputModel):
    currency: str
    amount: int = Field(
        description="Overpaid invoices, unallocated payments and ledger rows in "
        "this currency, in minor units."
    )


class CreditBalanceList(OutputModel):
    data: list[CreditBalance]
