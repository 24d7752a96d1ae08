"""Request and response bodies of capture forms, publishable keys and captures."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

import idna
from pydantic import AfterValidator, Field

from app.core.schemas import (
    ApiKeyId,
    CampaignId,
    FormId,
    InputModel,
    OutputModel,
    drop_null_from_schema,
)
from app.leads.attribution_schemas import Name

# The lead fields a form can collect; email is always collected and required.
LEAD_FIELDS = (
    "email",
    "first_name",
    "last_name",
    "company",
    "title",
    "phone",
    "timezone",
    "notes",
)
ATTRIBUTION_FIELDS = (
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "referral_code",
    "landing_page",
    "referrer",
)
# Names a submission may carry besides the form's fields: the key and the consent box.
KEY_FIELD = "key"
CONSENT_FIELD = "consent"
# The region of a national phone number, accepted by a form that collects the phone.
PHONE_REGION_FIELD = "phone_region"
RESERVED_FIELDS = frozenset(
    (*LEAD_FIELDS, *ATTRIBUTION_FIELDS, KEY_FIELD, CONSENT_FIELD, PHONE_REGION_FIELD)
)
MAX_ORIGINS = 20
# Characters that the WHATWG URL standard forbids in a host, besides controls.
_FORBIDDEN_HOST_CHARACTERS = frozenset(" #%/:<>?@[\\]^|")
MAX_ATTRIBUTE_KEYS = 50

LeadField = Literal[
    "email",
    "first_name",
    "last_name",
    "company",
    "title",
    "phone",
    "timezone",
    "notes",
]
FieldName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]


def _email_only() -> list[LeadField]:
    return ["email"]


def normalize_origin(value: str) -> str:
    """Return an origin as browsers send it: lower-case ``scheme://host[:port]``.

    The default port of the scheme is dropped, because a browser omits it from the
    Origin header. A path, query, fragment, user name or wildcard is rejected.
    """
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as error:
        raise ValueError(
            f"{value!r} is not an origin such as https://example.com"
        ) from error
    scheme = parts.scheme.lower()
    host = parts.hostname
    if (
        scheme not in ("http", "https")
        or not host
        or "*" in value
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or value.endswith("?")
        or value.endswith("#")
    ):
        raise ValueError(
            f"{value!r} is not an origin: give scheme://host[:port] such as "
            "https://www.example.com, without a path or wildcard"
        )
    if ":" in host:
        host = f"[{host}]"
    else:
        host = _ascii_host(value, host)
    default_port = 443 if scheme == "https" else 80
    suffix = f":{port}" if port is not None and port != default_port else ""
    return f"{scheme}://{host}{suffix}"


def _ascii_host(value: str, host: str) -> str:
    """Convert ``host`` to the ASCII form that browsers send in the Origin header.

    Browsers send an internationalized host in its IDNA form (``xn--…``), so an
    origin stored as typed, such as ``https://bücher.example``, would never match.
    """
    if host.isascii():
        for character in host:
            if character in _FORBIDDEN_HOST_CHARACTERS or not character.isprintable():
                raise ValueError(
                    f"{value!r} is not an origin: the host {host!r} contains "
                    f"{character!r}, which no host name may contain"
                )
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as error:
        raise ValueError(
            f"{value!r} is not an origin: the host {host!r} is not a valid "
            f"internationalized domain name ({error})"
        ) from error


def _check_redirect(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an absolute http or https URL")
    return value


Origin = Annotated[
    str,
    Field(min_length=1, max_length=300, examples=["https://www.example.com"]),
    AfterValidator(normalize_origin),
]
RedirectUrl = Annotated[
    str,
    Field(min_length=1, max_length=2048, examples=["https://www.example.com/thanks"]),
    AfterValidator(_check_redirect),
]
ConsentText = Annotated[str, Field(min_length=1, max_length=10_000)]
ConsentVersion = Annotated[str, Field(min_length=1, max_length=64)]


class FormCreate(InputModel):
    name: Name
    fields: list[LeadField] = Field(
        default_factory=_email_only,
        max_length=len(LEAD_FIELDS),
        description="Lead fields the form collects; email is always included.",
    )
    attribute_keys: list[FieldName] = Field(
        default_factory=list,
        max_length=MAX_ATTRIBUTE_KEYS,
        description="Custom fields the form collects, stored in the lead's attributes.",
    )
    required_fields: list[FieldName] = Field(
        default_factory=list,
        max_length=len(LEAD_FIELDS) + MAX_ATTRIBUTE_KEYS,
        description="Fields a submission must fill, among fields and attribute_keys; "
        "email is always required.",
    )
    allowed_origins: list[Origin] = Field(
        default_factory=list,
        max_length=MAX_ORIGINS,
        description="Origins (scheme://host[:port]) that browsers may submit the form "
        "from. A request with any other Origin header is rejected.",
    )
    consent_text: ConsentText | None = Field(
        default=None,
        description="Consent the visitor must give; with it, every submission needs "
        "consent=true.",
    )
    consent_version: ConsentVersion | None = Field(
        default=None, description="Required together with consent_text."
    )
    success_redirect_url: RedirectUrl | None = Field(
        default=None,
        description="Where a form-encoded submission is redirected with 303; JSON "
        "submissions, and all of them when omitted, get a JSON response.",
    )
    honeypot_field: FieldName = Field(
        default="website_url",
        description="A hidden field people leave empty; a submission that fills it "
        "gets the usual response and is dropped.",
    )
    campaign_id: CampaignId | None = Field(
        default=None, description="Campaign that every touch of the form links."
    )
    enabled: bool = True


class FormUpdate(InputModel):
    name: Name | None = Field(default=None, json_schema_extra=drop_null_from_schema)
    fields: list[LeadField] | None = Field(
        default=None,
        max_length=len(LEAD_FIELDS),
        json_schema_extra=drop_null_from_schema,
    )
    attribute_keys: list[FieldName] | None = Field(
        default=None,
        max_length=MAX_ATTRIBUTE_KEYS,
        json_schema_extra=drop_null_from_schema,
    )
    required_fields: list[FieldName] | None = Field(
        default=None,
        max_length=len(LEAD_FIELDS) + MAX_ATTRIBUTE_KEYS,
        json_schema_extra=drop_null_from_schema,
    )
    allowed_origins: list[Origin] | None = Field(
        default=None, max_length=MAX_ORIGINS, json_schema_extra=drop_null_from_schema
    )
    consent_text: ConsentText | None = None
    consent_version: ConsentVersion | None = None
    success_redirect_url: RedirectUrl | None = None
    honeypot_field: FieldName | None = Field(
        default=None, json_schema_extra=drop_null_from_schema
    )
    campaign_id: CampaignId | None = None
    enabled: bool | None = Field(default=None, json_schema_extra=drop_null_from_schema)


class Form(OutputModel):
    object: Literal["form"] = "form"
    id: FormId
    name: str
    fields: list[str]
    attribute_keys: list[str]
    required_fields: list[str]
    allowed_origins: list[str]
    consent_text: str | None
    consent_version: str | None
    success_redirect_url: str | None
    honeypot_field: str
    campaign_id: CampaignId | None
    enabled: bool
    version: int
    created_at: datetime
    updated_at: datetime


class PublishableKeyCreate(InputModel):
    name: Name = "capture form"


class PublishableKey(OutputModel):
    """A publishable key of one form; ``key`` is shown only in this response."""

    object: Literal["publishable_key"] = "publishable_key"
    id: ApiKeyId
    form_id: FormId
    name: str
    prefix: str
    key: str = Field(
        description="The pk_ key, shown once. It may only submit this form, so it can "
        "sit in a public web page."
    )
    created_at: datetime


class CaptureReceipt(OutputModel):
    """The response to every accepted submission, whether or not the lead existed."""

    status: Literal["received"] = "received"
