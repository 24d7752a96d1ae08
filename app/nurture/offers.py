"""Offers: discounts that special-offer steps issue as one code per lead.

A code is issued in the claim phase of the step run that emails it (see
``issue_for_step``), so a retry of that run finds and reuses the same code. The lead's
customer redeems it on a draft invoice (``OfferService.redeem``): the offer row is
locked first, so redemptions of one offer run one at a time and a single-use code
or ``max_redemptions`` cannot be exceeded by two concurrent requests.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.errors import InvoiceNotEditable
from app.billing.service import InvoiceWithLines, invoice_service
from app.billing.views import invoice_data
from app.core import ids
from app.core.auth import Principal
from app.core.clock import isoformat, utcnow
from app.core.concurrency import check_if_match
from app.core.errors import FieldError
from app.core.events import emit
from app.customers.service import customer_service
from app.leads.service import lead_service
from app.models import (
    Invoice,
    InvoiceLine,
    Offer,
    OfferCode,
    OfferRedemption,
)
from app.nurture.offer_errors import (
    InvoiceHasOffer,
    InvoiceNothingToDiscount,
    OfferAlreadyRedeemed,
    OfferCodeNotFound,
    OfferCurrencyMismatch,
    OfferExpired,
    OfferNotActive,
    OfferNotForCustomer,
    OfferNotFound,
    OfferRedemptionLimit,
)
from app.nurture.offer_invoices import (
    applied_redemption,
    apply_discount,
    is_discount_line,
)
from app.nurture.offer_repository import OfferRepository
from app.nurture.offer_schemas import Offer as OfferSchema
from app.nurture.offer_schemas import OfferCode as OfferCodeSchema
from app.nurture.offer_schemas import (
    OfferCreate,
    OfferRedeem,
    OfferStats,
    RevenueByCurrency,
)
from app.nurture.offer_views import (
    code_data,
    code_view,
    offer_data,
    offer_view,
)

log = structlog.get_logger(__name__)


class OfferService:
    async def create(
        self, session: AsyncSession, principal: Principal, payload: OfferCreate
    ) -> Offer:
        offer = Offer(
            id=ids.new_uuid(),
            workspace_id=principal.workspace_id,
            status="active",
            **payload.model_dump(),
        )
        session.add(offer)
        await session.flush()
        await session.refresh(offer)

        await emit(
            session,
            workspace_id=offer.workspace_id,
            type="offer.created",
            object_type="offer",
            object_id=offer.id,
            data=offer_data(offer),
            actor=principal.actor,
        )
        log.info("offer.created", offer_id=str(offer.id), kind=offer.discount_kind)
        return offer

    async def get_row(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        offer_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Offer:
        offer = await OfferRepository.from_session(session).get(
            workspace_id, offer_id, for_update=for_update
        )
        if offer is None:
            raise OfferNotFound(
                f"No offer with id {ids.encode('offer', offer_id)} exists in this "
                "workspace."
            )
        return offer

    async def get(
        self, session: AsyncSession, workspace_id: uuid.UUID, offer_id: uuid.UUID
    ) -> tuple[Offer, OfferSchema]:
        """Load an offer with its code counts and the revenue it is traced to."""
        offer = await self.get_row(session, workspace_id, offer_id)
        repository = OfferRepository.from_session(session)
        issued, redeemed = await repository.code_counts(offer.id)
        stats = OfferStats(
            codes_issued=issued,
            codes_redeemed=redeemed,
            redemptions=await repository.applied_count(offer.id),
            revenue=[
                RevenueByCurrency(
                    currency=currency, amount_paid=paid, invoice_count=count
                )
                for currency, paid, count in await repository.revenue(offer.id)
            ],
        )
        return offer, offer_view(offer, stats)

    async def list(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        status: str | None,
    ) -> tuple[list[OfferSchema], str | None, bool]:
        rows, next_cursor, has_more = await OfferRepository.from_session(session).list(
            workspace_id, limit=limit, cursor=cursor, status=status
        )
        return [offer_view(row) for row in rows], next_cursor, has_more

    async def codes(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        offer_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
    ) -> tuple[builtins.list[OfferCodeSchema], str | None, bool]:
        offer = await self.get_row(session, workspace_id, offer_id)
        rows, next_cursor, has_more = await OfferRepository.from_session(session).codes(
            offer.id, limit=limit, cursor=cursor
        )
        now = utcnow()
        return [code_view(row, now) for row in rows], next_cursor, has_more

    async def archive(
        self,
        session: AsyncSession,
        principal: Principal,
        offer_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> Offer:
        """Archive an offer: no step issues it again and its unredeemed codes are void.

        Codes already redeemed keep their redemptions.
        """
        offer = await self.get_row(
            session, principal.workspace_id, offer_id, for_update=True
        )
        check_if_match(if_match, offer.version)
        if offer.status != "active":
            raise OfferNotActive(
                f"Offer {ids.encode('offer', offer.id)} is already archived.",
                current_status=offer.status,
            )

        offer.status = "archived"
        offer.archived_at = utcnow()
        voided = await OfferRepository.from_session(session).void_issued_codes(offer.id)
        await session.flush()
        await session.refresh(offer)

        await emit(
            session,
            workspace_id=offer.workspace_id,
            type="offer.updated",
            object_type="offer",
            object_id=offer.id,
            data=offer_data(offer),
            actor=principal.actor,
        )
        log.info("offer.archived", offer_id=str(offer.id), codes_voided=voided)
        return offer

    async def redeem(
        self,
        session: AsyncSession,
        principal: Principal,
        invoice_id: uuid.UUID,
        payload: OfferRedeem,
        *,
        if_match: str | None,
    ) -> InvoiceWithLines:
        """Apply an offer code to a draft invoice of the lead's customer.

        Locks the invoice, then the offer, then the code, so two invoices redeeming
        one code, or one offer past its max_redemptions, queue behind each other and
        the later one finds the first redemption.
        """
        workspace_id = principal.workspace_id
        invoice = await invoice_service.get(
            session, workspace_id, invoice_id, for_update=True
        )
        check_if_match(if_match, invoice.version)
        if invoice.status != "draft":
            raise InvoiceNotEditable(
                f"Invoice {ids.encode('invoice', invoice.id)} is {invoice.status}; an "
                "offer code can only be redeemed on a draft invoice.",
                current_status=invoice.status,
            )
        repository = OfferRepository.from_session(session)
        text = payload.code.strip().upper()
        found = await repository.find_code(workspace_id, text)
        if found is None:
            raise OfferCodeNotFound(
                f"No offer code {text!r} exists in this workspace. Check the code "
                "in the email the lead received.",
                errors=[
                    FieldError("code", "no such offer code", "offer_code_not_found")
                ],
            )
        code_id, offer_id = found
        offer = await self.get_row(session, workspace_id, offer_id, for_update=True)
        code = await repository.lock_code(code_id)
        now = utcnow()

        _, lines = await invoice_service.get_with_lines(
            session, workspace_id, invoice.id
        )
        await self._check_redeemable(session, invoice, lines, offer, code, now)

        lines, discount = await apply_discount(
            session, invoice, lines, offer, code.code
        )
        session.add(
            OfferRedemption(
                id=ids.new_uuid(),
                workspace_id=workspace_id,
                offer_id=offer.id,
                offer_code_id=code.id,
                invoice_id=invoice.id,
                status="applied",
                discount_amount=discount,
                currency=invoice.currency,
                redeemed_at=now,
            )
        )
        code.status = "redeemed"
        code.redeemed_at = now
        code.invoice_id = invoice.id
        code.discount_amount = discount
        code.currency = invoice.currency
        # Touch the invoice so its version moves: its lines and totals changed.
        invoice.updated_at = now
        await session.flush()
        await session.refresh(invoice)

        await emit(
            session,
            workspace_id=workspace_id,
            type="offer_code.redeemed",
            object_type="offer_code",
            object_id=code.id,
            data=code_data(code),
            actor=principal.actor,
        )
        await emit(
            session,
            workspace_id=workspace_id,
            type="invoice.updated",
            object_type="invoice",
            object_id=invoice.id,
            data=invoice_data(invoice, lines),
            actor=principal.actor,
        )
        log.info(
            "offer_code.redeemed",
            offer_code_id=str(code.id),
            invoice_id=str(invoice.id),
            discount_amount=discount,
        )
        return invoice, lines

    async def _check_redeemable(
        self,
        session: AsyncSession,
        invoice: Invoice,
        lines: Sequence[InvoiceLine],
        offer: Offer,
        code: OfferCode,
        now: datetime,
    ) -> None:
        encoded_invoice = ids.encode("invoice", invoice.id)

        if offer.status != "active" or code.status == "void":
            raise OfferNotActive(
                f"Offer code {code.code} is void because its offer "
                f"{ids.encode('offer', offer.id)} was archived.",
                current_status="void",
            )

        if code.status == "redeemed" and offer.single_use:
            redeemed_on = (
                ids.encode("invoice", code.invoice_id) if code.invoice_id else None
            )
            raise OfferAlreadyRedeemed(
                f"Offer code {code.code} was already redeemed on invoice "
                f"{redeemed_on}, and the offer is single use.",
                invoice_id=redeemed_on,
            )

        if code.expires_at is not None and code.expires_at <= now:
            raise OfferExpired(
                f"Offer code {code.code} expired at {isoformat(code.expires_at)}.",
                expires_at=isoformat(code.expires_at),
            )

        customer = await customer_service.get(
            session, invoice.workspace_id, invoice.customer_id
        )
        lead = await lead_service.get(session, invoice.workspace_id, code.lead_id)

        if customer.source_lead_id != lead.id and lead.customer_id != customer.id:
            raise OfferNotForCustomer(
                f"Offer code {code.code} was issued to lead "
                f"{ids.encode('lead', lead.id)}, and customer "
                f"{ids.encode('customer', customer.id)} of invoice {encoded_invoice} "
                "was not converted from that lead. Redeem it on an invoice of the "
                "lead's customer.",
                lead_id=ids.encode("lead", lead.id),
            )

        if offer.currency is not None and offer.currency != invoice.currency:
            raise OfferCurrencyMismatch(
                f"Offer code {code.code} takes {offer.amount_off} {offer.currency} "
                f"(minor units) off, but invoice {encoded_invoice} is in "
                f"{invoice.currency}. Redeem it on an invoice in {offer.currency}.",
                currency=offer.currency,
            )

        charge_lines = [line for line in lines if not is_discount_line(line)]
        has_offer = len(charge_lines) != len(lines)

        if has_offer or await applied_redemption(session, invoice.id) is not None:
            raise InvoiceHasOffer(
                f"Invoice {encoded_invoice} already has an offer discount. An "
                "invoice takes one offer code."
            )

        if offer.max_redemptions is not None:
            used = await OfferRepository.from_session(session).applied_count(offer.id)
            if used >= offer.max_redemptions:
                raise OfferRedemptionLimit(
                    f"Offer {ids.encode('offer', offer.id)} was redeemed "
                    f"{used} times, its maximum.",
                    max_redemptions=offer.max_redemptions,
                )

        if sum(line.amount for line in charge_lines) <= 0:
            raise InvoiceNothingToDiscount(
                f"Invoice {encoded_invoice} has a subtotal of 0, so the offer has "
                "nothing to discount. Add lines with PATCH first."
            )


offer_service = OfferService()
