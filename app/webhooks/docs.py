"""The OpenAPI ``webhooks`` section: one operation per event type in the catalogue.

Each operation describes the request salescycle sends: the Standard Webhooks headers
and a payload whose ``data`` has the object's schema when ``DATA_SCHEMAS`` lists it,
and is a free-form object otherwise.
"""

from __future__ import annotations

import inspect
from datetime import datetime
from functools import cache
from typing import Annotated, Any

from fastapi import FastAPI, Header
from pydantic import BaseModel, Field, JsonValue, create_model

from app.activities.schemas import Activity
from app.billing.credit_schemas import CreditNote, CustomerCreditTransaction
from app.billing.document_schemas import BillingProfile
from app.billing.dunning_schemas import DunningPolicy, DunningReminder, PromiseToPay
from app.billing.payment_schemas import Dispute, ReconciliationRun
from app.billing.schemas import Invoice, Payment, TaxRateObject
from app.core.schemas import EventId
from app.customers.schemas import Contact, Customer
from app.customfields.schemas import CustomField
from app.leads.assignment_schemas import AssignmentRule
from app.leads.attribution_schemas import Campaign, Partner
from app.leads.capture_schemas import Form
from app.leads.schemas import Lead
from app.leads.scoring_schemas import Engagement, ScoringRule, ScoringSettings
from app.nurture.email_event_schemas import EmailEventReceipt, EmailEventSecret
from app.nurture.enrolment_schemas import EnrollmentJob
from app.nurture.offer_schemas import Offer, OfferCode
from app.nurture.schedule_schemas import HolidayCalendar
from app.nurture.schemas import Enrollment, Sequence
from app.nurture.settings_service import NurtureSettingsView
from app.opportunities.product_schemas import Product
from app.opportunities.proposal_schemas import Proposal
from app.opportunities.schemas import (
    LostReason,
    Objection,
    Opportunity,
    Pipeline,
    Stage,
)
from app.users.schemas import Team, User
from app.webhooks import catalog
from app.webhooks.schemas import (
    ACTOR_DESCRIPTION,
    REQUEST_ID_DESCRIPTION,
    WebhookEndpoint,
)
from app.workspaces.schemas import Workspace


def without(model: type[BaseModel], *names: str) -> type[BaseModel]:
    """Build a copy of ``model`` without the fields that events leave out."""
    fields: dict[str, Any] = {
        name: (field.annotation, field)
        for name, field in model.model_fields.items()
        if name not in names
    }
    return create_model(
        f"{model.__name__}EventData",
        __config__=model.model_config,
        __doc__=model.__doc__,
        **fields,
    )


# The schema of ``data`` per object type: the API schema that the feature's service
# serializes the object with when it emits. An object type missing here is documented
# as a free-form object. Keep the keys sorted, one per line.
DATA_SCHEMAS: dict[str, type[BaseModel]] = {
    "activity": Activity,
    "assignment_rule": AssignmentRule,
    "billing_profile": BillingProfile,
    "campaign": Campaign,
    "contact": Contact,
    "credit_note": CreditNote,
    "custom_field": CustomField,
    "customer": Customer,
    "customer_credit_transaction": CustomerCreditTransaction,
    "dispute": Dispute,
    "dunning_policy": DunningPolicy,
    "dunning_reminder": DunningReminder,
    "email_event": without(EmailEventReceipt, "duplicate"),
    "email_event_secret": without(EmailEventSecret, "secret"),
    "engagement": Engagement,
    "enrollment": Enrollment,
    "enrollment_job": EnrollmentJob,
    "form": Form,
    "holiday_calendar": HolidayCalendar,
    "invoice": Invoice,
    "lead": Lead,
    "lost_reason": LostReason,
    "nurture_settings": NurtureSettingsView,
    "objection": Objection,
    "offer": Offer,
    "offer_code": OfferCode,
    "opportunity": Opportunity,
    "partner": Partner,
    "payment": Payment,
    "pipeline": Pipeline,
    "product": Product,
    "promise_to_pay": PromiseToPay,
    "proposal": Proposal,
    "reconciliation_run": ReconciliationRun,
    "scoring_rule": ScoringRule,
    "scoring_settings": ScoringSettings,
    "sequence": Sequence,
    "stage": Stage,
    "tax_rate": TaxRateObject,
    "team": Team,
    "user": User,
    "webhook_endpoint": WebhookEndpoint,
    "workspace": Workspace,
}

DESCRIPTION = """\
{description}

Sent as `POST` with a JSON body to every enabled endpoint subscribed to `{name}`,
`{object_type}.*` or `*`. Verify the `webhook-signature` header with the endpoint's
`whsec_` secret, as the Standard Webhooks libraries do, and drop a request whose
`webhook-id` you have already processed: every retry repeats the same id and body.
Respond with any 2xx within the timeout to acknowledge it. After any other response
the request is retried with backoff for about three days, except that 410 Gone
disables the endpoint.
"""


class WebhookPayload(BaseModel):
    """The body of a webhook request: one event of the event log."""

    id: EventId = Field(description="The event's id, as GET /v1/events shows it.")
    type: str
    created_at: datetime
    object_type: str
    object_id: str = Field(description="Id of the object, with its type's prefix.")
    sequence: int = Field(
        description="Counts the events of one object from 1; drop an event whose "
        "sequence is not above the last one it applied."
    )
    request_id: str | None = Field(description=REQUEST_ID_DESCRIPTION)
    actor: str | None = Field(description=ACTOR_DESCRIPTION)
    data: dict[str, Any] = Field(description="The object's full state after the event.")
    test: bool = Field(
        default=False,
        description="Present, and true, only in a test event sent with POST "
        "/v1/webhook-endpoints/{id}/send-test-event; it describes no real object.",
    )


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


@cache
def _payload_models() -> dict[str, type[BaseModel]]:
    """Build one payload model per object type, named ``<Object>WebhookPayload``."""
    models: dict[str, type[BaseModel]] = {}
    for object_type in catalog.OBJECT_TYPES:
        names: list[JsonValue] = [
            item.name for item in catalog.EVENT_TYPES if item.object_type == object_type
        ]
        data_schema: Any = DATA_SCHEMAS.get(object_type, dict[str, Any])
        models[object_type] = create_model(
            f"{_camel(object_type)}WebhookPayload",
            __base__=WebhookPayload,
            __doc__=f"The body of a webhook request; data is a {object_type} object.",
            type=(str, Field(json_schema_extra={"enum": names})),
            object_type=(str, Field(json_schema_extra={"enum": [object_type]})),
            data=(
                data_schema,
                Field(description="The object's full state after the event."),
            ),
        )
    return models


def _receiver(model: type[BaseModel]) -> Any:
    """Build a handler whose signature documents the body and the signed headers."""

    async def receive(**_: Any) -> None:
        return None

    parameters = [
        inspect.Parameter("payload", inspect.Parameter.KEYWORD_ONLY, annotation=model),
        inspect.Parameter(
            "webhook_id",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[
                str,
                Header(
                    alias="webhook-id",
                    description="The delivery's id (wd_…), the same on every retry.",
                ),
            ],
        ),
        inspect.Parameter(
            "webhook_timestamp",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[
                str,
                Header(
                    alias="webhook-timestamp",
                    description="Unix seconds when this attempt was signed.",
                ),
            ],
        ),
        inspect.Parameter(
            "webhook_signature",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[
                str,
                Header(
                    alias="webhook-signature",
                    description="Space-separated `v1,<base64>` HMAC-SHA256 "
                    "signatures of `{id}.{timestamp}.{body}`: one per valid secret.",
                ),
            ],
        ),
    ]
    receive.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    return receive


def document_webhooks(app: FastAPI) -> None:
    """Describe the outbound webhook payloads in the OpenAPI ``webhooks`` section."""
    models = _payload_models()
    for item in catalog.EVENT_TYPES:
        app.webhooks.post(
            item.name,
            operation_id=f"webhook_{item.name.replace('.', '_')}",
            summary=item.description,
            description=DESCRIPTION.format(
                name=item.name,
                object_type=item.object_type,
                description=item.description,
            ),
            tags=["webhooks"],
            status_code=200,
            response_description="Any 2xx acknowledges the event; the body is ignored.",
            responses={
                410: {
                    "description": "Gone: the endpoint is disabled and gets no more "
                    "events."
                },
                "default": {
                    "description": "Any other status, or none within the timeout, is "
                    "a failure: the request is retried with backoff."
                },
            },
        )(_receiver(models[item.object_type]))
