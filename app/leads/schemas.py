from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, EmailStr, Field

from app.core.money import CurrencyCode
from app.core.schemas import (
    CalendarDate,
    ContactId,
    CustomerId,
    EnrollmentId,
    InputModel,
    LeadId,
    OpportunityId,
    OutputModel,
    StageId,
    TimeZone,
    TouchId,
    UserId,
)
from app.customers.schemas import (
    BillingAddress,
    Contact,
    Customer,
    CustomerKind,
    CustomerName,
    Domain,
    Email,
    LanguageTag,
    PaymentTermsDays,
    Roles,
    TaxId,
    Title,
)
from app.leads.attribution_schemas import LeadAttribution
from app.leads.scoring_schemas import ScoreItem
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
# Names are stored exactly as sent, without Unicode normalization; the limit counts
# code points, and a longer value is rejected rather than cut.
PersonName = Annotated[str, Field(min_length=1, max_length=200)]
PhoneRegion = Annotated[
    str,
    Field(
        pattern="^[A-Z]{2}$",
        description="ISO 3166-1 alpha-2 region, such as DE, to read a national phone "
        "number in. Defaults to the default_phone_region setting.",
        examples=["DE"],
    ),
]
CompanyDomainInput = Annotated[
    str,
    Field(
        min_length=1,
        max_length=253,
        description="The company's domain, such as example.com; a leading www. is "
        "dropped.",
    ),
]
Website = Annotated[
    str,
    Field(
        min_length=1,
        max_length=2048,
        description="The company's website; its host gives company_domain when "
        "company_domain is omitted.",
    ),
]
StatusReason = Annotated[str, Field(min_length=1, max_length=500)]
OnDuplicate = Literal["reject", "merge"]


def _normalize_tags(tags: list[str] | None) -> list[str] | None:
    if tags is None:
        return None
    return list(dict.fromkeys(tag.lower() for tag in tags))


Tag = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^,\s]+$")]
Tags = Annotated[
    list[Tag],
    Field(
        max_length=50,
        description="Up to 50 tags without commas or spaces; stored lower-cased, "
        "each once.",
    ),
    AfterValidator(_normalize_tags),
]


# The attributes one request may set, and the longest key: the longest an attribute
# import accepts.
MAX_ATTRIBUTES = 200
MAX_ATTRIBUTE_KEY_LENGTH = 100


def _check_attributes(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) > MAX_ATTRIBUTES:
        raise ValueError(
            f"has {len(value)} keys, more than the {MAX_ATTRIBUTES} one request may "
            "set; remove some"
        )
    for key in value:
        if not 1 <= len(key) <= MAX_ATTRIBUTE_KEY_LENGTH:
            preview = key if len(key) <= 40 else key[:40] + "…"
            raise ValueError(
                f"the key {preview!r} has {len(key)} characters; use a key of 1 to "
                f"{MAX_ATTRIBUTE_KEY_LENGTH} characters"
            )
    return value


Attributes = Annotated[dict[str, Any], AfterValidator(_check_attributes)]


class LeadCreate(InputModel):
    email: EmailStr = Field(max_length=320)
    first_name: PersonName | None = None
    last_name: PersonName | None = None
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
    attributes: Attributes = Field(
        default_factory=dict,
        description="Custom fields: keys with a definition in /v1/custom-fields are "
        "checked against it, others are kept as given. At most 200 keys, each of 1 "
        "to 100 characters.",
    )
    phone_region: PhoneRegion | None = None
    company_domain: CompanyDomainInput | None = None
    website: Website | None = None
    on_duplicate: OnDuplicate = Field(
        default="reject",
        description="What to do when an open lead has the same email: reject (409 "
        "duplicate_lead) or merge (update that lead with the non-empty fields sent "
        "and return it with 200).",
    )
    # Excluded from model_dump, so it never becomes a column; it becomes the first touch.
    attribution: LeadAttribution | None = Field(default=None, exclude=True)
    tags: Tags = Field(default_factory=list)


class LeadUpdate(InputModel):
    email: EmailStr | None = Field(default=None, max_length=320)
    first_name: PersonName | None = None
    last_name: PersonName | None = None
    company: Annotated[str, Field(min_length=1, max_length=300)] | None = None
    title: ShortText | None = None
    phone: Annotated[str, Field(min_length=3, max_length=32)] | None = None
    timezone: TimeZone | None = None
    owner_id: UserId | None = Field(
        default=None, description="An active user, or null to unassign the lead."
    )
    notes: Annotated[str, Field(max_length=10_000)] | None = None
    attributes: Attributes | None = Field(
        default=None,
        description="Replaces every attribute; null clears them. At most 200 keys, "
        "each of 1 to 100 characters.",
    )
    tags: Tags | None = Field(
        default=None, description="Replaces every tag; null clears them."
    )
    status: LeadStatus | None = Field(
        default=None,
        description="Move the lead to another status; see GET /v1/meta/state-machines.",
    )
    status_reason: StatusReason | None = Field(
        default=None,
        description="Why the status changes; required when moving to disqualified.",
    )
    phone_region: PhoneRegion | None = None
    company_domain: CompanyDomainInput | None = None


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
    phone_normalized: str | None = Field(description="The phone number in E.164.")
    company_domain: str | None
    timezone: str | None
    source: str
    status: LeadStatus
    status_reason: str | None
    status_changed_at: datetime | None
    merged_into_id: LeadId | None = Field(
        description="The lead this one was merged into, when its status is merged."
    )
    erased_at: datetime | None = Field(
        description="When the lead's personal data was erased."
    )
    owner_id: UserId | None
    notes: str | None
    attributes: dict[str, Any]
    customer_id: CustomerId | None
    contact_id: ContactId | None
    opportunity_id: OpportunityId | None
    converted_at: datetime | None
    first_touch_id: TouchId | None = Field(
        description="See GET /v1/leads/{lead_id}/touches."
    )
    last_touch_id: TouchId | None
    tags: list[str]
    score: int = Field(description="The sum of the points of the scoring rules.")
    score_breakdown: list[ScoreItem] = Field(
        description="Each scoring rule that gave non-zero points."
    )
    sales_ready_at: datetime | None = Field(
        description="Since when the score has been at or above the workspace's "
        "threshold; null below it."
    )
    version: int
    created_at: datetime
    updated_at: datetime


class ConversionCustomer(InputModel):
    """Values for the customer a conversion creates, in place of the lead's."""

    kind: CustomerKind | None = Field(
        default=None,
        description="'company' when the lead names a company or a company domain, "
        "else 'individual', when omitted.",
    )
    name: CustomerName | None = Field(
        default=None, description="The lead's company, else its name, when omitted."
    )
    legal_name: CustomerName | None = None
    email: Email | None = Field(
        default=None, description="The lead's email when omitted."
    )
    billing_email: Email | None = None
    domain: Domain | None = Field(
        default=None,
        description="The lead's company domain (from its website or its email, "
        "unless that is a free mail provider) when omitted.",
    )
    billing_address: BillingAddress | None = None
    tax_id: TaxId | None = None
    currency: CurrencyCode | None = Field(
        default=None,
        description="The opportunity's currency, else the workspace's, when omitted.",
    )
    timezone: TimeZone | None = Field(
        default=None, description="The lead's, else the workspace's, when omitted."
    )
    language: LanguageTag | None = None
    payment_terms_days: PaymentTermsDays = 30
    owner_id: UserId | None = Field(
        default=None,
        description="The lead's owner when active, else the On-Behalf-Of user, when "
        "omitted.",
    )


class ConversionContact(InputModel):
    """Values for the contact a conversion creates from the lead's person."""

    title: Title | None = Field(
        default=None, description="The lead's title when omitted."
    )
    roles: Roles = []


class ConversionOpportunity(InputModel):
    """Values for the opportunity a conversion creates."""

    name: OpportunityName | None = Field(
        default=None, description="The customer's name when omitted."
    )
    amount: Amount = 0
    currency: CurrencyCode | None = Field(
        default=None, description="The customer's currency when omitted."
    )
    stage_id: StageId | None = Field(
        default=None,
        description="An open stage of any pipeline, the first stage of the default "
        "pipeline when omitted.",
    )
    expected_close_date: CalendarDate | None = None
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
        description="Link this existing customer. When omitted, the customer with "
        "the lead's company domain is linked, else a new one is created.",
    )
    customer: ConversionCustomer | None = Field(
        default=None,
        description="Values for a new customer, rejected together with customer_id "
        "and unused when a customer is linked by domain.",
    )
    match_customer_by_domain: bool = Field(
        default=True,
        description="Link the customer whose domain equals the lead's company domain. "
        "When false and such a customer exists, the conversion is a 409 "
        "duplicate_customer.",
    )
    contact: ConversionContact | None = Field(
        default=None,
        description="Values for a new contact; unused when the customer already has "
        "a contact with the lead's email.",
    )
    create_opportunity: bool = True
    opportunity: ConversionOpportunity | None = Field(
        default=None,
        description="Values for the new opportunity, rejected when "
        "create_opportunity is false.",
    )
    dry_run: bool = Field(
        default=False,
        description="Report what the conversion would create and link, and write "
        "nothing: no row, no event, no job.",
    )


class ConversionMatch(OutputModel):
    """The key and value that found an existing record for a conversion."""

    key: Literal["customer_id", "domain", "email"] = Field(
        description="customer_id when the request named the customer, domain or "
        "email when the lead's normalized value matched."
    )
    value: str


class LeadConversion(OutputModel):
    """Everything one conversion created or linked, or would in a dry run."""

    object: Literal["lead_conversion"] = "lead_conversion"
    dry_run: bool
    lead_id: LeadId
    customer_id: CustomerId | None = Field(
        description="Null only in a dry run that would create the customer."
    )
    contact_id: ContactId | None = Field(
        description="Null only in a dry run that would create the contact."
    )
    opportunity_id: OpportunityId | None = Field(
        description="Null when create_opportunity is false, and in a dry run."
    )
    customer_created: bool = Field(
        description="True when the customer was (or would be) created, false when "
        "an existing one was linked."
    )
    customer_match: ConversionMatch | None = Field(
        description="How the linked customer was found; null when one was created."
    )
    contact_created: bool
    contact_match: ConversionMatch | None = Field(
        description="The email that found the linked contact; null when one was "
        "created."
    )
    opportunity_created: bool
    activities_linked: int = Field(
        description="Activities of the lead now also on the customer's and "
        "contact's timelines; open tasks also on the opportunity."
    )
    touches_linked: int = Field(
        description="Attribution touches of the lead now linked to the customer and "
        "contact."
    )
    exited_enrollment_ids: list[EnrollmentId] = Field(
        description="Nurture enrollments of the lead ended with reason converted."
    )
    lead: Lead = Field(description="The lead; unchanged in a dry run.")
    customer: Customer | None = Field(
        description="Null only in a dry run that would create the customer."
    )
    contact: Contact | None = Field(
        description="Null only in a dry run that would create the contact."
    )
    opportunity: Opportunity | None
