from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import (
    Base,
    IdMixin,
    TimestampMixin,
    VersionMixin,
    WorkspaceMixin,
    money_column,
)


class Invoice(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """A bill to a customer; amounts are integers in the currency's minor unit."""

    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("workspace_id", "number"),
        Index(
            "ix_invoices_open_due",
            "due_date",
            postgresql_where=text("status = 'open'"),
        ),
        # The overdue scan reads open invoices whose overdue_at has passed.
        Index(
            "ix_invoices_open_overdue_at",
            "overdue_at",
            postgresql_where=text("status = 'open'"),
        ),
        Index(
            "ix_invoices_overdue_pending",
            "due_date",
            postgresql_where=text("status = 'open' AND overdue_notified_at IS NULL"),
        ),
    )

    customer_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("customers.id", ondelete="RESTRICT"), index=True
    )
    opportunity_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("opportunities.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(String(16), default="draft")
    payment_status: Mapped[str] = mapped_column(String(16), default="unpaid")
    series: Mapped[str] = mapped_column(String(16), default="INV")
    number: Mapped[str | None] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3))
    rounding: Mapped[str] = mapped_column(String(16), default="half_up")
    # "line": each line's tax is rounded; "document": each tax rate is rounded once on
    # the whole invoice and allocated back to the lines.
    tax_calculation: Mapped[str] = mapped_column(
        String(16), default="line", server_default="line"
    )
    # Invoice-level discounts in the order applied: {"percent_off": "10"} or
    # {"amount_off": 500}, with "source" ("manual" or "offer_code") and the computed
    # "amount" taken off.
    discounts: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    subtotal: Mapped[int] = money_column()
    total_discount: Mapped[int] = money_column()
    total_excluding_tax: Mapped[int] = money_column()
    tax_total: Mapped[int] = money_column()
    total: Mapped[int] = money_column()
    amount_paid: Mapped[int] = money_column()
    # due_on_receipt, net_<days> or due_date (an explicit date).
    payment_terms: Mapped[str] = mapped_column(
        String(16), default="net_30", server_default="net_30"
    )
    # Days from finalization to the due date; null with an explicit due date.
    payment_terms_days: Mapped[int | None]
    due_date: Mapped[date | None]
    # The instant the due date ends in ``timezone``: from then on the invoice is
    # overdue while money is owed.
    overdue_at: Mapped[datetime | None]
    # The customer's IANA time zone at finalization: due_date is a calendar date there,
    # and the invoice turns overdue once that date has passed there.
    timezone: Mapped[str | None] = mapped_column(String(64))
    memo: Mapped[str | None] = mapped_column(Text)
    finalized_at: Mapped[datetime | None]
    paid_at: Mapped[datetime | None]
    voided_at: Mapped[datetime | None]
    # Set once, when the overdue sweep emitted invoice.overdue for the invoice.
    overdue_notified_at: Mapped[datetime | None]
    # The dunning policy of this invoice alone; null follows the customer's, then the
    # workspace default.
    dunning_policy_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("dunning_policies.id", ondelete="SET NULL")
    )
    uncollectible_at: Mapped[datetime | None]
    uncollectible_reason: Mapped[str | None] = mapped_column(String(500))
    # A write-off: the amount still owed when it was written off, why, who asked for
    # it (the request's actor) and which user approved it.
    written_off_at: Mapped[datetime | None]
    written_off_amount: Mapped[int | None] = mapped_column(BigInteger)
    # The amount_paid when the invoice was written off. write_off.amount_recovered
    # counts only payments beyond it, so credit notes and applied credit recover
    # nothing.
    amount_paid_at_write_off: Mapped[int | None] = mapped_column(BigInteger)
    write_off_reason: Mapped[str | None] = mapped_column(String(500))
    write_off_requested_by: Mapped[str | None] = mapped_column(String(200))
    write_off_approved_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT")
    )
    # What credit notes and applied customer credit took off the invoice;
    # app.billing.amounts derives amount_due and amount_remaining from them.
    pre_payment_credit_notes_amount: Mapped[int] = money_column()
    post_payment_credit_notes_amount: Mapped[int] = money_column()
    customer_credit_applied: Mapped[int] = money_column()
    # The customer's Stripe Checkout page for this invoice, and the session behind it.
    payment_link_url: Mapped[str | None] = mapped_column(Text)
    payment_link_session_id: Mapped[str | None] = mapped_column(String(255))
    # The number of changes of amount_paid: every allocation, refund, dispute,
    # removed allocation and restored dispute adds one. The payment link's Stripe
    # idempotency key contains it, so a Checkout Session is not reused after a
    # payment is recorded.
    payment_change_count: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0"
    )


class InvoiceLine(IdMixin, WorkspaceMixin, Base):
    """A line of an invoice: quantity times unit amount, less discounts, plus tax."""

    __tablename__ = "invoice_lines"
    __table_args__ = (
        UniqueConstraint("invoice_id", "position"),
        CheckConstraint(
            "discount_percent IS NULL OR discount_amount_off IS NULL",
            name="one_discount",
        ),
    )

    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE")
    )
    position: Mapped[int]
    description: Mapped[str] = mapped_column(String(500))
    quantity: Mapped[Decimal] = mapped_column(Numeric(20, 6))
    unit_amount: Mapped[Decimal] = mapped_column(Numeric(30, 12))
    # The sum of the line's tax percentages, kept for readers of the single-rate form.
    tax_rate: Mapped[Decimal] = mapped_column(Numeric(7, 4), default=Decimal(0))
    # [{"name", "percentage", "inclusive"}]: the rates the line is taxed at.
    tax_rates: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    discount_percent: Mapped[Decimal | None] = mapped_column(Numeric(7, 4))
    discount_amount_off: Mapped[int | None] = mapped_column(BigInteger)
    product_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("products.id", ondelete="SET NULL")
    )
    line_item_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("opportunity_line_items.id", ondelete="SET NULL")
    )
    amount: Mapped[int] = mapped_column(BigInteger)
    discount_amount: Mapped[int] = money_column()
    taxable_amount: Mapped[int] = money_column()
    tax_amount: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = money_column()
    # [{"name", "rate", "inclusive", "taxable_amount", "amount"}], computed.
    taxes: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")


class TaxRate(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """A reusable tax rate; invoice lines copy it, so a later change never alters them."""

    __tablename__ = "tax_rates"

    name: Mapped[str] = mapped_column(String(100))
    percentage: Mapped[Decimal] = mapped_column(Numeric(7, 4))
    inclusive: Mapped[bool] = mapped_column(default=False)
    jurisdiction: Mapped[str | None] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(default=True)


class InvoiceNumberSeries(WorkspaceMixin, Base):
    """The next free number of a series in a year; locked to number gaplessly."""

    __tablename__ = "invoice_number_series"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    series: Mapped[str] = mapped_column(String(16), primary_key=True)
    year: Mapped[int] = mapped_column(primary_key=True)
    next_number: Mapped[int] = mapped_column(default=1)


class Payment(IdMixin, WorkspaceMixin, TimestampMixin, Base):
    """Money received from a customer, manually or through a payment provider."""

    __tablename__ = "payments"
    __table_args__ = (UniqueConstraint("provider", "provider_payment_id"),)

    customer_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("customers.id", ondelete="RESTRICT"), index=True
    )
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    method: Mapped[str] = mapped_column(String(32))
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_payment_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="succeeded")
    received_at: Mapped[datetime]
    reference: Mapped[str | None] = mapped_column(String(200))
    # Creation time of the newest provider event applied to this payment; an older
    # event that arrives later is not applied, so a payment never moves backwards.
    provider_updated_at: Mapped[datetime | None]
    # Sum of the payment's refunds, and of its open or lost disputes. What remains of
    # amount after both is what allocations may use.
    amount_refunded: Mapped[int] = money_column()
    amount_disputed: Mapped[int] = money_column()


class PaymentAllocation(IdMixin, WorkspaceMixin, Base):
    """The part of a payment applied to one invoice."""

    __tablename__ = "payment_allocations"
    __table_args__ = (UniqueConstraint("payment_id", "invoice_id"),)

    payment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("payments.id", ondelete="CASCADE")
    )
    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE"), index=True
    )
    amount: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]


class Dispute(IdMixin, WorkspaceMixin, TimestampMixin, Base):
    """A customer's challenge of a payment through its provider (a chargeback).

    While a dispute is open, the disputed amount is taken back from the invoices the
    payment was allocated to; it is given back if the dispute closes in the seller's
    favour.
    """

    __tablename__ = "disputes"
    __table_args__ = (
        UniqueConstraint("provider", "provider_dispute_id"),
        Index(
            "ix_disputes_open_payment",
            "payment_id",
            postgresql_where=text("status = 'open'"),
        ),
    )

    payment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("payments.id", ondelete="CASCADE"), index=True
    )
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # open, won (the seller keeps the money) or lost (the money went back).
    status: Mapped[str] = mapped_column(String(16), default="open")
    reason: Mapped[str | None] = mapped_column(String(100))
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_dispute_id: Mapped[str | None] = mapped_column(String(255))
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]


class DunningPolicy(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """A schedule of payment reminders relative to an invoice's due date.

    ``steps`` is a list of ``{"offset_days", "subject", "body", "create_task",
    "task_title"}`` ordered by ``offset_days``. The offset is unique within a policy
    and identifies the step, so one offset is claimed once per invoice even if the
    policy changes.
    """

    __tablename__ = "dunning_policies"
    __table_args__ = (
        Index(
            "uq_dunning_policies_default",
            "workspace_id",
            unique=True,
            postgresql_where=text("is_default"),
        ),
        CheckConstraint("send_hour BETWEEN 0 AND 23", name="send_hour"),
    )

    name: Mapped[str] = mapped_column(String(200))
    is_default: Mapped[bool] = mapped_column(default=False)
    steps: Mapped[list[Any]] = mapped_column(default=list)
    # Reminders go out at this hour of the customer's local day.
    send_hour: Mapped[int] = mapped_column(Integer, default=9)
    # Reminders pause while the customer has an open opportunity in this pipeline.
    renewal_pipeline_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pipelines.id", ondelete="SET NULL")
    )
    # What happens final_action_delay_days after the last step, if anything.
    mark_uncollectible: Mapped[bool] = mapped_column(default=False)
    final_task: Mapped[bool] = mapped_column(default=False)
    final_action_delay_days: Mapped[int] = mapped_column(Integer, default=0)


class DunningReminder(IdMixin, WorkspaceMixin, TimestampMixin, Base):
    """One step of an invoice's dunning schedule, claimed before it takes effect.

    ``step`` is ``"-3"``, ``"0"``, ``"+7"`` for email steps and ``"final"`` for the
    action after the last step. The unique key on ``(invoice_id, step)`` lets each be
    claimed once. ``claimed_until`` is the lease of a ``sending`` row, the retry time
    of a ``retrying`` one, and the next check of a ``waiting`` final step.
    """

    __tablename__ = "dunning_reminders"
    __table_args__ = (
        UniqueConstraint("invoice_id", "step"),
        Index(
            "ix_dunning_reminders_unfinished",
            "claimed_until",
            postgresql_where=text("status IN ('sending', 'retrying')"),
        ),
    )

    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE")
    )
    policy_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("dunning_policies.id", ondelete="SET NULL")
    )
    step: Mapped[str] = mapped_column(String(16))
    offset_days: Mapped[int | None] = mapped_column(Integer)
    # sending, retrying, sent, failed or skipped. The final step is waiting while a
    # pause delays it, then done.
    status: Mapped[str] = mapped_column(String(16))
    # Why a step was skipped: promise_to_pay, dispute, renewal, superseded or
    # invoice_closed.
    skip_reason: Mapped[str | None] = mapped_column(String(32))
    scheduled_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_until: Mapped[datetime | None]
    message_id: Mapped[str | None] = mapped_column(String(300))
    recipient: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(String(1000))
    activity_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("activities.id", ondelete="SET NULL")
    )
    sent_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)


class PromiseToPay(IdMixin, WorkspaceMixin, TimestampMixin, Base):
    """A customer's promise to pay ``amount`` of an invoice by ``promised_date``.

    ``amount_paid_at_promise`` is the invoice's ``amount_paid`` when the promise was
    recorded: the promise is kept once payments have added ``amount`` to it by the end
    of ``promised_date`` in the invoice's time zone, and broken otherwise.
    """

    __tablename__ = "promises_to_pay"
    __table_args__ = (
        Index(
            "uq_promises_to_pay_pending",
            "invoice_id",
            unique=True,
            postgresql_where=text("status = 'pending'"),
        ),
    )

    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE"), index=True
    )
    promised_date: Mapped[date]
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    amount_paid_at_promise: Mapped[int] = mapped_column(BigInteger)
    # pending, kept or broken; canceled when the invoice is voided or written off.
    status: Mapped[str] = mapped_column(String(16), default="pending")
    recorded_by: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[datetime | None]


class ProviderEvent(IdMixin, Base):
    """A verified webhook from a payment provider, stored once per provider event id."""

    __tablename__ = "provider_events"
    __table_args__ = (
        UniqueConstraint("provider", "event_id"),
        Index(
            "ix_provider_events_pending",
            "received_at",
            postgresql_where=text("status = 'received'"),
        ),
        Index(
            "ix_provider_events_held",
            "received_at",
            postgresql_where=text("status = 'held'"),
        ),
        Index(
            "ix_provider_events_failed",
            "received_at",
            postgresql_where=text("status = 'failed'"),
        ),
    )

    provider: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]]
    provider_created_at: Mapped[datetime | None]
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(String(16), default="received")
    attempts: Mapped[int] = mapped_column(default=0)
    claimed_until: Mapped[datetime | None]
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
