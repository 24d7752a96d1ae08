"""Request and response bodies of campaigns, partners and lead touches."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, EmailStr, Field, model_validator

from app.core.money import CurrencyCode
from app.core.schemas import (
    CalendarDate,
    CampaignId,
    FormId,
    InputModel,
    LeadId,
    OutputModel,
    PartnerId,
    TouchId,
    drop_null_from_schema,
)

Channel = Literal["web_form", "campaign", "partner", "import", "api", "referral"]
CampaignStatus = Literal["active", "archived"]

Name = Annotated[str, Field(min_length=1, max_length=200)]
Medium = Annotated[
    str, Field(min_length=1, max_length=100, examples=["email", "paid_social"])
]
UtmValue = Annotated[str, Field(min_length=1, max_length=200)]
ReferralCode = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$",
        examples=["ACME-2026"],
    ),
]
MAX_PAGE_URL = 2048
# Schemes that run code or embed a document when a dashboard renders the URL as a
# link, so a public form must not be able to store them.
SCRIPT_SCHEMES = frozenset(("javascript", "vbscript", "data"))


def check_page_url(value: str) -> str:
    """Raise ``ValueError`` for a page URL with a script scheme or a control character.

    Other schemes stay accepted, because a referrer may be ``android-app://…`` and a
    landing page may be sent as a path.
    """
    if any(not character.isprintable() for character in value):
        raise ValueError(
            "must not contain control characters such as tab or newline; send the "
            "page's http or https URL"
        )
    # urlsplit drops leading spaces as browsers do, so " javascript:" is caught too.
    scheme = urlsplit(value).scheme.lower()
    if scheme in SCRIPT_SCHEMES:
        raise ValueError(
            f"{scheme}: URLs are not accepted; send the page's http or https URL"
        )
    return value


PageUrl = Annotated[
    str, Field(min_length=1, max_length=MAX_PAGE_URL), AfterValidator(check_page_url)
]
BudgetAmount = Annotated[
    int,
    Field(
        ge=0,
        le=10**15,
        description="In the currency's minor unit: 500000 USD is 5,000.00 USD.",
    ),
]


class CampaignCreate(InputModel):
    name: Name
    medium: Medium | None = Field(
        default=None, description="Channel or medium, such as email or paid_social."
    )
    utm_campaign: UtmValue | None = Field(
        default=None,
        description="The utm_campaign value of the campaign's links, unique in the "
        "workspace; a touch with this utm_campaign links the campaign.",
    )
    starts_on: CalendarDate | None = None
    ends_on: CalendarDate | None = None
    status: CampaignStatus = "active"
    budget_amount: BudgetAmount | None = None
    budget_currency: CurrencyCode | None = Field(
        default=None, description="Required together with budget_amount."
    )


class CampaignUpdate(InputModel):
    name: Name | None = Field(default=None, json_schema_extra=drop_null_from_schema)
    medium: Medium | None = None
    utm_campaign: UtmValue | None = None
    starts_on: CalendarDate | None = None
    ends_on: CalendarDate | None = None
    status: CampaignStatus | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    budget_amount: BudgetAmount | None = Field(
        default=None, description="Null clears the budget, with budget_currency."
    )
    budget_currency: CurrencyCode | None = None


class Campaign(OutputModel):
    object: Literal["campaign"] = "campaign"
    id: CampaignId
    name: str
    medium: str | None
    utm_campaign: str | None
    starts_on: date | None
    ends_on: date | None
    status: CampaignStatus
    budget_amount: int | None
    budget_currency: str | None
    version: int
    created_at: datetime
    updated_at: datetime


class PartnerCreate(InputModel):
    name: Name
    referral_code: ReferralCode = Field(description="Unique in the workspace.")
    email: EmailStr | None = Field(default=None, max_length=320)
    active: bool = True


class PartnerUpdate(InputModel):
    name: Name | None = Field(default=None, json_schema_extra=drop_null_from_schema)
    referral_code: ReferralCode | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    email: EmailStr | None = Field(default=None, max_length=320)
    active: bool | None = Field(default=None, json_schema_extra=drop_null_from_schema)


class Partner(OutputModel):
    object: Literal["partner"] = "partner"
    id: PartnerId
    name: str
    referral_code: str
    email: str | None
    active: bool
    version: int
    created_at: datetime
    updated_at: datetime


class LeadAttribution(InputModel):
    """The source of a lead, stored as its first touch."""

    utm_source: UtmValue | None = None
    utm_medium: UtmValue | None = None
    utm_campaign: UtmValue | None = None
    utm_term: UtmValue | None = None
    utm_content: UtmValue | None = None
    campaign_id: CampaignId | None = Field(
        default=None,
        description="A campaign of the workspace; when omitted, the campaign whose "
        "utm_campaign matches, if any.",
    )
    partner_id: PartnerId | None = None
    referral_code: ReferralCode | None = Field(
        default=None, description="Links the active partner with this referral code."
    )
    landing_page: PageUrl | None = None
    referrer: PageUrl | None = None

    @model_validator(mode="after")
    def _one_partner(self) -> LeadAttribution:
        if self.partner_id is not None and self.referral_code is not None:
            raise ValueError("give partner_id or referral_code, not both")
        return self


class Touch(OutputModel):
    """One attribution record of a lead; touches are never changed or deleted."""

    object: Literal["touch"] = "touch"
    id: TouchId
    lead_id: LeadId
    channel: Channel
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    utm_term: str | None
    utm_content: str | None
    campaign_id: CampaignId | None
    partner_id: PartnerId | None
    referral_code: str | None
    form_id: FormId | None
    landing_page: str | None
    referrer: str | None
    occurred_at: datetime
