from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    StrictInt,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from app.core import money
from app.core.schemas import (
    CalendarDate,
    CustomerId,
    DunningPolicyId,
    InputModel,
    InvoiceId,
    InvoiceLineId,
    LineItemId,
    OpportunityId,
    OutputModel,
    PaymentId,
    ProductId,
    TaxRateId,
    Timestamp,
    UserId,
)

InvoiceStatus = Literal["draft", "open", "paid", "void", "uncollectible"]
PaymentStatus = Literal["unpaid", "partially_paid", "paid", "overpaid"]
PaymentMethod = Literal["bank_transfer", "cash", "check", "other"]
RoundingName = Literal["half_up", "half_even"]
TaxCalculationName = Literal["line", "document"]

MAX_LINES = 250
MAX_TAX_RATES = 5
MAX_DISCOUNTS = 5


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
_TAX_RATE_SCHEMA = _decimal_schema(
    r"^\d{1,3}(\.\d{1,4})?$",
    "19",
    "Tax rate in percent as a decimal string, 0 to 100, up to 4 places.",
)
TaxRate = Annotated[
    Decimal,
    BeforeValidator(
        _decimal_parser(
            "tax_rate", max_integer_digits=3, max_places=4, maximum=Decimal(100)
        )
    ),
    _DECIMAL_OUT,
    _TAX_RATE_SCHEMA,
]
# The same value under the field name "percentage", so that its errors name that field.
TaxPercentage = Annotated[
    Decimal,
    BeforeValidator(
        _decimal_parser(
            "percentage", max_integer_digits=3, max_places=4, maximum=Decimal(100)
        )
    ),
    _DECIMAL_OUT,
    _TAX_RATE_SCHEMA,
]
Percentage = Annotated[
    Decimal,
    BeforeValidator(
        _decimal_parser(
            "percent_off",
            max_integer_digits=3,
            max_places=4,
            positive=True,
            maximum=Decimal(100),
        )
    ),
    _DECIMAL_OUT,
    _decimal_schema(
        r"^\d{1,3}(\.\d{1,4})?$",
        "10",
        "Percentage as a decimal string, above 0 and at most 100, up to 4 places.",
    ),
]
MinorUnits = Annotated[StrictInt, Field(ge=0, le=money.MAX_AMOUNT)]
PositiveMinorUnits = Annotated[StrictInt, Field(gt=0, le=money.MAX_AMOUNT)]
TermsDays = Annotated[StrictInt, Field(ge=0, le=365)]


_PAYMENT_TERMS_PATTERN = r"^(due_on_receipt|net_(0|[1-9][0-9]{0,2}))$"


def _check_payment_terms(value: str) -> str:
    # The pattern is checked here rather than by Field(pattern=...), so that a value
    # such as net_1000 gets this message instead of the regular expression.
    if (
        value != "due_on_receipt"
        and re.fullmatch(r"net_(0|[1-9][0-9]*)", value) is None
    ):
        raise PydanticCustomError(
            "payment_terms_invalid",
            "{value} is not a payment term. Send due_on_receipt, or net_N with N from 0 "
            "to 365 days (such as net_30)",
            {"value": repr(value)[:40]},
        )
    days = value.removeprefix("net_")
    if value.startswith("net_") and (len(days) > 3 or int(days) > 365):
        raise PydanticCustomError(
            "payment_terms_range",
            "{value} is out of range, because net_N takes N from 0 to 365 days. Send "
            "net_0 to net_365 (such as net_30), due_on_receipt, or an explicit due_date",
            {"value": repr(value)[:40]},
        )
    return value


PaymentTerms = Annotated[
    str,
    AfterValidator(_check_payment_terms),
    Field(
        description="due_on_receipt, or net_N for N days after finalization "
        "(0 to 365), counted in the customer's time zone.",
        examples=["net_30"],
        json_schema_extra={"pattern": _PAYMENT_TERMS_PATTERN},
    ),
]
Series = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9]{0,15}$")]
Memo = Annotated[str, Field(max_length=5000)]


class TaxRateInput(InputModel):
    """A tax rate applied to a line."""

    name: Annotated[str, Field(min_length=1, max_length=100, examples=["VAT"])]
    percentage: TaxPercentage
    inclusive: bool = Field(
        default=False,
        description="True when the unit price already contains this tax: the tax is "
        "extracted from the price instead of added to it.",
    )


TaxRateName = Annotated[str, Field(min_length=1, max_length=100, examples=["VAT"])]
Jurisdiction = Annotated[str, Field(min_length=1, max_length=100, examples=["DE"])]


class TaxRateCreate(InputModel):
    name: TaxRateName
    percentage: TaxPercentage
    inclusive: bool = False
    jurisdiction: Jurisdiction | None = Field(
        default=None, description="Where the rate applies, such as a country code."
    )


class TaxRateUpdate(InputModel):
    """Changes to a tax rate. Percentage and inclusiveness are fixed: create another."""

    name: TaxRateName | None = None
    jurisdiction: Jurisdiction | None = None
    active: bool | None = Field(
        default=None, description="An inactive rate cannot be put on new lines."
    )
    # Lines copy a rate's percentage and inclusiveness when written, so these never
    # change. They are fields only so that sending them gets a message saying what to
    # do, and they are left out of the OpenAPI schema.
    percentage: SkipJsonSchema[Any] = None
    inclusive: SkipJsonSchema[Any] = None

    @field_validator("percentage", "inclusive")
    @classmethod
    def _reject_fixed(cls, value: Any, info: ValidationInfo) -> Any:
        raise PydanticCustomError(
            "immutable",
            "{field} cannot change once a tax rate exists, so {value} is rejected. "
            "Create a new tax rate with POST /v1/tax-rates for new lines, and set "
            "active to false on this one",
            {"field": info.field_name, "value": repr(value)[:40]},
        )


class TaxRateObject(OutputModel):
    object: Literal["tax_rate"] = "tax_rate"
    id: TaxRateId
    name: str
    percentage: str
    inclusive: bool
    jurisdiction: str | None
    active: bool
    version: int
    created_at: datetime
    updated_at: datetime


class DiscountInput(InputModel):
    """A discount: ``percent_off`` or ``amount_off``, exactly one."""

    percent_off: Percentage | None = None
    amount_off: PositiveMinorUnits | None = Field(
        default=None,
        description="Minor units taken off, capped at the amount it applies to.",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> DiscountInput:
        if (self.percent_off is None) == (self.amount_off is None):
            raise PydanticCustomError(
                "discount_kind",
                "Send percent_off or amount_off, exactly one of them",
            )
        return self


class InvoiceLineCreate(InputModel):
    description: Annotated[str, Field(min_length=1, max_length=500)] | None = Field(
        default=None,
        description="Required unless product_id is sent; defaults to its name.",
    )
    quantity: Quantity
    unit_amount: MinorUnits | None = Field(
        default=None, description="Unit price as an integer of minor units."
    )
    unit_amount_decimal: UnitAmountDecimal | None = None
    tax_rate: TaxRate | None = Field(
        default=None,
        description="One exclusive tax rate in percent, named 'Tax'. Send tax_rates "
        "instead for named, inclusive or several rates.",
    )
    tax_rates: Annotated[list[TaxRateInput], Field(max_length=MAX_TAX_RATES)] | None = (
        Field(
            default=None,
            description="The line's tax rates, all inclusive or all exclusive.",
        )
    )
    tax_rate_ids: Annotated[list[TaxRateId], Field(max_length=MAX_TAX_RATES)] | None = (
        Field(
            default=None,
            description="Active txr_ tax rates of this workspace; their terms are "
            "copied to the line.",
        )
    )
    discount: DiscountInput | None = None
    product_id: ProductId | None = Field(
        default=None,
        description="A product of this workspace. Its price in the invoice currency "
        "is the default unit amount, its name the default description.",
    )
    line_item_id: LineItemId | None = Field(
        default=None,
        description="The opportunity line item this line bills; it must belong to "
        "the invoice's opportunity.",
    )

    @model_validator(mode="after")
    def _check_combinations(self) -> InvoiceLineCreate:
        if self.unit_amount is not None and self.unit_amount_decimal is not None:
            raise PydanticCustomError(
                "unit_amount_conflict",
                "Send unit_amount or unit_amount_decimal, not both",
            )
        if (
            self.unit_amount is None
            and self.unit_amount_decimal is None
            and self.product_id is None
        ):
            raise PydanticCustomError(
                "unit_amount_missing",
                "Send unit_amount (integer minor units) or unit_amount_decimal, or a "
                "product_id whose price gives it",
            )
        if self.description is None and self.product_id is None:
            raise PydanticCustomError(
                "description_missing",
                "Send a description, or a product_id whose name gives it",
            )
        sent = [
            name
            for name in ("tax_rate", "tax_rates", "tax_rate_ids")
            if getattr(self, name) is not None
        ]
        if len(sent) > 1:
            raise PydanticCustomError(
                "tax_rate_conflict",
                "Send one of tax_rate, tax_rates and tax_rate_ids; got {sent}",
                {"sent": ", ".join(sent)},
            )
        if self.tax_rates:
            kinds = {rate.inclusive for rate in self.tax_rates}
            if len(kinds) > 1:
                raise PydanticCustomError(
                    "tax_inclusive_mixed",
                    "A line's tax_rates must be all inclusive or all exclusive; "
                    "split the line in two",
                )
            names = [(rate.name, rate.percentage) for rate in self.tax_rates]
            if len(set(names)) != len(names):
                raise PydanticCustomError(
                    "tax_rate_duplicate", "A line names the same tax rate twice"
                )
        return self

    @property
    def unit_amount_exact(self) -> Decimal | None:
        if self.unit_amount is not None:
            return Decimal(self.unit_amount)
        if self.unit_amount_decimal is not None:
            return Decimal(self.unit_amount_decimal)
        return None


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
    tax_calculation: TaxCalculationName = Field(
        default="line",
        description="line: each line's tax is rounded. document: each tax rate is "
        "rounded once on the invoice, then allocated back to the lines.",
    )
    discounts: Annotated[list[DiscountInput], Field(max_length=MAX_DISCOUNTS)] = Field(
        default_factory=list,
        description="Invoice-level discounts, applied in order before tax and "
        "spread over the lines in proportion to their amounts.",
    )
    payment_terms: PaymentTerms | None = Field(
        default=None,
        description="Defaults to net_N with the customer's payment terms days.",
    )
    due_date: CalendarDate | None = Field(
        default=None,
        description="An explicit due date in the customer's time zone, instead of "
        "payment_terms; it must not be before the finalization day.",
    )

    @model_validator(mode="after")
    def _one_term(self) -> InvoiceCreate:
        _check_terms(self.payment_terms, self.payment_terms_days, self.due_date)
        return self


def _check_terms(terms: str | None, days: int | None, due_date: date | None) -> None:
    sent = [
        name
        for name, value in (
            ("payment_terms", terms),
            ("payment_terms_days", days),
            ("due_date", due_date),
        )
        if value is not None
    ]
    if len(sent) > 1:
        raise PydanticCustomError(
            "payment_terms_conflict",
            "Send one of payment_terms, payment_terms_days and due_date; got {sent}",
            {"sent": ", ".join(sent)},
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
    tax_calculation: TaxCalculationName | None = None
    discounts: (
        Annotated[list[DiscountInput], Field(max_length=MAX_DISCOUNTS)] | None
    ) = Field(default=None, description="Replace the invoice-level discounts.")
    payment_terms: PaymentTerms | None = None
    due_date: CalendarDate | None = None

    @model_validator(mode="after")
    def _one_term(self) -> InvoiceUpdate:
        _check_terms(self.payment_terms, self.payment_terms_days, self.due_date)
        return self


class TaxRateView(OutputModel):
    tax_rate_id: TaxRateId | None = Field(
        description="The txr_ rate the terms were copied from, if any."
    )
    name: str
    percentage: str
    inclusive: bool


class Discount(OutputModel):
    percent_off: str | None
    amount_off: int | None


class InvoiceDiscount(OutputModel):
    source: Literal["manual", "offer_code"]
    offer_code: str | None = Field(description="The redeemed code, for offer_code.")
    percent_off: str | None
    amount_off: int | None
    amount: int = Field(description="Minor units this discount took off the lines.")


class TaxLine(OutputModel):
    name: str
    rate: str = Field(description="Percentage as a decimal string.")
    inclusive: bool
    taxable_amount: int = Field(description="Net amount the tax is charged on.")
    amount: int


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
    tax_rate: str = Field(description="The sum of the line's tax percentages.")
    tax_rates: list[TaxRateView]
    discount: Discount | None
    product_id: ProductId | None
    line_item_id: LineItemId | None
    amount: int = Field(description="quantity x unit price, rounded to minor units.")
    discount_amount: int = Field(
        description="The line's own discount plus its share of invoice discounts."
    )
    taxable_amount: int = Field(
        description="amount - discount_amount - inclusive taxes."
    )
    taxes: list[TaxLine]
    tax_amount: int = Field(description="The sum of taxes.")
    total: int = Field(description="taxable_amount + tax_amount.")


class WriteOff(OutputModel):
    amount: int = Field(
        description="The amount remaining when it was written off, in minor units."
    )
    amount_recovered: int = Field(
        description=(
            "What payments added to amount_paid after the write-off, at most amount, "
            "in minor units. Credit notes and applied customer credit do not count."
        )
    )
    reason: str
    requested_by: str | None = Field(
        description="The actor of the request: an API key, or On-Behalf-Of."
    )
    approved_by: UserId
    written_off_at: datetime


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
    tax_calculation: TaxCalculationName
    discounts: list[InvoiceDiscount]
    subtotal: int = Field(description="The sum of line amounts, before discounts.")
    total_discount: int = Field(description="The sum of line discount amounts.")
    total_excluding_tax: int = Field(description="The sum of line taxable amounts.")
    taxes: list[TaxLine] = Field(
        description="One entry per tax rate, summed over the lines."
    )
    tax_total: int = Field(description="The sum of taxes, inclusive ones included.")
    total: int = Field(
        description="total_excluding_tax + tax_total, and the sum of line totals."
    )
    amount_due: int = Field(
        description="What the customer owes in all: total - "
        "pre_payment_credit_notes_amount - customer_credit_applied."
    )
    amount_paid: int
    amount_remaining: int = Field(description="amount_due - amount_paid, at least 0.")
    amount_overpaid: int = Field(description="amount_paid - amount_due, at least 0.")
    credited_amount: int = Field(
        description="Sum of the totals of the invoice's credit notes that are not void: "
        "pre_payment_credit_notes_amount + post_payment_credit_notes_amount."
    )
    pre_payment_credit_notes_amount: int = Field(
        description="The part of the credit notes that lowered amount_due."
    )
    post_payment_credit_notes_amount: int = Field(
        description="The part of the credit notes that became customer credit or a "
        "refund; it leaves amount_due unchanged."
    )
    customer_credit_applied: int = Field(
        description="Customer credit applied to this invoice; it lowers amount_due."
    )
    payment_terms: str = Field(
        description="due_on_receipt, net_N, or due_date for an explicit date."
    )
    payment_terms_days: int | None
    due_date: date | None = Field(description="A date in the customer's time zone.")
    overdue_at: datetime | None = Field(
        description="The instant the due date ends in that time zone."
    )
    timezone: str | None = Field(
        description="The time zone the due date is in, fixed at finalization."
    )
    overdue: bool = Field(
        description="True once the due date has passed in that time zone while money "
        "is still owed."
    )
    overdue_since: datetime | None = Field(
        description="When the invoice turned overdue: the end of the due date in its "
        "time zone. Null while it is not overdue."
    )
    days_overdue: int = Field(
        description="Calendar days in the invoice's time zone since the due date; 0 "
        "while it is not overdue."
    )
    dunning_policy_id: DunningPolicyId | None = Field(
        description="The dunning policy set on this invoice alone; null follows the "
        "customer's, then the workspace default. See GET /v1/invoices/{id}/dunning."
    )
    uncollectible_at: datetime | None
    uncollectible_reason: str | None
    write_off: WriteOff | None = Field(
        description="Set once the remaining amount was written off as bad debt."
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
        "customer credit that allocations to later invoices can use. 0 while the "
        "payment has not succeeded."
    )
    created_at: datetime
    updated_at: datetime


class ProviderWebhookReceipt(OutputModel):
    received: bool = True
    duplicate: bool = Field(
        description="True when this event id was stored before; nothing changed."
    )
