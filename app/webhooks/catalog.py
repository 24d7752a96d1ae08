"""The catalogue of event types: what the event log records and webhooks deliver.

Every type is ``<object_type>.<action>``. Webhook endpoints subscribe with exact types,
``<object_type>.*`` for every action on one object type, or ``*`` for everything.
"""

from __future__ import annotations

from dataclasses import dataclass

WILDCARD = "*"


@dataclass(frozen=True)
class EventType:
    """One kind of event, the object type its ``data`` describes, and what it means."""

    name: str
    object_type: str
    description: str


EVENT_TYPES: tuple[EventType, ...] = (
    EventType("lead.created", "lead", "A lead was captured or created."),
    EventType("lead.updated", "lead", "A lead's fields or status changed."),
    EventType(
        "lead.unsubscribed",
        "lead",
        "A lead's address unsubscribed from marketing email.",
    ),
    EventType(
        "lead.converted",
        "lead",
        "A lead was converted into a customer, contact and opportunity.",
    ),
    EventType(
        "lead.merged",
        "lead",
        "A lead was merged into another; merged_into_id names the survivor.",
    ),
    EventType(
        "lead.erased",
        "lead",
        "A lead's personal data was erased, also from its earlier events.",
    ),
    EventType(
        "lead.touch_recorded",
        "lead",
        "A capture of an existing open lead added a touch; last_touch_id names it.",
    ),
    EventType("campaign.created", "campaign", "A campaign was created."),
    EventType("campaign.updated", "campaign", "A campaign's fields or status changed."),
    EventType("partner.created", "partner", "A referral partner was created."),
    EventType("partner.updated", "partner", "A referral partner's fields changed."),
    EventType("form.created", "form", "A capture form was created."),
    EventType("form.updated", "form", "A capture form's settings changed."),
    EventType(
        "lead.score_changed",
        "lead",
        "A lead's score changed, after a write, an engagement, a rule change or decay.",
    ),
    EventType(
        "lead.sales_ready",
        "lead",
        "A lead's score reached the workspace's threshold; emitted again only after "
        "it fell below and rose again.",
    ),
    EventType(
        "engagement.created", "engagement", "An engagement of a lead was recorded."
    ),
    EventType("custom_field.created", "custom_field", "A custom field was defined."),
    EventType(
        "custom_field.updated", "custom_field", "A custom field definition changed."
    ),
    EventType("custom_field.deleted", "custom_field", "A custom field was deleted."),
    EventType("scoring_rule.created", "scoring_rule", "A scoring rule was created."),
    EventType("scoring_rule.updated", "scoring_rule", "A scoring rule changed."),
    EventType("scoring_rule.deleted", "scoring_rule", "A scoring rule was deleted."),
    EventType(
        "nurture_settings.updated",
        "nurture_settings",
        "The workspace's nurture settings, such as the email frequency cap, changed.",
    ),
    EventType(
        "scoring_settings.updated",
        "scoring_settings",
        "The workspace's sales-ready threshold changed.",
    ),
    EventType(
        "lead.assigned",
        "lead",
        "A lead's owner changed. data.assignment names the previous and new owner, "
        "and the rule when a rule chose the owner.",
    ),
    EventType("user.created", "user", "A user was created."),
    EventType(
        "user.updated", "user", "A user's fields changed or they were deactivated."
    ),
    EventType(
        "workspace.updated",
        "workspace",
        "The workspace's name, time zone or default currency changed.",
    ),
    EventType("team.created", "team", "A team was created."),
    EventType("team.updated", "team", "A team was renamed or its members changed."),
    EventType(
        "assignment_rule.created", "assignment_rule", "An assignment rule was created."
    ),
    EventType(
        "assignment_rule.updated", "assignment_rule", "An assignment rule changed."
    ),
    EventType(
        "assignment_rule.deleted", "assignment_rule", "An assignment rule was deleted."
    ),
    EventType(
        "activity.created", "activity", "An activity was logged or a task created."
    ),
    EventType("activity.updated", "activity", "An activity's fields changed."),
    EventType("activity.completed", "activity", "A task was completed."),
    EventType(
        "activity.overdue",
        "activity",
        "A task passed its due date without being completed; sent once per due date.",
    ),
    EventType("sequence.created", "sequence", "A nurture sequence was created."),
    EventType(
        "sequence.updated",
        "sequence",
        "A sequence's name or sender changed, or its new steps became a new version.",
    ),
    EventType(
        "sequence.archived",
        "sequence",
        "A sequence was archived: it takes no new enrollments.",
    ),
    EventType("enrollment.created", "enrollment", "A lead was enrolled in a sequence."),
    EventType(
        "enrollment.step_completed",
        "enrollment",
        "An enrolment ran one step of its sequence.",
    ),
    EventType(
        "enrollment.step_skipped",
        "enrollment",
        "An enrolment skipped a step because the step's condition was false.",
    ),
    EventType("enrollment.completed", "enrollment", "An enrolment ran its last step."),
    EventType(
        "enrollment.exited",
        "enrollment",
        "An enrolment stopped early; exit_reason says why.",
    ),
    EventType(
        "email_event.received",
        "email_event",
        "An email service reported an event; status says whether it was recorded.",
    ),
    EventType(
        "email_event_secret.rotated",
        "email_event_secret",
        "The secret that signs email-service events was created or replaced.",
    ),
    EventType("enrollment.paused", "enrollment", "An enrolment was paused."),
    EventType(
        "enrollment.resumed",
        "enrollment",
        "A paused enrolment was resumed, or a failed one retries its step.",
    ),
    EventType(
        "enrollment.step_failed",
        "enrollment",
        "An attempt at a step failed and is retried; last_error says why and "
        "next_run_at when.",
    ),
    EventType("enrollment.failed", "enrollment", "An enrolment stopped on an error."),
    EventType(
        "enrollment.moved",
        "enrollment",
        "An enrolment moved to the lead its lead was merged into.",
    ),
    EventType(
        "holiday_calendar.created",
        "holiday_calendar",
        "A holiday calendar for nurture send windows was created.",
    ),
    EventType(
        "holiday_calendar.updated",
        "holiday_calendar",
        "A holiday calendar's name, description or dates changed.",
    ),
    EventType(
        "holiday_calendar.deleted",
        "holiday_calendar",
        "A holiday calendar was deleted.",
    ),
    EventType(
        "enrollment_job.created",
        "enrollment_job",
        "A job to enroll every lead that matches a filter was queued.",
    ),
    EventType(
        "enrollment_job.completed",
        "enrollment_job",
        "An enrollment job finished; status is succeeded or failed, with its counts.",
    ),
    EventType("offer.created", "offer", "An offer was created."),
    EventType("offer.updated", "offer", "An offer changed, such as by being archived."),
    EventType(
        "offer_code.issued",
        "offer_code",
        "A special-offer step issued a lead its code of an offer.",
    ),
    EventType(
        "offer_code.redeemed",
        "offer_code",
        "An offer code's discount was added to a draft invoice.",
    ),
    EventType(
        "offer_code.released",
        "offer_code",
        "The invoice that redeemed an offer code was voided, so the code is free.",
    ),
    EventType(
        "enrollment.version_changed",
        "enrollment",
        "An enrolment was moved to another version of its sequence.",
    ),
    EventType("customer.created", "customer", "A customer was created."),
    EventType("customer.updated", "customer", "A customer's fields changed."),
    EventType("contact.created", "contact", "A contact was added to a customer."),
    EventType("contact.updated", "contact", "A contact's fields or roles changed."),
    EventType(
        "contact.deleted", "contact", "A contact was deleted; data is its last state."
    ),
    EventType("opportunity.created", "opportunity", "An opportunity was opened."),
    EventType("opportunity.updated", "opportunity", "An opportunity's fields changed."),
    EventType(
        "opportunity.stage_changed",
        "opportunity",
        "An opportunity moved to another pipeline stage.",
    ),
    EventType("opportunity.won", "opportunity", "An opportunity was won."),
    EventType("opportunity.lost", "opportunity", "An opportunity was lost."),
    EventType(
        "opportunity.reopened",
        "opportunity",
        "A won or lost opportunity was reopened; its stage history records the "
        "actor and the reason.",
    ),
    EventType(
        "opportunity.rotting",
        "opportunity",
        "An open opportunity saw no activity for its stage's rotting days; sent once "
        "per rotting spell.",
    ),
    EventType("pipeline.created", "pipeline", "A pipeline was created."),
    EventType(
        "pipeline.updated",
        "pipeline",
        "A pipeline was renamed, made the default, or one of its stages changed.",
    ),
    EventType(
        "pipeline.stages_reordered", "pipeline", "A pipeline's stages were reordered."
    ),
    EventType("pipeline.archived", "pipeline", "A pipeline was archived."),
    EventType("pipeline.deleted", "pipeline", "A pipeline was deleted."),
    EventType("stage.created", "stage", "A stage was added to a pipeline."),
    EventType("stage.updated", "stage", "A pipeline stage changed."),
    EventType("stage.deleted", "stage", "A pipeline stage was deleted."),
    EventType(
        "objection.created", "objection", "An objection was recorded on an opportunity."
    ),
    EventType("objection.updated", "objection", "An objection changed."),
    EventType("objection.resolved", "objection", "An objection was resolved."),
    EventType("objection.deleted", "objection", "An objection was deleted."),
    EventType("lost_reason.created", "lost_reason", "A lost reason was created."),
    EventType("lost_reason.updated", "lost_reason", "A lost reason changed."),
    EventType("lost_reason.deleted", "lost_reason", "A lost reason was deleted."),
    EventType("product.created", "product", "A product was added to the catalogue."),
    EventType("product.updated", "product", "A product's fields or prices changed."),
    EventType(
        "product.archived",
        "product",
        "A product was archived: it can no longer be added to line items.",
    ),
    EventType("product.restored", "product", "An archived product was made active."),
    EventType(
        "product.deleted",
        "product",
        "A product was deleted; lines that used it keep their copied price.",
    ),
    EventType("proposal.created", "proposal", "A draft proposal was created."),
    EventType("proposal.updated", "proposal", "A draft proposal changed."),
    EventType("proposal.sent", "proposal", "A proposal was sent to the customer."),
    EventType(
        "proposal.accepted",
        "proposal",
        "The customer accepted a proposal; invoice_id names the draft invoice "
        "created for it, if any.",
    ),
    EventType("proposal.rejected", "proposal", "The customer rejected a proposal."),
    EventType(
        "proposal.expired",
        "proposal",
        "A sent proposal's valid_until date passed in its time zone without an "
        "answer; sent once, by a sweep, shortly after the status reads expired.",
    ),
    EventType("tax_rate.created", "tax_rate", "A tax rate was created."),
    EventType(
        "tax_rate.updated",
        "tax_rate",
        "A tax rate was renamed, moved to another jurisdiction, or (de)activated.",
    ),
    EventType("invoice.created", "invoice", "A draft invoice was created."),
    EventType(
        "invoice.updated",
        "invoice",
        "An invoice changed: a draft's lines, discounts, taxes or terms, the "
        "payments, credit notes or customer credit applied to it, or its dunning "
        "policy.",
    ),
    EventType(
        "invoice.finalized",
        "invoice",
        "An invoice was finalized: it has its number and is open for payment.",
    ),
    EventType("invoice.voided", "invoice", "An open invoice was voided."),
    EventType("invoice.paid", "invoice", "An invoice was paid in full."),
    EventType(
        "invoice.overdue",
        "invoice",
        "An open invoice passed its due date in the customer's time zone.",
    ),
    EventType(
        "invoice.marked_uncollectible",
        "invoice",
        "An open invoice was marked uncollectible, by request or after the last "
        "dunning step; a later payment still records and pays it.",
    ),
    EventType(
        "invoice.written_off",
        "invoice",
        "What an invoice still owed was written off with a reason and an approver; "
        "the invoice is uncollectible.",
    ),
    EventType(
        "dunning_policy.created", "dunning_policy", "A dunning policy was created."
    ),
    EventType(
        "dunning_policy.updated",
        "dunning_policy",
        "A dunning policy's steps or settings changed, or it stopped being the "
        "workspace default.",
    ),
    EventType(
        "dunning_policy.deleted", "dunning_policy", "A dunning policy was deleted."
    ),
    EventType(
        "dunning_reminder.sent",
        "dunning_reminder",
        "The mail server accepted a payment reminder for an invoice.",
    ),
    EventType(
        "dunning_reminder.skipped",
        "dunning_reminder",
        "A due reminder step was skipped; skip_reason says why (a pause, a later "
        "step due at the same time, or the invoice no longer open).",
    ),
    EventType(
        "dunning_reminder.failed",
        "dunning_reminder",
        "A payment reminder could not be sent: no address, a permanent mail error, or "
        "too many attempts.",
    ),
    EventType(
        "promise_to_pay.created",
        "promise_to_pay",
        "A customer's promise to pay an invoice was recorded; reminders pause.",
    ),
    EventType(
        "promise_to_pay.kept",
        "promise_to_pay",
        "Payments reached the promised amount by the promised date, or the invoice "
        "was paid.",
    ),
    EventType(
        "promise_to_pay.broken",
        "promise_to_pay",
        "The promised date ended before payments reached the promised amount; "
        "reminders resume.",
    ),
    EventType(
        "promise_to_pay.canceled",
        "promise_to_pay",
        "The invoice was voided or written off while the promise was pending.",
    ),
    EventType(
        "credit_note.created",
        "credit_note",
        "A credit note was issued for an invoice; amount_reduced, amount_credited "
        "and refund_amount say where its total went.",
    ),
    EventType(
        "credit_note.updated",
        "credit_note",
        "A credit note's refund was paid out (refund_status succeeded).",
    ),
    EventType(
        "credit_note.voided",
        "credit_note",
        "A credit note was voided; its credit left the invoice and the customer.",
    ),
    EventType(
        "customer_credit_transaction.created",
        "customer_credit_transaction",
        "A customer's credit balance changed: credit from a credit note, an "
        "adjustment, or credit applied to an invoice.",
    ),
    EventType(
        "invoice.sent",
        "invoice",
        "An invoice was emailed with its PDF; GET /v1/invoices/{id}/sends lists the "
        "recipients and the Message-ID.",
    ),
    EventType(
        "invoice.send_failed",
        "invoice",
        "Emailing an invoice failed for good; its send record holds the error.",
    ),
    EventType(
        "billing_profile.updated",
        "billing_profile",
        "The seller details printed on invoices changed.",
    ),
    EventType("payment.succeeded", "payment", "A payment was received."),
    EventType("payment.refunded", "payment", "A payment was refunded."),
    EventType(
        "payment.pending",
        "payment",
        "A provider reported a payment that is still processing.",
    ),
    EventType("payment.failed", "payment", "A provider reported a failed payment."),
    EventType(
        "payment.updated",
        "payment",
        "A payment's allocations changed, or one of its disputes closed.",
    ),
    EventType(
        "payment.disputed",
        "payment",
        "A dispute on the payment opened; the disputed amount was taken back from "
        "its invoices.",
    ),
    EventType(
        "dispute.created",
        "dispute",
        "A customer disputed a payment through its provider (a chargeback).",
    ),
    EventType(
        "dispute.closed",
        "dispute",
        "A dispute closed won (its amounts went back to the invoices) or lost.",
    ),
    EventType(
        "reconciliation_run.created",
        "reconciliation_run",
        "A reconciliation run was queued.",
    ),
    EventType(
        "reconciliation_run.completed",
        "reconciliation_run",
        "A reconciliation run compared the payments with the provider; differences "
        "lists what differs.",
    ),
    EventType(
        "reconciliation_run.failed",
        "reconciliation_run",
        "A reconciliation run could not reach the provider; error says why.",
    ),
    EventType(
        "webhook_endpoint.created",
        "webhook_endpoint",
        "A webhook endpoint was created.",
    ),
    EventType(
        "webhook_endpoint.updated",
        "webhook_endpoint",
        "A webhook endpoint's settings or signing secret changed.",
    ),
    EventType(
        "webhook_endpoint.deleted",
        "webhook_endpoint",
        "A webhook endpoint was deleted.",
    ),
    EventType(
        "webhook_endpoint.disabled",
        "webhook_endpoint",
        "A webhook endpoint was disabled automatically, because it responded 410 Gone "
        "or every attempt failed for days.",
    ),
)

EVENT_TYPES_BY_NAME: dict[str, EventType] = {
    event_type.name: event_type for event_type in EVENT_TYPES
}
OBJECT_TYPES: tuple[str, ...] = tuple(
    dict.fromkeys(event_type.object_type for event_type in EVENT_TYPES)
)


def object_wildcard(object_type: str) -> str:
    return f"{object_type}.{WILDCARD}"


def is_valid_pattern(pattern: str) -> bool:
    """Tell whether an endpoint may subscribe with ``pattern``: a type or a wildcard."""
    if pattern == WILDCARD or pattern in EVENT_TYPES_BY_NAME:
        return True
    prefix, dot, rest = pattern.rpartition(".")
    return bool(dot) and rest == WILDCARD and prefix in OBJECT_TYPES


def matches(pattern: str, event_type: str) -> bool:
    """Tell whether a subscription ``pattern`` covers ``event_type``."""
    if pattern == WILDCARD:
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def patterns_covering(event_type: str) -> list[str]:
    """List every pattern that covers ``event_type``, for an ``= ANY(...)`` query."""
    patterns = [WILDCARD, event_type]
    parts = event_type.split(".")
    for end in range(1, len(parts)):
        patterns.append(".".join(parts[:end]) + ".*")
    return patterns
