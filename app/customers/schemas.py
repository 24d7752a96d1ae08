from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, EmailStr, Field

from app.core.money import CurrencyCode
from app.core.schemas import (
    ContactId,
    CustomerId,
    InputModel,
    LeadId,
    OutputModel,
    TimeZone,
    drop_null_from_schema,
)
from app.customers.normalize import InvalidDomain, normalize_domain

MAX_PAYMENT_TERMS_DAYS = 365
MAX_NAME_LENGTH = 300


def _check_domain(value: str) -> str:
    try:
        return normalize_domain(value)
    except InvalidDomain as error:
        raise ValueError(str(error)) from error


Domain = Annotated[
    str,
    Field(min_length=1, max_length=253, examples=["example.com"]),
    AfterValidator(_check_domain),
]
CustomerName = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]
PersonName = Annotated[str, Field(min_length=1, max_length=200)]
Email = Annotated[EmailStr, Field(max_length=320)]
Phone = Annotated[str, Field(min_length=3, max_length=32)]
PaymentTermsDays = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_PAYMENT_TERMS_DAYS,
        description="Days from invoice to due date. 0 means due on receipt.",
    ),
]


class CustomerCreate(InputModel):
    name: CustomerName
    email: Email | None = None
    domain: Domain | None = Field(
        default=None, description="Company domain, stored lower-case and IDNA-encoded."
    )
    currency: CurrencyCode | None = Field(
        default=None, description="Invoicing currency, the workspace's when omitted."
    )
    timezone: TimeZone | None = Field(
        default=None,
        description="IANA time zone that due dates are read in, the workspace's when "
        "omitted.",
    )
    payment_terms_days: PaymentTermsDays = 30


class CustomerUpdate(InputModel):
    name: CustomerName | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    email: Email | None = Field(default=None, description="Send null to clear it.")
    domain: Domain | None = Field(default=None, description="Send null to clear it.")
    currency: CurrencyCode | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    timezone: TimeZone | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    payment_terms_days: PaymentTermsDays | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )


class Customer(OutputModel):
    object: Literal["customer"] = "customer"
    id: CustomerId
    name: str
    email: str | None
    domain: str | None
    currency: str
    timezone: str
    payment_terms_days: int
    source_lead_id: LeadId | None = Field(
        description="The lead this customer was created from by a conversion."
    )
    version: int
    created_at: datetime
    updated_at: datetime


class ContactCreate(InputModel):
    """A contact, which needs an email, a first name or a last name."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"type": "string"}}}
                for name in ("email", "first_name", "last_name")
            ]
        }
    )

    email: Email | None = None
    first_name: PersonName | None = None
    last_name: PersonName | None = None
    phone: Phone | None = None


class Contact(OutputModel):
    object: Literal["contact"] = "contact"
    id: ContactId
    customer_id: CustomerId
    email: str | None
    first_name: str | None
    last_name: str | None
    phone: str | None
    version: int
    created_at: datetime
    updated_at: datetime
