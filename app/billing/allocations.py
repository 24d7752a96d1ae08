"""Allocating payments to invoices, and reversing allocations for refunds and disputes.

Every function here expects the caller to hold the payment's row lock, taken before
any invoice lock. So requests on one payment run one after the other and never
allocate or refund more than it has. Invoices are then locked in id order, so two API
requests that touch the same invoices wait for each other instead of deadlocking.

A payment's money splits into ``amount_refunded``, ``amount_disputed``, its
allocations and the unallocated rest, which is customer credit that later invoices
can take by allocation. Applying credit to an invoice spends that credit without
touching the payment, so an allocation also takes no more than the customer's credit
has left.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing import states
from app.billing.amounts import invoice_amounts
from app.billing.balances import credit_balance, lock_customer_credit
from app.billing.errors import InvoiceNotPayable, PaymentMismatch
from app.billing.payment_errors import (
    AllocationExceedsCredit,
    AllocationExceedsInvoice,
    AllocationExceedsUnallocated,
    AllocationNotFound,
    AllocationNotRemovable,
    PaymentNotSucceeded,
    RefundExceedsRefundable,
    RefundExceedsUnallocated,
)
from app.billing.service import invoice_service
from app.core import ids
from app.core.clock import utcnow
from app.core.errors import FieldError, InvalidInput
from app.models import (
    AllocationReversal,
    CreditNote,
    Invoice,
    Payment,
    PaymentAllocation,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class AllocationRequest:
    """An amount of a payment that should be applied to, or taken from, an invoice."""

    invoice_id: uuid.UUID
    amount: int


async def load_allocations(
    session: AsyncSession, payment_id: uuid.UUID
) -> list[PaymentAllocation]:
    """Load a payment's allocations, oldest first."""
    rows = await session.scalars(
        select(PaymentAllocation)
        .where(PaymentAllocation.payment_id == payment_id)
        .order_by(PaymentAllocation.created_at, PaymentAllocation.id)
    )
    return list(rows)


def unallocated(payment: Payment, allocations: Sequence[PaymentAllocation]) -> int:
    """Return the part of a payment that is neither refunded, disputed nor allocated."""
    allocated = sum(allocation.amount for allocation in allocations)
    return (
        payment.amount - payment.amount_refunded - payment.amount_disputed - allocated
    )


def refundable(payment: Payment) -> int:
    """Return what a payment still has to give back by refund or dispute."""
    return payment.amount - payment.amount_refunded - payment.amount_disputed


@dataclass(frozen=True)
class RefundLimits:
    """The amounts a refund requested through the API may take from a locked payment.

    An allocation can be refunded only as far as its invoice has received money that
    credit notes have not given back already (``amount_returnable``), so a refund and
    a credit note never return the same money twice. The refunds that issued credit
    notes owe through this payment (``refund_payment_id``) come off the allocation
    too, so the payment never gives back more than it paid the invoice. ``by_invoice``
    maps each invoice the payment pays to that limit, and ``overpaid`` to the
    invoice's overpaid part, which is customer credit.
    """

    unallocated: int
    by_invoice: dict[uuid.UUID, int]
    overpaid: dict[uuid.UUID, int]

    @property
    def total(self) -> int:
        return self.unallocated + sum(self.by_invoice.values())


async def refund_limits(session: AsyncSession, payment: Payment) -> RefundLimits:
    """Lock the invoices a locked payment pays and compute its refund limits."""
    allocations = await load_allocations(session, payment.id)
    invoices = await lock_invoices(
        session,
        payment.workspace_id,
        [allocation.invoice_id for allocation in allocations],
    )
    through_notes = await credit_note_refunds(session, payment.id)
    by_invoice = {}
    overpaid = {}
    for allocation in allocations:
        invoice = invoices[allocation.invoice_id]
        by_invoice[allocation.invoice_id] = returnable_part(
            allocation, invoice, through_notes
        )
        overpaid[allocation.invoice_id] = invoice_amounts(invoice).amount_overpaid
    return RefundLimits(
        unallocated=unallocated(payment, allocations),
        by_invoice=by_invoice,
        overpaid=overpaid,
    )


def returnable_part(
    allocation: PaymentAllocation, invoice: Invoice, through_notes: dict[uuid.UUID, int]
) -> int:
    """Return how much of ``allocation`` may go back to the payment: at most what its
    invoice received and credit notes have not given back, less the refunds that
    credit notes owe through the payment (``through_notes``, by invoice)."""
    left = allocation.amount - through_notes.get(allocation.invoice_id, 0)
    return max(min(left, invoice_amounts(invoice).amount_returnable), 0)


async def credit_note_refunds(
    session: AsyncSession, payment_id: uuid.UUID
) -> dict[uuid.UUID, int]:
    """Sum per invoice the refunds that issued credit notes owe through a payment.

    A void note's refund is canceled, so only issued notes count, whether their
    refund is pending or paid out.
    """
    rows = await session.execute(
        select(CreditNote.invoice_id, func.sum(CreditNote.refund_amount))
        .where(
            CreditNote.refund_payment_id == payment_id,
            CreditNote.status == "issued",
        )
        .group_by(CreditNote.invoice_id)
    )
    return {invoice_id: int(total) for invoice_id, total in rows.all()}


async def lock_invoices(
    session: AsyncSession, workspace_id: uuid.UUID, invoice_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Invoice]:
    """Lock invoices of one workspace in id order; raise InvoiceNotFound for a missing one."""
    locked = {}
    for invoice_id in sorted(set(invoice_ids)):
        locked[invoice_id] = await invoice_service.get(
            session, workspace_id, invoice_id, for_update=True
        )
    return locked


def check_allocatable(
    invoice: Invoice,
    customer_id: uuid.UUID,
    currency: str,
    *,
    invoice_field: str = "invoice_id",
) -> None:
    """Raise unless a payment of this customer and currency may pay ``invoice``."""
    encoded = ids.encode("invoice", invoice.id)
    if invoice.status not in states.PAYABLE:
        raise InvoiceNotPayable(
            f"Invoice {encoded} is {invoice.status}; payments can be allocated "
            "only to open, uncollectible or paid invoices.",
            current_status=invoice.status,
        )
    if invoice.customer_id != customer_id:
        raise PaymentMismatch(
            f"Invoice {encoded} belongs to customer "
            f"{ids.encode('customer', invoice.customer_id)}, not to "
            f"{ids.encode('customer', customer_id)}. Record the payment for the "
            "invoice's customer.",
            errors=[
                FieldError(invoice_field, "belongs to another customer", "mismatch")
            ],
        )
    if invoice.currency != currency:
        raise PaymentMismatch(
            f"Invoice {encoded} is in {invoice.currency}, the payment in "
            f"{currency}. Record the payment in the invoice's currency.",
            errors=[
                FieldError(
                    "currency",
                    f"must be {invoice.currency}, the invoice's currency",
                    "mismatch",
                )
            ],
        )


def _check_unique(requests: Sequence[AllocationRequest]) -> None:
    seen: set[uuid.UUID] = set()
    for index, request in enumerate(requests):
        if request.invoice_id in seen:
            encoded = ids.encode("invoice", request.invoice_id)
            raise InvalidInput(
                f"Invoice {encoded} appears twice in allocations. Send one entry per "
                "invoice with the sum of its amounts.",
                errors=[
                    FieldError(
                        f"allocations.{index}.invoice_id", "is a duplicate", "duplicate"
                    )
                ],
            )
        seen.add(request.invoice_id)


async def allocate(
    session: AsyncSession,
    payment: Payment,
    requests: Sequence[AllocationRequest],
    *,
    actor: str | None,
) -> list[PaymentAllocation]:
    """Apply parts of a locked payment's unallocated amount to invoices.

    Every request is checked before anything changes: the invoice must be payable,
    of the payment's customer and currency, and owe at least the amount, and the
    amounts together must fit in the unallocated amount and in the customer's credit.
    Returns all allocations.
    """
    _check_unique(requests)
    encoded_payment = ids.encode("payment", payment.id)
    if payment.status != "succeeded":
        raise PaymentNotSucceeded(
            f"Payment {encoded_payment} is {payment.status}; only a succeeded payment "
            "can be allocated.",
            current_status=payment.status,
        )
    allocations = await load_allocations(session, payment.id)
    available = unallocated(payment, allocations)
    requested = sum(request.amount for request in requests)
    if requested > available:
        raise AllocationExceedsUnallocated(
            f"The allocations add up to {requested} {payment.currency} (minor units) "
            f"but payment {encoded_payment} has {available} unallocated. Allocate at "
            "most that much.",
            amount_unallocated=available,
            amount_requested=requested,
        )
    invoices = await lock_invoices(
        session, payment.workspace_id, [request.invoice_id for request in requests]
    )
    for index, request in enumerate(requests):
        invoice = invoices[request.invoice_id]
        check_allocatable(
            invoice,
            payment.customer_id,
            payment.currency,
            invoice_field=f"allocations.{index}.invoice_id",
        )
        remaining = invoice_amounts(invoice).amount_remaining
        if request.amount > remaining:
            raise AllocationExceedsInvoice(
                f"Invoice {ids.encode('invoice', invoice.id)} owes {max(remaining, 0)} "
                f"{invoice.currency} (minor units), less than the {request.amount} "
                "allocated to it. Allocate at most what it owes; the rest stays on "
                "the payment as customer credit.",
                errors=[
                    FieldError(
                        f"allocations.{index}.amount",
                        f"must be at most {max(remaining, 0)}",
                        "exceeds_remaining",
                    )
                ],
                invoice_id=ids.encode("invoice", invoice.id),
                amount_remaining=max(remaining, 0),
            )
    await _check_credit_left(session, payment, requested)

    by_invoice = {allocation.invoice_id: allocation for allocation in allocations}
    for request in requests:
        invoice = invoices[request.invoice_id]
        allocation = await add_to_allocation(
            session, payment, invoice.id, request.amount, existing=by_invoice
        )
        await invoice_service.apply_payment(
            session, invoice, request.amount, actor=actor
        )
        log.info(
            "payment.allocated",
            payment_id=str(payment.id),
            invoice_id=str(invoice.id),
            amount=request.amount,
            allocation_amount=allocation.amount,
        )
    return await load_allocations(session, payment.id)


async def _check_credit_left(
    session: AsyncSession, payment: Payment, requested: int
) -> None:
    """Raise unless the customer's credit covers ``requested``.

    The unallocated amount counts in the credit, so allocating it lowers the credit by
    as much (no allocation exceeds what its invoice owes). Credit applied to invoices
    may have spent it already. The customer lock comes after the invoice locks, as in
    every change of credit.
    """
    await lock_customer_credit(session, payment.workspace_id, payment.customer_id)
    balance = await credit_balance(
        session, payment.workspace_id, payment.customer_id, payment.currency
    )
    if requested <= balance:
        return
    available = max(balance, 0)
    raise AllocationExceedsCredit(
        f"The allocations add up to {requested} {payment.currency} (minor units), but "
        f"the customer's credit, which includes the unallocated amount of payment "
        f"{ids.encode('payment', payment.id)}, has only {available} left: the rest was "
        f"applied to invoices or adjusted away. Allocate at most {available}.",
        errors=[
            FieldError(
                "allocations", f"must add up to at most {available}", "too_large"
            )
        ],
        credit_available=available,
        amount_requested=requested,
    )


async def add_to_allocation(
    session: AsyncSession,
    payment: Payment,
    invoice_id: uuid.UUID,
    amount: int,
    *,
    existing: dict[uuid.UUID, PaymentAllocation],
) -> PaymentAllocation:
    """Grow the payment's allocation to an invoice, creating it when there is none.

    The unique key on ``(payment_id, invoice_id)`` keeps one allocation per invoice,
    so a second allocation to the same invoice adds to the first.
    """
    allocation = existing.get(invoice_id)
    if allocation is None:
        allocation = PaymentAllocation(
            id=ids.new_uuid(),
            workspace_id=payment.workspace_id,
            payment_id=payment.id,
            invoice_id=invoice_id,
            amount=amount,
            created_at=utcnow(),
        )
        session.add(allocation)
        existing[invoice_id] = allocation
    else:
        allocation.amount += amount
    await session.flush()
    return allocation


async def remove_allocation(
    session: AsyncSession,
    payment: Payment,
    invoice_id: uuid.UUID,
    *,
    actor: str | None,
) -> PaymentAllocation:
    """Delete a locked payment's allocation to an invoice and take it off the invoice.

    The removed amount becomes customer credit, so it may be at most what the
    invoice received and its credit notes have not given back (``amount_returnable``),
    less the refunds that credit notes owe through this payment.
    """
    allocations = await load_allocations(session, payment.id)
    allocation = next(
        (item for item in allocations if item.invoice_id == invoice_id), None
    )
    if allocation is None:
        raise AllocationNotFound(
            f"Payment {ids.encode('payment', payment.id)} has no allocation to invoice "
            f"{ids.encode('invoice', invoice_id)}."
        )
    invoice = (await lock_invoices(session, payment.workspace_id, [invoice_id]))[
        invoice_id
    ]
    through_notes = await credit_note_refunds(session, payment.id)
    returnable = returnable_part(allocation, invoice, through_notes)
    if allocation.amount > returnable:
        raise AllocationNotRemovable(
            f"Invoice {ids.encode('invoice', invoice_id)} has {allocation.amount} "
            f"{payment.currency} (minor units) of payment "
            f"{ids.encode('payment', payment.id)}, but its credit notes already gave "
            f"part of what it received back, so only {returnable} can return to the "
            "customer. Void those credit notes first, or refund at most that.",
            amount_allocated=allocation.amount,
            amount_returnable=returnable,
        )

    await session.delete(allocation)
    await session.flush()
    await invoice_service.remove_payment(
        session, invoice, allocation.amount, actor=actor
    )
    log.info(
        "payment.allocation_removed",
        payment_id=str(payment.id),
        invoice_id=str(invoice_id),
        amount=allocation.amount,
    )
    return allocation


async def reverse_allocations(
    session: AsyncSession,
    payment: Payment,
    amount: int,
    *,
    requested: Sequence[AllocationRequest] | None,
    refund_id: uuid.UUID | None = None,
    dispute_id: uuid.UUID | None = None,
    limits: RefundLimits | None = None,
    actor: str | None,
) -> list[AllocationReversal]:
    """Take ``amount`` out of a locked payment for a refund or a dispute.

    With ``requested``, the named invoices lose the named amounts and the rest comes
    from the unallocated amount. Without it, the unallocated amount goes first and
    then the newest allocations (by when each was first made), so the invoices paid
    last lose their payment first. With ``limits``, no invoice loses more than its
    limit. Call it before raising ``amount_refunded`` or ``amount_disputed``;
    ``amount`` must not exceed ``refundable(payment)``, nor ``limits.total``.
    """
    allocations = await load_allocations(session, payment.id)
    free = unallocated(payment, allocations)
    plan: list[tuple[PaymentAllocation, int]] = []
    if requested is not None:
        plan = _requested_plan(payment, allocations, requested, amount, free, limits)
    else:
        rest = amount - min(free, amount)
        for allocation in reversed(allocations):
            if rest == 0:
                break
            take = min(allocation.amount, rest)
            if limits is not None:
                take = min(take, limits.by_invoice.get(allocation.invoice_id, 0))
            if take == 0:
                continue
            plan.append((allocation, take))
            rest -= take
    invoices = await lock_invoices(
        session, payment.workspace_id, [allocation.invoice_id for allocation, _ in plan]
    )

    now = utcnow()
    reversals = []
    for allocation, take in plan:
        allocation.amount -= take
        if allocation.amount == 0:
            await session.delete(allocation)
        reversal = AllocationReversal(
            id=ids.new_uuid(),
            workspace_id=payment.workspace_id,
            payment_id=payment.id,
            invoice_id=allocation.invoice_id,
            refund_id=refund_id,
            dispute_id=dispute_id,
            amount=take,
            created_at=now,
        )
        session.add(reversal)
        await session.flush()
        await invoice_service.remove_payment(
            session, invoices[allocation.invoice_id], take, actor=actor
        )
        reversals.append(reversal)
    return reversals


def _requested_plan(
    payment: Payment,
    allocations: Sequence[PaymentAllocation],
    requested: Sequence[AllocationRequest],
    amount: int,
    free: int,
    limits: RefundLimits | None,
) -> list[tuple[PaymentAllocation, int]]:
    _check_unique(requested)
    by_invoice = {allocation.invoice_id: allocation for allocation in allocations}
    plan = []
    for index, request in enumerate(requested):
        allocation = by_invoice.get(request.invoice_id)
        encoded = ids.encode("invoice", request.invoice_id)
        if allocation is None:
            raise InvalidInput(
                f"Payment {ids.encode('payment', payment.id)} has no allocation to "
                f"invoice {encoded}. Name only invoices the payment paid.",
                errors=[
                    FieldError(
                        f"allocations.{index}.invoice_id",
                        "is not allocated from this payment",
                        "not_allocated",
                    )
                ],
            )
        if request.amount > allocation.amount:
            raise InvalidInput(
                f"Invoice {encoded} has {allocation.amount} of this payment, less "
                f"than the {request.amount} to take back.",
                errors=[
                    FieldError(
                        f"allocations.{index}.amount",
                        f"must be at most {allocation.amount}",
                        "exceeds_allocation",
                    )
                ],
            )
        limit = (
            limits.by_invoice.get(request.invoice_id, 0)
            if limits is not None
            else allocation.amount
        )
        if request.amount > limit:
            raise RefundExceedsRefundable(
                f"Invoice {encoded} has {allocation.amount} of this payment, but its "
                f"credit notes already gave back part of what it received, so a "
                f"refund can take at most {limit} from it. Take at most {limit}, or "
                "void those credit notes first.",
                errors=[
                    FieldError(
                        f"allocations.{index}.amount",
                        f"must be at most {limit}",
                        "exceeds_refundable",
                    )
                ],
                invoice_id=encoded,
                amount_refundable=limit,
            )
        plan.append((allocation, request.amount))
    named = sum(take for _, take in plan)
    if named > amount:
        raise InvalidInput(
            f"The allocations add up to {named}, more than the amount {amount}.",
            errors=[
                FieldError(
                    "allocations", f"must add up to at most {amount}", "too_much"
                )
            ],
        )
    if amount - named > free:
        raise RefundExceedsUnallocated(
            f"The allocations cover {named} of {amount}; the other {amount - named} "
            f"would come from the unallocated amount, which is {free}. Name more "
            "allocations, or omit them to take the newest first.",
            amount_unallocated=free,
        )
    return plan


async def restore_reversals(
    session: AsyncSession, payment: Payment, dispute_id: uuid.UUID, *, actor: str | None
) -> list[AllocationReversal]:
    """Give a won dispute's reversed amounts back to their invoices.

    An invoice that can no longer take a payment (voided meanwhile) is skipped, so
    its amount stays unallocated on the payment as customer credit.
    """
    reversals = list(
        await session.scalars(
            select(AllocationReversal)
            .where(
                AllocationReversal.dispute_id == dispute_id,
                AllocationReversal.restored_at.is_(None),
            )
            .order_by(AllocationReversal.invoice_id)
        )
    )
    invoices = await lock_invoices(
        session, payment.workspace_id, [reversal.invoice_id for reversal in reversals]
    )
    existing = {
        allocation.invoice_id: allocation
        for allocation in await load_allocations(session, payment.id)
    }

    now = utcnow()
    restored = []
    for reversal in reversals:
        invoice = invoices[reversal.invoice_id]
        if invoice.status not in states.PAYABLE:
            log.warning(
                "payment.reversal_not_restored",
                payment_id=str(payment.id),
                invoice_id=str(invoice.id),
                invoice_status=invoice.status,
                amount=reversal.amount,
            )
            continue
        await add_to_allocation(
            session, payment, invoice.id, reversal.amount, existing=existing
        )
        reversal.restored_at = now
        await invoice_service.apply_payment(
            session, invoice, reversal.amount, actor=actor
        )
        restored.append(reversal)
    return restored


async def reversals_of(
    session: AsyncSession,
    *,
    refund_ids: Sequence[uuid.UUID] = (),
    dispute_ids: Sequence[uuid.UUID] = (),
) -> list[AllocationReversal]:
    """Load the reversals of some refunds or disputes, in creation order."""
    if not refund_ids and not dispute_ids:
        return []
    statement = select(AllocationReversal).order_by(
        AllocationReversal.created_at, AllocationReversal.id
    )
    if refund_ids:
        statement = statement.where(AllocationReversal.refund_id.in_(refund_ids))
    else:
        statement = statement.where(AllocationReversal.dispute_id.in_(dispute_ids))
    return list(await session.scalars(statement))
