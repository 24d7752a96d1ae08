from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

import langcodes
import pycountry
from pydantic import AfterValidator, ConfigDict, EmailStr, Field, model_validator

from app.core.money import CurrencyCode
from app.core.schemas import (
    ContactId,
    CustomerId,
    DunningPolicyId,
    InputModel,
    LeadId,
    OutputModel,
    TimeZone,
    UserId,
    drop_null_from_schema,
)
from app.customers.normalize import InvalidDomain, normalize_domain, strip_www

MAX_PAYMENT_TERMS_DAYS = 365
MAX_NAME_LENGTH = 300
MAX_LANGUAGE_TAG_LENGTH = 35
# The maximum length in octets of the part before the @-sign, as SMTP allows.
MAX_LOCAL_PART_OCTETS = 64

CustomerKind = Literal["company", "individual"]
ContactRole = Literal["decision_maker", "billing", "technical", "champion"]
OnDuplicate = Literal["reject", "link"]

# Tax id types after the schemes invoices name most often. ``eu_vat`` numbers start
# with the member state's prefix (EL for Greece); ``other`` takes any scheme.
TaxIdType = Literal[
    "eu_vat",
    "gb_vat",
    "ch_vat",
    "no_vat",
    "au_abn",
    "ca_bn",
    "in_gst",
    "br_cnpj",
    "jp_cn",
    "us_ein",
    "other",
]
EU_VAT_PREFIXES = frozenset(
    "AT BE BG CY CZ DE DK EE EL ES FI FR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK "
    "XI".split()
)
_TAX_ID = re.compile(r"^[A-Z0-9][A-Z0-9./-]{1,63}$")


def _check_domain(value: str) -> str:
    try:
        return strip_www(normalize_domain(value))
    except InvalidDomain as error:
        raise ValueError(str(error)) from error


def _check_local_part(value: str) -> str:
    octets = len(value.rpartition("@")[0].encode())
    if octets > MAX_LOCAL_PART_OCTETS:
        raise ValueError(
            f"the part before the @-sign has {octets} octets, more than the "
            f"{MAX_LOCAL_PART_OCTETS} that mail servers accept; shorten it"
        )
    return value


def _check_country(value: str) -> str:
    code = value.strip().upper()
    if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
        raise ValueError(
            f"{value!r} is not an ISO 3166-1 alpha-2 country code such as 'DE'"
        )
    return code


def _check_language(value: str) -> str:
    # langcodes also reads "en_US", a locale name; BCP 47 separates with hyphens.
    if "_" in value or not langcodes.tag_is_valid(value):
        raise ValueError(
            f"{value!r} is not a valid BCP 47 language tag such as 'en-GB'"
        )
    standard = str(langcodes.standardize_tag(value))
    if len(standard) > MAX_LANGUAGE_TAG_LENGTH:
        raise ValueError(
            f"{value!r} is longer than {MAX_LANGUAGE_TAG_LENGTH} characters in its "
            f"canonical form {standard!r}"
        )
    return standard


Domain = Annotated[
    str,
    Field(
        min_length=1,
        max_length=253,
        examples=["example.com"],
        description="Company domain, stored lower-case and IDNA-encoded without a "
        "leading www.",
    ),
    AfterValidator(_check_domain),
]
CustomerName = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]
PersonName = Annotated[str, Field(min_length=1, max_length=200)]
Email = Annotated[EmailStr, Field(max_length=320), AfterValidator(_check_local_part)]
Phone = Annotated[str, Field(min_length=3, max_length=32)]
Title = Annotated[str, Field(min_length=1, max_length=200)]
AddressLine = Annotated[str, Field(min_length=1, max_length=200)]
CountryCode = Annotated[
    str,
    Field(min_length=2, max_length=2, examples=["DE"]),
    AfterValidator(_check_country),
]
LanguageTag = Annotated[
    str,
    Field(
        min_length=2,
        max_length=MAX_LANGUAGE_TAG_LENGTH,
        examples=["en-GB"],
        description="BCP 47 language tag, stored in its canonical form.",
    ),
    AfterValidator(_check_language),
]
PaymentTermsDays = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_PAYMENT_TERMS_DAYS,
        description="Days from invoice to due date. 0 means due on receipt.",
    ),
]
Roles = Annotated[
    list[ContactRole],
    Field(max_length=4, description="Each role at most once, in any order."),
    AfterValidator(lambda roles: sorted(set(roles))),
]


class BillingAddress(InputModel):
    """A postal address that invoices are sent to."""

    line1: AddressLine
    line2: AddressLine | None = None
    city: AddressLine
    region: AddressLine | None = Field(
        default=None,
        description="State, province or county, where the country has one.",
    )
    postal_code: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    country: CountryCode = Field(description="ISO 3166-1 alpha-2, such as 'DE'.")


class TaxId(InputModel):
    """A tax registration number and the scheme it belongs to."""

    type: TaxIdType
    value: Annotated[
        str,
        Field(
            min_length=2,
            max_length=64,
            description="Stored upper-case without spaces, such as 'DE123456789'.",
        ),
    ]

    @model_validator(mode="after")
    def _normalize_value(self) -> TaxId:
        value = re.sub(r"\s+", "", self.value).upper()
        if not _TAX_ID.match(value):
            raise ValueError(
                "the tax id must be 2 to 64 letters, digits, dots, slashes or "
                "hyphens, starting with a letter or digit"
            )
        if self.type == "eu_vat" and value[:2] not in EU_VAT_PREFIXES:
            raise ValueError(
                "an eu_vat number starts with its member state's prefix, such as "
                "'DE' or 'EL'"
            )
        self.value = value
        return self


class CustomerCreate(InputModel):
    kind: CustomerKind = Field(
        default="company", description="A company, or a person buying for themselves."
    )
    name: CustomerName
    legal_name: CustomerName | None = Field(
        default=None, description="Registered name printed on invoices."
    )
    email: Email | None = None
    billing_email: Email | None = Field(
        default=None, description="Address for invoices, kept apart from email."
    )
    domain: Domain | None = None
    billing_address: BillingAddress | None = None
    tax_id: TaxId | None = None
    currency: CurrencyCode | None = Field(
        default=None, description="Invoicing currency, the workspace's when omitted."
    )
    timezone: TimeZone | None = Field(
        default=None,
        description="IANA time zone that due dates are read in, the workspace's when "
        "omitted.",
    )
    language: LanguageTag | None = None
    payment_terms_days: PaymentTermsDays = 30
    owner_id: UserId | None = Field(
        default=None,
        description="The active user who owns the account, the On-Behalf-Of user "
        "when omitted.",
    )
    on_duplicate: OnDuplicate = Field(
        default="reject",
        description="What happens when a customer with the same domain exists: "
        "'reject' answers 409 duplicate_customer naming it, 'link' returns it "
        "unchanged with status 200.",
    )


class CustomerUpdate(InputModel):
    kind: CustomerKind | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    name: CustomerName | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    legal_name: CustomerName | None = Field(
        default=None, description="Send null to clear it."
    )
    email: Email | None = Field(default=None, description="Send null to clear it.")
    billing_email: Email | None = Field(
        default=None, description="Send null to clear it."
    )
    domain: Domain | None = Field(default=None, description="Send null to clear it.")
    billing_address: BillingAddress | None = Field(
        default=None, description="Replaces the whole address. Send null to clear it."
    )
    tax_id: TaxId | None = Field(default=None, description="Send null to clear it.")
    currency: CurrencyCode | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    timezone: TimeZone | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    language: LanguageTag | None = Field(
        default=None, description="Send null to clear it."
    )
    payment_terms_days: PaymentTermsDays | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    owner_id: UserId | None = Field(default=None, description="Send null to clear it.")


class BillingAddressOut(OutputModel):
    line1: str
    line2: str | None
    city: str | None
    region: str | None
    postal_code: str | None
    country: str | None


class TaxIdOut(OutputModel):
    type: str
    value: str


class Customer(OutputModel):
    object: Literal["customer"] = "customer"
    id: CustomerId
    kind: CustomerKind
    name: str
    legal_name: str | None
    email: str | None
    billing_email: str | None
    domain: str | None
    billing_address: BillingAddressOut | None
    tax_id: TaxIdOut | None
    currency: str
    timezone: str
    language: str | None
    payment_terms_days: int
    owner_id: UserId | None
    credit_balance: int = Field(
        description="Credit the customer holds, in the minor unit of its currency: "
        "overpayments of invoices, unallocated succeeded payments and the sum of its "
        "credit ledger (credit notes, adjustments, applied credit), all in the "
        "customer's currency. Read-only."
    )
    source_lead_id: LeadId | None = Field(
        description="The lead this customer was created from by a conversion."
    )
    dunning_policy_id: DunningPolicyId | None = Field(
        description="The dunning policy of this customer's invoices; null follows "
        "the workspace default. Set with PUT /v1/customers/{id}/dunning-policy."
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
    title: Title | None = None
    phone: Phone | None = Field(
        default=None,
        description="Stored in E.164. A national number is read in phone_region.",
    )
    phone_region: CountryCode | None = Field(
        default=None,
        description="ISO 3166-1 alpha-2 region to read a national phone number in, "
        "the server's default region when omitted.",
    )
    roles: Roles = []


class ContactUpdate(InputModel):
    email: Email | None = Field(default=None, description="Send null to clear it.")
    first_name: PersonName | None = Field(
        default=None, description="Send null to clear it."
    )
    last_name: PersonName | None = Field(
        default=None, description="Send null to clear it."
    )
    title: Title | None = Field(default=None, description="Send null to clear it.")
    phone: Phone | None = Field(default=None, description="Send null to clear it.")
    phone_region: CountryCode | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    roles: Roles | None = Field(
        default=None,
        description="Replaces every role; send [] to remove them.",
        json_schema_extra=drop_null_from_schema,
    )


class Contact(OutputModel):
    object: Literal["contact"] = "contact"
    id: ContactId
    customer_id: CustomerId
    email: str | None
    first_name: str | None
    last_name: str | None
    title: str | None
    phone: str | None
    roles: list[ContactRole]
    version: int
    created_at: datetime
    updated_at: datetime
