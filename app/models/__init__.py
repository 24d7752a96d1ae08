"""SQLAlchemy models of every aggregate, re-exported so that Alembic's metadata includes them all."""

from app.models.base import Base
from app.models.billing import (
    Invoice,
    InvoiceLine,
    InvoiceNumberSeries,
    Payment,
    PaymentAllocation,
    ProviderEvent,
)
from app.models.event import Event
from app.models.lead import Lead
from app.models.lead_import import LeadImport, LeadImportError, LeadImportFile
from app.models.nurture import (
    EmailSuppression,
    Enrollment,
    Sequence,
    SequenceStep,
    StepRun,
)
from app.models.sales import (
    Contact,
    Customer,
    Opportunity,
    Pipeline,
    Stage,
    StageTransition,
)
from app.models.webhook import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.models.workspace import ApiKey, IdempotencyKey, Workspace

__all__ = [
    "ApiKey",
    "Base",
    "Contact",
    "Customer",
    "EmailSuppression",
    "Enrollment",
    "Event",
    "IdempotencyKey",
    "Invoice",
    "InvoiceLine",
    "InvoiceNumberSeries",
    "Lead",
    "LeadImport",
    "LeadImportError",
    "LeadImportFile",
    "Opportunity",
    "Payment",
    "PaymentAllocation",
    "Pipeline",
    "ProviderEvent",
    "Sequence",
    "SequenceStep",
    "Stage",
    "StageTransition",
    "StepRun",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "Workspace",
]
