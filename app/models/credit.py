"""Credit notes and the customer credit ledger.

A credit note lowers the amount of an invoice after it was finalized. Its total goes
to one or more of three places: it reduces the invoice's amount due, it becomes
customer credit (a row of the ledger), or it is owed back to the customer as a refund.
The ledger's signed rows sum to the credit a customer holds in one currency.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
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

CREDIT_NOTE_REASONS = (
    "duplicate",
    "fraudulent",
    "order_change",
    "product_unsatisfactory",
    "other",
)
CREDIT_SOURCES = (
    "credit_note",
    "overpayment",
    "applied_to_invoice",
    "refunded",
    "adjustment",
)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    listed = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({listed})"


class CreditNote(IdMixin, WorkspaceMixin, TimestampMixin, VersionMixin, Base):
    """A document that credits part or all of a finalized invoice."""

    __tablename__ = "credit_notes"
    __table_args__ = (
        UniqueConstraint("workspace_id", "number"),
        CheckConstraint(_one_of("status", ("issued", "void")), name="status"),
        CheckConstraint(_one_of("reason", CREDIT_NOTE_REASONS), name="reason"),
        CheckConstraint(
            "amount_reduced >= 0 AND amount_credited >= 0 AND refund_amount >= 0 "
            "AND amount_reduced + amount_credited + refund_amount = total",
            name="distribution",
        ),
        CheckConstraint("subtotal + tax_total = total AND total > 0", name="total"),
    )

    invoice_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("invoices.id", ondelete="RESTRICT"), index=True
    )
    customer_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("customers.id", ondelete="RESTRICT"), index=True
    )
    series: Mapped[str] = mapped_column(String(16), default="CN")
    number: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16), default="issued")
    reason: Mapped[str] = mapped_column(String(32))
    memo: Mapped[str | None] = mapped_column(Text)
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[int] = money_column()
    tax_total: Mapped[int] = money_column()
    total: Mapped[int] = money_column()
    # Where the total went; the three parts always sum to the total.
    amount_reduced: Mapped[int] = money_column()
    amount_credited: Mapped[int] = money_column()
    refund_amount: Mapped[int] = money_column()
    # pending until the refund is paid out (succeeded); canceled when the note is
    # voided first. Null when nothing is to be refunded.
    refund_status: Mapped[str | None] = mapped_column(String(16))
    refund_payment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("payments.id", ondelete="RESTRICT"), index=True
    )
    void_reason: Mapped[str | None] = mapped_column(Text)
    voided_at: Mapped[datetime | None]


class CreditNoteLine(IdMixin, WorkspaceMixin, Base):
    """A credited part of an invoice line, or of the invoice's amount at one tax rate."""

    __tablename__ = "credit_note_lines"
    __table_args__ = (UniqueConstraint("credit_note_id", "position"),)

    credit_note_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("credit_notes.id", ondelete="CASCADE")
    )
    # Null for a lump credit, which credits the invoice as a whole at tax_rate.
    invoice_line_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("invoice_lines.id", ondelete="RESTRICT"), index=True
    )
    position: Mapped[int]
    description: Mapped[str] = mapped_column(String(500))
    quantity: Mapped[Decimal | None] = mapped_column(Numeric(20, 6))
    tax_rate: Mapped[Decimal] = mapped_column(Numeric(7, 4))
    amount: Mapped[int] = mapped_column(BigInteger)
    tax_amount: Mapped[int] = mapped_column(BigInteger)


class CreditNoteNumberSeries(WorkspaceMixin, Base):
    """The next free credit note number of a series in a year."""

    __tablename__ = "credit_note_number_series"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    series: Mapped[str] = mapped_column(String(16), primary_key=True)
    year: Mapped[int] = mapped_column(primary_key=True)
    next_number: Mapped[int] = mapped_column(default=1)


class CustomerCreditTransaction(IdMixin, WorkspaceMixin, Base):
    """One signed change of a customer's credit in one currency."""

    __tablename__ = "customer_credit_transactions"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_nonzero"),
        CheckConstraint(_one_of("source", CREDIT_SOURCES), name="source"),
        Index(
            "ix_customer_credit_transactions_customer_currency",
            "customer_id",
            "currency",
        ),
    )

    customer_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("customers.id", ondelete="RESTRICT")
    )
    currency: Mapped[str] = mapped_column(String(3))
    # Positive adds credit, negative uses or removes it; minor units.
    amount: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(32))
    credit_note_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("credit_notes.id", ondelete="RESTRICT"), index=True
    )
    invoice_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("invoices.id", ondelete="RESTRICT"), index=True
    )
    payment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("payments.id", ondelete="RESTRICT"), index=True
    )
    description: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
