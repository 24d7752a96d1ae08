from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from app.billing.schemas import (
    MAX_LINES,
    MinorUnits,
    Quantity,
    TaxRate,
    UnitAmountDecimal,
    _decimal_parser,
)
from app.core.schemas import (
    InputModel,
    LineItemId,
    OpportunityId,
    OutputModel,
    ProductId,
)

DiscountPercent = Annotated[
    Decimal,
    BeforeValidator(
        _decimal_parser(
            "discount_percent",
            max_integer_digits=3,
            max_places=4,
            maximum=Decimal(100),
        )
    ),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\d{1,3}(\.\d{1,4})?$",
            "examples": ["10"],
            "description": "Discount in percent of the line amount, 0 to 100, up to "
            "4 places.",
        }
    ),
]
LineDescription = Annotated[str, Field(min_length=1, max_length=500)]


class LineCreate(InputModel):
    """A product line (``product_id``) or a custom line (``unit_amount``)."""

    product_id: ProductId | None = Field(
        default=None,
        description="The unit price is the product's price in the opportunity's "
        "currency; description and tax_rate default to the product's.",
    )
    description: LineDescription | None = Field(
        default=None, description="Required on a custom line."
    )
    quantity: Quantity
    unit_amount: MinorUnits | None = Field(
        default=None,
        description="Unit price as an integer of minor units, on a custom line only.",
    )
    unit_amount_decimal: UnitAmountDecimal | None = None
    discount_percent: DiscountPercent | None = None
    discount_amount: MinorUnits | None = Field(
        default=None,
        description="A fixed discount in minor units, at most the line amount.",
    )
    tax_rate: TaxRate | None = Field(
        default=None, description="The product's rate, or 0 on a custom line."
    )

    @model_validator(mode="after")
    def _check_kind(self) -> LineCreate:
        _one_discount(self.discount_percent, self.discount_amount)
        unit_amounts = (self.unit_amount, self.unit_amount_decimal)
        given = sum(value is not None for value in unit_amounts)
        if self.product_id is not None:
            if given:
                raise PydanticCustomError(
                    "unit_amount_not_allowed",
                    "A product line takes its unit price from the product; omit "
                    "unit_amount and unit_amount_decimal, or use a discount",
                )
            return self
        if self.description is None:
            raise PydanticCustomError(
                "description_missing",
                "A custom line needs a description; send one, or a product_id",
            )
        if given != 1:
            raise PydanticCustomError(
                "unit_amount_missing" if given == 0 else "unit_amount_conflict",
                "A custom line needs exactly one of unit_amount (integer minor units) "
                "and unit_amount_decimal",
            )
        return self

    @property
    def unit_amount_exact(self) -> Decimal | None:
        if self.unit_amount is not None:
            return Decimal(self.unit_amount)
        return self.unit_amount_decimal


class LineItemUpdate(InputModel):
    """Changes to a line item; the unit price of a product line cannot change."""

    description: LineDescription | None = None
    quantity: Quantity | None = None
    unit_amount: MinorUnits | None = Field(
        default=None, description="On a custom line only."
    )
    unit_amount_decimal: UnitAmountDecimal | None = Field(
        default=None, description="On a custom line only."
    )
    discount_percent: DiscountPercent | None = Field(
        default=None, description="Send null to remove the discount."
    )
    discount_amount: MinorUnits | None = Field(
        default=None, description="Send null to remove the discount."
    )
    tax_rate: TaxRate | None = None

    @model_validator(mode="after")
    def _check_amounts(self) -> LineItemUpdate:
        _one_discount(self.discount_percent, self.discount_amount)
        if self.unit_amount is not None and self.unit_amount_decimal is not None:
            raise PydanticCustomError(
                "unit_amount_conflict",
                "Send unit_amount or unit_amount_decimal, not both",
            )
        return self


def _one_discount(percent: Decimal | None, amount: int | None) -> None:
    if percent is not None and amount is not None:
        raise PydanticCustomError(
            "discount_conflict",
            "Send discount_percent or discount_amount, not both",
        )


Lines = Annotated[list[LineCreate], Field(max_length=MAX_LINES)]


class PricedLine(OutputModel):
    product_id: ProductId | None = Field(
        description="Null on a custom line, or once the product was deleted."
    )
    position: int
    description: str
    quantity: str = Field(examples=["1.5"])
    unit_amount: int | None = Field(
        description="Unit price in minor units; null when it has a fraction, see "
        "unit_amount_decimal."
    )
    unit_amount_decimal: str
    discount_percent: str | None
    discount_amount: int | None
    tax_rate: str
    amount: int = Field(description="quantity x unit price, rounded to minor units.")
    discount: int = Field(description="The part of amount taken off, minor units.")
    tax_amount: int = Field(description="Tax on amount - discount.")
    total: int = Field(description="amount - discount + tax_amount.")


class LineItem(PricedLine):
    object: Literal["line_item"] = "line_item"
    id: LineItemId
    opportunity_id: OpportunityId
    created_at: datetime
    updated_at: datetime


class LineItemList(OutputModel):
    object: Literal["list"] = "list"
    opportunity_id: OpportunityId
    opportunity_version: int = Field(description="Send it as If-Match to change lines.")
    currency: str
    data: list[LineItem] = Field(description="Ordered by position.")
    subtotal: int = Field(description="The sum of amount - discount over the lines.")
    discount_total: int
    tax_total: int
    total: int = Field(
        description="subtotal + tax_total; the opportunity's amount while it has lines."
    )
