from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    StrictInt,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from app.core import money
from app.core.schemas import (
    CustomerId,
    InputModel,
    InvoiceId,
    InvoiceLineId,
    OpportunityId,
    OutputModel,
    PaymentId,
    Timestamp,
)

InvoiceStatus = Literal["draft", "open", "paid", "void", "uncollectible"]
PaymentStatus = Literal["unpaid", "partially_paid", "paid", "overpaid"]
PaymentMethod = Literal["bank_transfer", "cash", "check", "other"]
RoundingName = Literal["half_up", "half_even"]

MAX_LINES = 250


def _currency(value: Any) -> str:
    if not isinstance(value, str) or not money.is_currency(value.strip().upper()):
        raise PydanticCustomError(
            "unknown_currency",
            "{value} is not an ISO 4217 currency code; send one such as 'USD' or 'JPY'",
            {"value": repr(value)},
        )
    return value.strip().upper()


Currency = Annotated[
    str,
    BeforeValidator(_currency),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[A-Za-z]{3}$",
            "description": "ISO 4217 code; lower case is accepted and stored upper.",
            "examples": ["USD"],
        }
    ),
]


def _decimal_parser(
    label: str,
    *,
    max_integer_digits: int,
    max_places: int,
    positive: bool = False,
    maximum: Decimal | None = None,
) -> Callable[[Any], Decimal]:
    def parse(value: Any) -> Decimal:
        if isinstance(value, Decimal):
            return value
        if not isinstance(value, str):
            raise PydanticCustomError(
                "decimal_string_required",
                'Send {label} as a decimal string such as "1.5", not a JSON {kind}',
                {"label": label, "kind": _json_kind(value)},
            )
        try:
            parsed = money.parse_decimal(
                value.strip(),
                max_integer_digits=max_integer_digits,
                max_places=max_places,
            )
        except ValueError as error:
            raise PydanticCustomError(
                "invalid_decimal", "{reason}", {"reason": str(error)}
            ) from error
        if positive and parsed <= 0:
            raise PydanticCustomError(
                "not_positive", "{label} must be greater than zero", {"label": label}
            )
        if maximum is not None and parsed > maximum:
            raise PydanticCustomError(
                "too_large",
                "{label} must be at most {maximum}",
                {"label": label, "maximum": str(maximum)},
            )
        return parsed

    return parse


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    return type(value).__name__


_DECIMAL_OUT = PlainSerializer(money.format_decimal, return_type=str)


def _decimal_schema(pattern: str, example: str, description: str) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "type": "string",
            "pattern": pattern,
            "examples": [example],
            "description": description,
        }
    )


Quantity = Annotated[
    Decimal,
    BeforeValidator(
        _decimal_parser("quantity", max_integer_digits=14, max_places=6, positive=True)
    ),
    _DECIMAL_OUT,
    _decimal_schema(
        r"^\d{1,14}(\.\d{1,6})?$",
        "1.5",
        "Decimal string, greater than zero, up to 6 places.",
    ),
]
UnitAmountDecimal = Annotated[
    Decimal,
    BeforeValidator(
        _decimal_parser("unit_amount_decimal", max_integer_digits=15, max_places=12)
    ),
    _DECIMAL_OUT,
    _decimal_schema(
        r"^\d{1,15}(\.\d{1,12})?$",
        "1234.5",
        "Unit price in minor units as a decimal string, up to 12 places; for prices "
        "finer than the minor unit.",
    ),
]
TaxRate = Annotated[
    Decimal,
    BeforeValidator(
        _decimal_parser(
            "tax_rate", max_integer_digits=3, max_places=4, maximum=Decimal(100)
        )
    ),
    _DECIMAL_OUT,
    _decimal_schema(
        r"^\d{1,3}(\.\d{1,4})?$",
        "19",
        "Tax rate in percent as a decimal string, 0 to 100, up to 4 places.",
    ),
]
MinorUnits = Annotated[StrictInt, Field(ge=0, le=money.MAX_AMOUNT)]
PositiveMinorUnits = Annotated[StrictInt, Field(gt=0, le=money.MAX_AMOUNT)]
TermsDays = Annotated[StrictInt, Field(ge=0, le=365)]
Series = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9]{0,15}$")]
Memo = Annotated[str, Field(max_length=5000)]


class InvoiceLineCreate(InputModel):
    description: Annotated[str, Field(min_length=1, max_length=500)]
    quantity: Quantity
    unit_amount: MinorUnits | None = Field(
        default=None, description="Unit price as an integer of minor units."
    )
    unit_amount_decimal: UnitAmountDecimal | None = None
    tax_rate: TaxRate = Decimal(0)

    @model_validator(mode="after")
    def _one_unit_amount(self) -> InvoiceLineCreate:
        if self.unit_amount is not None and self.unit_amount_decimal is not None:
            raise PydanticCustomError(
                "unit_amount_conflict",
                "Send unit_amount or unit_amount_decimal, not both",
            )
        if self.unit_amount is None and self.unit_amount_decimal is None:
            raise PydanticCustomError(
                "unit_amount_missing",
                "Send unit_amount (integer minor units) or unit_amount_decimal",
            )
        return self

    @property
    def unit_amount_exact(self) -> Decimal:
        if self.unit_amount is not None:
            return Decimal(self.unit_amount)
        assert self.unit_amount_decimal is not None
        return Decimal(self.unit_amount_decimal)


Lines = Annotated[list[InvoiceLineCreate], Field(max_length=MAX_LINES)]


class InvoiceCreate(InputModel):
    customer_id: CustomerId
    currency: Currency | None = Field(
        default=None, description="Defaults to the customer's currency."
    )
    lines: Lines = Field(default_factory=list)
    payment_terms_days: TermsDays | None = Field(
        default=None,
        description="Days from finalization to the due date; defaults to the "
        "customer's terms. 0 is due on receipt.",
    )
    memo: Memo | None = None
    opportunity_id: OpportunityId | None = None
    series: Series = Field(
        default="INV", description="Numbering series, e.g. INV-2026-000123."
    )
    rounding: RoundingName = Field(
        default="half_up", description="How line amounts and taxes are rounded."
    )


class InvoiceUpdate(InputModel):
    """Changes to a draft invoice; ``lines``, when sent, replace all lines."""

    customer_id: CustomerId | None = None
    currency: Currency | None = None
    lines: Lines | None = None
    payment_terms_days: TermsDays | None = None
    memo: Memo | None = None
    opportunity_id: OpportunityId | None = None
    series: Series | None = None
    rounding: RoundingName | None = None


class InvoiceLine(OutputModel):
    object: Literal["invoice_line"] = "invoice_line"
    id: InvoiceLineId
    position: int
    description: str
    quantity: Annotated[str, Field(examples=["1.5"])]
    unit_amount: int | None = Field(
        description="Unit price in minor units; null when it has a fraction, see "
        "unit_amount_decimal."
    )
    unit_amount_decimal: str
    tax_rate: str
    amount: int = Field(description="quantity x unit price, rounded to minor units.")
    tax_amount: int


class Invoice(OutputModel):
    object: Literal["invoice"] = "invoice"
    id: InvoiceId
    customer_id: CustomerId
    opportunity_id: OpportunityId | None
    status: InvoiceStatus
    payment_status: PaymentStatus
    series: str
    number: str | None = Field(description="Assigned at finalization, gapless.")
    currency: str
    rounding: RoundingName
    subtotal: int
    tax_total: int
    total: int = Field(description="Always subtotal + tax_total.")
    amount_due: int = Field(description="What the customer owes in all: the total.")
    amount_paid: int
    amount_remaining: int = Field(description="amount_due - amount_paid, at least 0.")
    amount_overpaid: int = Field(description="amount_paid - amount_due, at least 0.")
    payment_terms_days: int
    due_date: date | None = Field(description="A date in the customer's time zone.")
    timezone: str | None = Field(
        description="The time zone the due date is in, fixed at finalization."
    )
    overdue: bool = Field(
        description="True once the due date has passed in that time zone while money "
        "is still owed."
    )
    memo: str | None
    lines: list[InvoiceLine]
    finalized_at: datetime | None
    paid_at: datetime | None
    voided_at: datetime | None
    payment_link_url: str | None = Field(
        default=None,
        description="The customer's payment page for this invoice, once created with "
        "POST /v1/invoices/{id}/payment-link.",
    )
    version: int
    created_at: datetime
    updated_at: datetime


MAX_ALLOCATIONS = 100


class AllocationInput(InputModel):
    invoice_id: InvoiceId
    amount: PositiveMinorUnits = Field(
        description="Integer of minor units; at most the invoice's amount_remaining."
    )


Allocations = Annotated[
    list[AllocationInput], Field(min_length=1, max_length=MAX_ALLOCATIONS)
]


class PaymentCreate(InputModel):
    customer_id: CustomerId
    amount: PositiveMinorUnits = Field(description="Integer of minor units.")
    currency: Currency
    method: PaymentMethod
    invoice_id: InvoiceId | None = Field(
        default=None,
        description="The invoice to allocate the whole payment to; an amount above "
        "what it still owes shows on it as overpaid. Send allocations instead to "
        "keep the rest on the payment as customer credit.",
    )
    allocations: Allocations | None = Field(
        default=None,
        description="Invoices to allocate parts of the payment to; what is left "
        "stays unallocated, as customer credit. Not together with invoice_id.",
    )
    received_at: Timestamp | None = Field(
        default=None, description="When the money arrived; defaults to now."
    )
    reference: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="Bank reference, check number or receipt id."
    )

    @model_validator(mode="after")
    def _one_allocation_form(self) -> PaymentCreate:
        if self.invoice_id is not None and self.allocations is not None:
            raise PydanticCustomError(
                "allocation_conflict",
                "Send invoice_id or allocations, not both",
            )
        return self


class PaymentAllocationsCreate(InputModel):
    """Allocations to add to a payment from its unallocated amount."""

    allocations: Allocations


class PaymentAllocation(OutputModel):
    invoice_id: InvoiceId
    amount: int


class Payment(OutputModel):
    object: Literal["payment"] = "payment"
    id: PaymentId
    customer_id: CustomerId
    amount: int
    currency: str
    method: str
    status: Literal["pending", "succeeded", "failed"]
    provider: str | None
    provider_payment_id: str | None
    reference: str | None
    received_at: datetime
    allocations: list[PaymentAllocation]
    amount_allocated: int
    amount_refunded: int = Field(description="Sum of the payment's refunds.")
    amount_disputed: int = Field(
        description="Sum of the payment's open and lost disputes."
    )
    amount_unallocated: int = Field(
        description="amount - amount_refunded - amount_disputed - amount_allocated: "
        "customer credit that allocations to later invoices can use."
    )
    created_at: datetime
    updated_at: datetime


class ProviderWebhookReceipt(OutputModel):
    received: bool = True
    duplicate: bool = Field(
        description="True when this event id was stored before; nothing changed."
    )
