from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from app.billing.schemas import MinorUnits, TaxRate, UnitAmountDecimal
from app.core import money
from app.core.money import CurrencyCode
from app.core.schemas import (
    InputModel,
    OutputModel,
    ProductId,
    drop_null_from_schema,
)

MAX_PRICES = 50

RecurringInterval = Literal["month", "year"]
ProductName = Annotated[str, Field(min_length=1, max_length=300)]
Description = Annotated[str, Field(max_length=5000)]
Sku = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-/]*$",
        description="Stock keeping unit, unique in the workspace; letters, digits and "
        ". _ - / after the first character.",
    ),
]


class PriceInput(InputModel):
    currency: CurrencyCode
    unit_amount: MinorUnits | None = Field(
        default=None, description="Unit price as an integer of minor units."
    )
    unit_amount_decimal: UnitAmountDecimal | None = None

    @model_validator(mode="after")
    def _one_unit_amount(self) -> PriceInput:
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
        return self.unit_amount_decimal


Prices = Annotated[
    list[PriceInput],
    Field(max_length=MAX_PRICES, description="At most one price per currency."),
]


def _one_price_per_currency(prices: list[PriceInput] | None) -> list[PriceInput] | None:
    if prices is None:
        return prices
    seen: set[str] = set()
    for price in prices:
        if price.currency in seen:
            raise PydanticCustomError(
                "duplicate_currency",
                "{currency} has more than one price; send one price per currency",
                {"currency": price.currency},
            )
        seen.add(price.currency)
    return prices


class Recurring(InputModel):
    interval: RecurringInterval = Field(description="How often the product is billed.")


class ProductCreate(InputModel):
    name: ProductName
    description: Description | None = None
    sku: Sku | None = None
    prices: Prices = Field(default_factory=list)
    tax_rate: TaxRate = Decimal(0)
    recurring: Recurring | None = Field(
        default=None, description="Null for a one-off sale."
    )
    active: bool = True

    _check_prices = field_validator("prices")(_one_price_per_currency)


class ProductUpdate(InputModel):
    """Changes to a product; ``prices``, when sent, replace every price."""

    name: ProductName | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    description: Description | None = Field(
        default=None, description="Send null to clear it."
    )
    sku: Sku | None = Field(default=None, description="Send null to clear it.")
    prices: Prices | None = Field(default=None, json_schema_extra=drop_null_from_schema)
    tax_rate: TaxRate | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    recurring: Recurring | None = Field(
        default=None, description="Send null to make it a one-off sale."
    )
    active: bool | None = Field(
        default=None,
        description="false archives the product and true restores it.",
        json_schema_extra=drop_null_from_schema,
    )

    _check_prices = field_validator("prices")(_one_price_per_currency)


class Price(OutputModel):
    currency: str
    unit_amount: int | None = Field(
        description="Unit price in minor units; null when it has a fraction, see "
        "unit_amount_decimal."
    )
    unit_amount_decimal: str


class RecurringOut(OutputModel):
    interval: RecurringInterval


class Product(OutputModel):
    object: Literal["product"] = "product"
    id: ProductId
    name: str
    description: str | None
    sku: str | None
    prices: list[Price] = Field(description="Ordered by currency code.")
    tax_rate: str = Field(description="Tax rate in percent, as a decimal string.")
    recurring: RecurringOut | None
    active: bool
    archived_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime


def price_view(currency: str, unit_amount: Decimal) -> Price:
    whole = unit_amount == unit_amount.to_integral_value()
    return Price(
        currency=currency,
        unit_amount=int(unit_amount) if whole else None,
        unit_amount_decimal=money.format_decimal(unit_amount),
    )
