"""The customer credit ledger: adjustments, credit applied to invoices, balances.

Each change of a customer's credit is one signed row of ``customer_credit_transactions``
with its source and references, and emits ``customer_credit_transaction.created``.
A row that lowers the balance is written only under ``lock_customer_credit`` and after
checking the balance, so concurrent requests never overdraw it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.amounts import invoice_amounts
from app.billing.balances import (
    balances_by_currency,
    credit_balance,
    lock_customer_credit,
)
from app.billing.credit_errors import (
    CreditCurrencyMismatch,
    CreditExceedsInvoice,
    InsufficientCredit,
    InvoiceNotOpenForCredit,
)
from app.billing.credit_schemas import (
    ApplyCredit,
    CreditAdjustmentCreate,
    CreditBalance,
)
from app.billing.credit_schemas import (
    CustomerCreditTransaction as TransactionSchema,
)
from app.billing.repository import InvoiceRepository
from app.billing.service import InvoiceWithLines, invoice_service
from app.core import ids
from app.core.auth import Principal
from app.core.clock import utcnow
from app.core.errors import FieldError, InvalidInput
from app.core.events import emit
from app.core.pagination import paginate
from app.customers.service import customer_service
from app.models import CustomerCreditTransaction

log = structlog.get_logger(__name__)


def transaction_view(row: CustomerCreditTransaction) -> TransactionSchema:
    return TransactionSchema.model_validate(row)


def transaction_data(row: CustomerCreditTransaction) -> dict[str, Any]:
    """Serialize a ledger row as the API shows it, for events."""
    return transaction_view(row).model_dump(mode="json")


class CustomerCreditService:
    async def record(
        self,
        session: AsyncSession,
        *,
        workspace_id: uuid.UUID,
        customer_id: uuid.UUID,
        currency: str,
        amount: int,
        source: str,
        actor: str | None,
        credit_note_id: uuid.UUID | None = None,
        invoice_id: uuid.UUID | None = None,
        payment_id: uuid.UUID | None = None,
        description: str | None = None,
    ) -> CustomerCreditTransaction:
        """Write one ledger row and emit it; a negative one must fit the balance.

        For a negative ``amount`` this takes the customer's credit lock and raises
        ``InsufficientCredit`` (409) when the balance in ``currency`` is smaller. Other
        billing code (refunds of credit, overpayments moved into the ledger) gets the
        same guarantee as the API by calling this.
        """
        if amount == 0:
            raise ValueError("a credit transaction needs a nonzero amount")
        if amount < 0:
            await lock_customer_credit(session, workspace_id, customer_id)
            balance = await credit_balance(session, workspace_id, customer_id, currency)
            if balance < -amount:
                raise _insufficient(customer_id, currency, balance, -amount)

        row = CustomerCreditTransaction(
            id=ids.new_uuid(),
            workspace_id=workspace_id,
            customer_id=customer_id,
            currency=currency,
            amount=amount,
            source=source,
            credit_note_id=credit_note_id,
            invoice_id=invoice_id,
            payment_id=payment_id,
            description=description,
            actor=actor,
            created_at=utcnow(),
        )
        session.add(row)
        await session.flush()

        await emit(
            session,
            workspace_id=workspace_id,
            type="customer_credit_transaction.created",
            object_type="customer_credit_transaction",
            object_id=row.id,
            data=transaction_data(row),
            actor=actor,
        )
        log.info(
            "customer_credit.recorded",
            transaction_id=str(row.id),
            customer_id=str(customer_id),
            currency=currency,
            amount=amount,
            source=source,
        )
        return row

    async def adjust(
        self,
        session: AsyncSession,
        principal: Principal,
        customer_id: uuid.UUID,
        payload: CreditAdjustmentCreate,
    ) -> CustomerCreditTransaction:
        """Add or remove credit by hand, with the reason in its description."""
        customer = await customer_service.get(
            session, principal.workspace_id, customer_id
        )
        if payload.amount == 0:
            raise InvalidInput(
                "amount is 0, which changes nothing. Send a positive amount to add "
                "credit or a negative one to remove it.",
                errors=[FieldError("amount", "must not be zero", "zero")],
            )
        return await self.record(
            session,
            workspace_id=principal.workspace_id,
            customer_id=customer.id,
            currency=payload.currency or customer.currency,
            amount=payload.amount,
            source="adjustment",
            actor=principal.actor,
            description=payload.description,
        )

    async def apply_to_invoice(
        self,
        session: AsyncSession,
        principal: Principal,
        invoice_id: uuid.UUID,
        payload: ApplyCredit,
    ) -> InvoiceWithLines:
        """Pay part or all of an open invoice from its customer's credit."""
        invoice = await invoice_service.get(
            session, principal.workspace_id, invoice_id, for_update=True
        )
        encoded = ids.encode("invoice", invoice.id)
        if payload.currency is not None and payload.currency != invoice.currency:
            raise CreditCurrencyMismatch(
                f"Invoice {encoded} is in {invoice.currency}, not "
                f"{payload.currency}. Credit applies only in the invoice's currency.",
                errors=[
                    FieldError(
                        "currency",
                        f"must be {invoice.currency}, the invoice's currency",
                        "mismatch",
                    )
                ],
            )
        if invoice.status not in ("open", "uncollectible"):
            raise InvoiceNotOpenForCredit(
                f"Invoice {encoded} is {invoice.status}; credit applies only to an "
                "open or uncollectible invoice.",
                current_status=invoice.status,
            )
        remaining = invoice_amounts(invoice).amount_remaining
        if remaining == 0:
            raise InvoiceNotOpenForCredit(
                f"Invoice {encoded} has nothing remaining to pay.",
                current_status=invoice.status,
                amount_remaining=0,
            )

        await lock_customer_credit(session, invoice.workspace_id, invoice.customer_id)
        balance = await credit_balance(
            session, invoice.workspace_id, invoice.customer_id, invoice.currency
        )
        if balance <= 0 and payload.amount is None:
            customer = ids.encode("customer", invoice.customer_id)
            raise InsufficientCredit(
                f"Customer {customer} has no {invoice.currency} credit to apply. Add "
                "credit first.",
                currency=invoice.currency,
                available=0,
            )
        if balance <= 0:
            raise _insufficient(
                invoice.customer_id, invoice.currency, balance, payload.amount or 1
            )
        amount = payload.amount or min(balance, remaining)
        if amount > remaining:
            raise CreditExceedsInvoice(
                f"Invoice {encoded} has {remaining} {invoice.currency} (minor units) "
                f"remaining, less than the {amount} sent. Apply at most {remaining}.",
                amount_remaining=remaining,
            )
        if amount > balance:
            raise _insufficient(invoice.customer_id, invoice.currency, balance, amount)

        await self.record(
            session,
            workspace_id=invoice.workspace_id,
            customer_id=invoice.customer_id,
            currency=invoice.currency,
            amount=-amount,
            source="applied_to_invoice",
            actor=principal.actor,
            invoice_id=invoice.id,
            description=f"Applied to invoice {invoice.number}",
        )
        invoice.customer_credit_applied += amount
        await invoice_service.record_amounts(session, invoice, actor=principal.actor)
        lines = await InvoiceRepository.from_session(session).lines(invoice.id)
        log.info(
            "customer_credit.applied",
            invoice_id=str(invoice.id),
            customer_id=str(invoice.customer_id),
            amount=amount,
        )
        return invoice, lines

    async def balances(
        self, session: AsyncSession, workspace_id: uuid.UUID, customer_id: uuid.UUID
    ) -> list[CreditBalance]:
        """List the customer's credit per currency, its own currency first."""
        customer = await customer_service.get(session, workspace_id, customer_id)
        amounts = await balances_by_currency(session, workspace_id, [customer.id])
        by_currency = {currency: amount for (_, currency), amount in amounts.items()}
        by_currency.setdefault(customer.currency, 0)
        ordered = sorted(
            by_currency, key=lambda code: (code != customer.currency, code)
        )
        return [
            CreditBalance(currency=code, amount=by_currency[code]) for code in ordered
        ]

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        customer_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        currency: str | None = None,
        source: str | None = None,
    ) -> tuple[Sequence[CustomerCreditTransaction], str | None, bool]:
        customer = await customer_service.get(session, workspace_id, customer_id)
        statement: Select[CustomerCreditTransaction] = select(
            CustomerCreditTransaction
        ).where(
            CustomerCreditTransaction.workspace_id == workspace_id,
            CustomerCreditTransaction.customer_id == customer.id,
        )
        if currency is not None:
            statement = statement.where(CustomerCreditTransaction.currency == currency)
        if source is not None:
            statement = statement.where(CustomerCreditTransaction.source == source)
        return await paginate(
            session,
            statement,
            CustomerCreditTransaction.id,
            limit=limit,
            cursor=cursor,
        )


def _insufficient(
    customer_id: uuid.UUID, currency: str, balance: int, requested: int
) -> InsufficientCredit:
    return InsufficientCredit(
        f"Customer {ids.encode('customer', customer_id)} has {balance} {currency} "
        f"(minor units) of credit, less than the {requested} needed. Use at most "
        f"{max(balance, 0)}, or add credit first.",
        currency=currency,
        available=max(balance, 0),
    )


customer_credit_service = CustomerCreditService()
