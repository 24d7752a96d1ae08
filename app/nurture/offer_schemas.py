"""Request and response bodies of ``/v1/offers`` and of redeeming a code on an invoice."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    StrictInt,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from app.core import money
from app.core.clock import utcnow
from app.core.schemas import (
    EnrollmentId,
    InputModel,
    InvoiceId,
    LeadId,
    OfferCodeId,
    OfferId,
    OutputModel,
    Timestamp,
)

DiscountKind = Literal["percent", "amount"]
OfferStatus = Literal["active", "archived"]
OfferCodeStatus = Literal["issued", "redeemed", "expired", "void"]

MAX_VALID_FOR_DAYS = 3660
MAX_CODE_LENGTH = 32
# The largest value of the INTEGER column that stores max_redemptions.
MAX_REDEMPTIONS = 2**31 - 1


def _percent(value: Any) -> Decimal:
    if not isinstance(value, str):
        raise PydanticCustomError(
            "decimal_string_required",
            'Send percent_off as a decimal string such as "15" or "12.5"',
        )
    try:
        parsed = money.parse_decimal(value.strip(), max_integer_digits=3, max_places=2)
    except ValueError as error:
        raise PydanticCustomError(
            "invalid_decimal", "{reason}", {"reason": str(error)}
        ) from error
    if not Decimal(0) < parsed <= Decimal(100):
        raise PydanticCustomError(
            "out_of_range", "percent_off must be greater than 0 and at most 100"
        )
    return parsed


PercentOff = Annotated[
    Decimal,
    BeforeValidator(_percent),
    PlainSerializer(money.format_decimal, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\d{1,3}(\.\d{1,2})?$",
            "examples": ["15"],
            "description": "Percent off the pre-tax subtotal, over 0 and at most 100, "
            "up to 2 places.",
        }
    ),
]
CodePrefix = Annotated[str, Field(pattern=r"^[A-Z0-9]{0,12}$")]


class OfferCreate(InputModel):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    discount_kind: DiscountKind
    percent_off: PercentOff | None = Field(
        default=None, description="Required when discount_kind is percent."
    )
    amount_off: Annotated[StrictInt, Field(gt=0, le=money.MAX_AMOUNT)] | None = Field(
        default=None,
        description="Integer of minor units of currency; required when discount_kind "
        "is amount.",
    )
    currency: money.CurrencyCode | None = Field(
        default=None, description="Required when discount_kind is amount."
    )
    expires_at: Timestamp | None = Field(
        default=None, description="No code of the offer is valid after this time."
    )
    valid_for_days: Annotated[StrictInt, Field(ge=1, le=MAX_VALID_FOR_DAYS)] | None = (
        Field(
            default=None,
            description="Each code expires this many days after it is issued, or at "
            "expires_at if that is sooner.",
        )
    )
    single_use: bool = Field(
        default=True,
        description="True: a code discounts one invoice. False: the lead's code may "
        "discount several of its invoices.",
    )
    max_redemptions: Annotated[StrictInt, Field(ge=1, le=MAX_REDEMPTIONS)] | None = (
        Field(
            default=None,
            description="Redemptions allowed across all codes of the offer; unlimited "
            "when null.",
        )
    )
    code_prefix: CodePrefix = Field(
        default="",
        description="Upper-case letters and digits that start each code, followed "
        "by a dash.",
    )

    @model_validator(mode="after")
    def _discount_fields(self) -> OfferCreate:
        problems: list[tuple[str, str, str]] = []
        if self.discount_kind == "percent":
            if self.percent_off is None:
                problems.append(
                    (
                        "percent_off",
                        "percent_off_missing",
                        "Send percent_off for a percent discount",
                    )
                )
            for name in ("amount_off", "currency"):
                if getattr(self, name) is not None:
                    problems.append(
                        (
                            name,
                            "amount_not_allowed",
                            f"{name} is only allowed when discount_kind is amount",
                        )
                    )
        else:
            for name in ("amount_off", "currency"):
                if getattr(self, name) is None:
                    problems.append(
                        (
                            name,
                            "amount_missing",
                            f"Send {name} for an amount discount",
                        )
                    )
            if self.percent_off is not None:
                problems.append(
                    (
                        "percent_off",
                        "percent_not_allowed",
                        "percent_off is only allowed when discount_kind is percent",
                    )
                )
        # A code issued after this time would be expired before the lead reads it.
        if self.expires_at is not None and self.expires_at <= utcnow():
            problems.append(
                (
                    "expires_at",
                    "expires_at_past",
                    "expires_at must be in the future",
                )
            )
        if problems:
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError(code, message),
                        loc=(name,),
                        input=None,
                    )
                    for name, code, message in problems
                ],
            )
        return self


class RevenueByCurrency(OutputModel):
    currency: str
    amount_paid: int = Field(description="Minor units paid on those invoices.")
    invoice_count: int


class OfferStats(OutputModel):
    codes_issued: int
    codes_redeemed: int = Field(description="Codes that discount at least one invoice.")
    redemptions: int = Field(description="Invoices discounted, voided ones excluded.")
    revenue: list[RevenueByCurrency] = Field(
        description="amount_paid of the paid invoices that redeemed a code, per currency."
    )


class Offer(OutputModel):
    object: Literal["offer"] = "offer"
    id: OfferId
    name: str
    status: OfferStatus
    discount_kind: DiscountKind
    percent_off: str | None
    amount_off: int | None
    currency: str | None
    expires_at: datetime | None
    valid_for_days: int | None
    single_use: bool
    max_redemptions: int | None
    code_prefix: str
    stats: OfferStats | None = Field(
        default=None, description="Counts and revenue; sent by GET /v1/offers/{id}."
    )
    archived_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime


class OfferCode(OutputModel):
    object: Literal["offer_code"] = "offer_code"
    id: OfferCodeId
    offer_id: OfferId
    lead_id: LeadId
    enrollment_id: EnrollmentId | None
    code: str
    status: OfferCodeStatus = Field(
        description="expired once expires_at has passed on a code not yet redeemed."
    )
    issued_at: datetime
    expires_at: datetime | None
    redeemed_at: datetime | None
    invoice_id: InvoiceId | None = Field(
        description="The invoice of the latest redemption."
    )
    discount_amount: int | None = Field(
        description="Minor units taken off that invoice's subtotal."
    )
    currency: str | None


class OfferRedeem(InputModel):
    code: Annotated[str, Field(min_length=1, max_length=MAX_CODE_LENGTH)] = Field(
        description="The code as emailed; case and surrounding spaces are ignored."
    )
