from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, EmailStr, Field

from app.core.money import CurrencyCode
from app.core.schemas import (
    ContactId,
    CustomerId,
    InputModel,
    LeadId,
    OpportunityId,
    OutputModel,
    TimeZone,
    UserId,
)
from app.customers.schemas import (
    Contact,
    Customer,
    CustomerName,
    Domain,
    Email,
    PaymentTermsDays,
)
from app.opportunities.schemas import Amount, Opportunity, OpportunityName, OwnerId

LeadStatus = Literal[
    "new",
    "working",
    "nurturing",
    "qualified",
    "disqualified",
    "junk",
    "converted",
    "merged",
]
LeadSource = Literal["web_form", "campaign", "partner", "import", "api", "referral"]

ShortText = Annotated[str, Field(min_length=1, max_length=200)]


class LeadCreate(InputModel):
    email: EmailStr = Field(max_length=320)
    first_name: ShortText | None = None
    last_name: ShortText | None = None
    company: Annotated[str, Field(min_length=1, max_length=300)] | None = None
    title: ShortText | None = None
    phone: Annotated[str, Field(min_length=3, max_length=32)] | None = None
    timezone: TimeZone | None = None
    source: LeadSource = "api"
    owner_id: UserId | None = Field(
        default=None,
        description="An active user. When omitted: the On-Behalf-Of user, else the "
        "assignment rules decide.",
    )
    notes: Annotated[str, Field(max_length=10_000)] | None = None
    attributes: dict[str, Any] = Field(
        default_factory=dict, description="Custom fields, kept as given."
    )


class LeadUpdate(InputModel):
    email: EmailStr | None = Field(default=None, max_length=320)
    first_name: ShortText | None = None
    last_name: ShortText | None = None
    company: Annotated[str, Field(min_length=1, max_length=300)] | None = None
    title: ShortText | None = None
    phone: Annotated[str, Field(min_length=3, max_length=32)] | None = None
    timezone: TimeZone | None = None
    owner_id: UserId | None = Field(
        default=None, description="An active user, or null to unassign the lead."
    )
    notes: Annotated[str, Field(max_length=10_000)] | None = None
    attributes: dict[str, Any] | None = None
    status: LeadStatus | None = Field(
        default=None,
        description="Move the lead to another status; see GET /v1/meta/state-machines.",
    )


class Lead(OutputModel):
    object: Literal["lead"] = "lead"
    id: LeadId
    email: str
    email_normalized: str
    first_name: str | None
    last_name: str | None
    company: str | None
    title: str | None
    phone: str | None
    timezone: str | None
    source: str
    status: LeadStatus
    owner_id: UserId | None
    notes: str | None
    attributes: dict[str, Any]
    customer_id: CustomerId | None
    contact_id: ContactId | None
    opportunity_id: OpportunityId | None
    converted_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime


class ConversionCustomer(InputModel):
    """Values for the customer a conversion creates, in place of the lead's."""

    name: CustomerName | None = Field(
        default=None, description="The lead's company, else its name, when omitted."
    )
    email: Email | None = Field(
        default=None, description="The lead's email when omitted."
    )
    domain: Domain | None = Field(
        default=None,
        description="The domain of the lead's email when omitted, unless that is a "
        "free mail provider.",
    )
    currency: CurrencyCode | None = Field(
        default=None,
        description="The opportunity's currency, else the workspace's, when omitted.",
    )
    timezone: TimeZone | None = Field(
        default=None, description="The lead's, else the workspace's, when omitted."
    )
    payment_terms_days: PaymentTermsDays = 30


class ConversionOpportunity(InputModel):
    """Values for the opportunity a conversion creates."""

    name: OpportunityName | None = Field(
        default=None, description="The customer's name when omitted."
    )
    amount: Amount = 0
    currency: CurrencyCode | None = Field(
        default=None, description="The customer's currency when omitted."
    )
    expected_close_date: date | None = None
    owner_id: OwnerId | None = Field(
        default=None,
        description="The lead's owner, else the On-Behalf-Of user, when omitted.",
    )


class LeadConvert(InputModel):
    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {
                    "not": {
                        "required": ["customer_id", "customer"],
                        "properties": {
                            "customer_id": {"type": "string"},
                            "customer": {"type": "object"},
                        },
                    }
                },
                {
                    "not": {
                        "required": ["create_opportunity", "opportunity"],
                        "properties": {
                            "create_opportunity": {"const": False},
                            "opportunity": {"type": "object"},
                        },
                    }
                },
            ]
        }
    )

    customer_id: CustomerId | None = Field(
        default=None,
        description="Link this existing customer; a new one is created from the lead "
        "when omitted.",
    )
    customer: ConversionCustomer | None = Field(
        default=None,
        description="Overrides for the new customer, rejected together with customer_id.",
    )
    create_opportunity: bool = True
    opportunity: ConversionOpportunity | None = Field(
        default=None,
        description="Overrides for the new opportunity, which opens in the first "
        "stage of the default pipeline.",
    )


class LeadConversion(OutputModel):
    """Everything one conversion created or linked."""

    object: Literal["lead_conversion"] = "lead_conversion"
    lead_id: LeadId
    customer_id: CustomerId
    contact_id: ContactId
    opportunity_id: OpportunityId | None = Field(
        description="Null when the request set create_opportunity to false."
    )
    customer_created: bool = Field(
        description="False when the request linked an existing customer."
    )
    contact_created: bool = Field(
        description="False when the linked customer already had a contact with the "
        "lead's email."
    )
    lead: Lead
    customer: Customer
    contact: Contact
    opportunity: Opportunity | None
