"""SQLAlchemy models of every aggregate, re-exported so that Alembic's metadata includes them all."""

from app.models.activity import Activity
from app.models.attribution import (
    Campaign,
    CaptureForm,
    FormPublishableKey,
    LeadConsent,
    LeadTouch,
    Partner,
)
from app.models.base import Base
from app.models.billing import (
    Dispute,
    DunningPolicy,
    DunningReminder,
    Invoice,
    InvoiceLine,
    InvoiceNumberSeries,
    Payment,
    PaymentAllocation,
    PromiseToPay,
    ProviderEvent,
    TaxRate,
)
from app.models.billing_documents import BillingProfile, InvoiceParties, InvoiceSend
from app.models.catalog import (
    LineItem,
    Product,
    ProductPrice,
    Proposal,
    ProposalLine,
)
from app.models.credit import (
    CreditNote,
    CreditNoteLine,
    CreditNoteNumberSeries,
    CustomerCreditTransaction,
)
from app.models.enrollment_job import EnrollmentJob
from app.models.event import Event, UndispatchedEvent
from app.models.holiday_calendar import HolidayCalendar
from app.models.lead import Lead
from app.models.lead_import import LeadImport, LeadImportError, LeadImportFile
from app.models.nurture import (
    EmailEvent,
    EmailEventSecret,
    EmailSuppression,
    Enrollment,
    NurtureSettings,
    Sequence,
    SequenceStep,
    StepRun,
)
from app.models.offer import Offer, OfferCode, OfferRedemption
from app.models.owner import (
    AssignmentCursor,
    AssignmentRule,
    LeadAssignment,
    Team,
    TeamMember,
    User,
)
from app.models.payments import AllocationReversal, ReconciliationRun, Refund
from app.models.sales import (
    Contact,
    Customer,
    LostReason,
    Objection,
    Opportunity,
    Pipeline,
    Stage,
    StageTransition,
)
from app.models.scoring import CustomFieldDefinition, LeadEngagement, ScoringRule
from app.models.webhook import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookRecovery,
)
from app.models.workspace import ApiKey, IdempotencyKey, Workspace

__all__ = [
    "Activity",
    "AllocationReversal",
    "ReconciliationRun",
    "Refund",
    "ApiKey",
    "AssignmentCursor",
    "AssignmentRule",
    "Base",
    "BillingProfile",
    "Campaign",
    "CaptureForm",
    "Contact",
    "CreditNote",
    "CreditNoteLine",
    "CreditNoteNumberSeries",
    "CustomerCreditTransaction",
    "CustomFieldDefinition",
    "Dispute",
    "DunningPolicy",
    "DunningReminder",
    "Customer",
    "EmailEvent",
    "EmailEventSecret",
    "EmailSuppression",
    "Enrollment",
    "EnrollmentJob",
    "Event",
    "FormPublishableKey",
    "HolidayCalendar",
    "IdempotencyKey",
    "Invoice",
    "InvoiceLine",
    "InvoiceNumberSeries",
    "TaxRate",
    "InvoiceParties",
    "InvoiceSend",
    "Lead",
    "LineItem",
    "LeadConsent",
    "LeadTouch",
    "LeadEngagement",
    "LeadAssignment",
    "LeadImport",
    "LeadImportError",
    "LeadImportFile",
    "LostReason",
    "Objection",
    "Offer",
    "OfferCode",
    "OfferRedemption",
    "Opportunity",
    "Partner",
    "Payment",
    "PaymentAllocation",
    "Pipeline",
    "Product",
    "ProductPrice",
    "Proposal",
    "ProposalLine",
    "PromiseToPay",
    "ProviderEvent",
    "ScoringRule",
    "Sequence",
    "SequenceStep",
    "Stage",
    "StageTransition",
    "StepRun",
    "NurtureSettings",
    "Team",
    "TeamMember",
    "User",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookRecovery",
    "Workspace",
    "UndispatchedEvent",
]
