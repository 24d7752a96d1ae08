"""Schemas of the billing profile and of sending invoices by email."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from app.core.schemas import (
    BillingProfileId,
    InputModel,
    InvoiceId,
    InvoiceSendId,
    OutputModel,
)
from app.customers.schemas import (
    BillingAddress,
    BillingAddressOut,
    Email,
    Phone,
    TaxId,
    TaxIdOut,
)

InvoiceSendStatus = Literal["queued", "sending", "sent", "failed"]

MAX_RECIPIENTS = 10
LegalName = Annotated[str, Field(min_length=1, max_length=300)]
LongText = Annotated[str, Field(min_length=1, max_length=2000)]


class BillingProfileUpdate(InputModel):
    """Changes to the seller details on invoices; send null to clear a field."""

    legal_name: LegalName | None = Field(
        default=None,
        description="The seller's registered name; the workspace name is used without it.",
    )
    email: Email | None = Field(default=None, description="Billing contact address.")
    phone: Phone | None = None
    address: BillingAddress | None = None
    tax_id: TaxId | None = None
    payment_instructions: LongText | None = Field(
        default=None,
        description="Printed under 'How to pay': bank name, IBAN, BIC, the reference "
        "to quote. Line breaks are kept.",
    )
    invoice_footer: LongText | None = Field(
        default=None,
        description="Small print at the end of every invoice, such as the company "
        "registration.",
    )


class BillingProfile(OutputModel):
    object: Literal["billing_profile"] = "billing_profile"
    id: BillingProfileId | None = Field(
        description="Null until the profile is first saved."
    )
    legal_name: str | None
    email: str | None
    phone: str | None
    address: BillingAddressOut | None
    tax_id: TaxIdOut | None
    payment_instructions: str | None
    invoice_footer: str | None
    version: int = Field(description="0 until the profile is first saved.")
    created_at: datetime | None
    updated_at: datetime | None


class InvoiceSendCreate(InputModel):
    """Whom to email the invoice to; without ``to``, the customer's billing email."""

    to: (
        Annotated[list[Email], Field(min_length=1, max_length=MAX_RECIPIENTS)] | None
    ) = Field(
        default=None,
        description="Recipients; defaults to the customer's billing_email, or its "
        "email without one.",
    )
    subject: Annotated[str, Field(min_length=1, max_length=300)] | None = Field(
        default=None, description="Defaults to 'Invoice <number> from <seller>'."
    )
    message: Annotated[str, Field(min_length=1, max_length=5000)] | None = Field(
        default=None,
        description="Plain-text body; a short default names the amount due.",
    )


class InvoiceSend(OutputModel):
    object: Literal["invoice_send"] = "invoice_send"
    id: InvoiceSendId
    invoice_id: InvoiceId
    recipients: list[str]
    subject: str
    status: InvoiceSendStatus = Field(
        description="queued, then sending while a worker holds the send, then sent or "
        "failed."
    )
    message_id: str = Field(
        description="The email's Message-ID header, the same on every attempt."
    )
    attempts: int
    sent_at: datetime | None
    error: str | None = Field(description="Why the last attempt failed, if it did.")
    created_at: datetime
    updated_at: datetime
