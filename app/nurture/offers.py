"""Offers: discounts that special-offer steps issue as one code per lead.

A code is issued in the claim phase of the step run that emails it (see
``issue_for_step``), so a retry of that run finds and reuses the same code. The lead's
customer redeems it on a draft invoice (``OfferService.redeem``): the offer row is
locked first, so redemptions of one offer run one at a time and a single-use code
or ``max_redemptions`` cannot be exceeded by two concurrent requests.
"""

from __future__ import annotations

import builtins
import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.errors import InvoiceNotEditable
from app.billing.service import InvoiceWithLines, invoice_service
from app.billing.views import invoice_data
from app.core import ids
from app.core.auth import Principal
from app.core.clock import isoformat, utcnow
from app.core.concurrency import check_if_match
from app.core.errors import FieldError, InvalidInput
from app.core.events import emit
from app.customers.service import customer_service
from app.leads.service import lead_service
from app.models import (
    Enrollment,
    Invoice,
    InvoiceLine,
    Offer,
    OfferCode,
    OfferRedemption,
    SequenceStep,
)
from app.nurture import merge, templates
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
    format_discount,
    offer_data,
    offer_view,
)
from app.nurture.schemas import EmailStepCreate, StepCreate

log = structlog.get_logger(__name__)

# Letters and digits without 0, O, 1 and I, which readers confuse when typing a code.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
# 10 characters of 32 symbols: 50 random bits, so a guess hits one of a million codes
# with a chance of about 1 in 10^9.
CODE_RANDOM_LENGTH = 10
# A new random code almost never collides with a stored one, so a failure after a
# few retries points to a bug rather than to bad luck.
MAX_CODE_ATTEMPTS = 5

OFFER_FIELDS = tuple(merge.OFFER_FIELDS)
# The values of the offer.* merge fields, keyed without the prefix as compose takes them.
NO_OFFER: dict[str, str | None] = dict.fromkeys(("code", "discount", "expires_at"))


def new_code(prefix: str) -> str:
    """Generate a code: the offer's prefix, a dash, and random unambiguous characters."""
    random_part = "".join(
        secrets.choice(CODE_ALPHABET) for _ in range(CODE_RANDOM_LENGTH)
    )
    return f"{prefix}-{random_part}" if prefix else random_part


def code_expiry(offer: Offer, issued_at: datetime) -> datetime | None:
    """Return when a code issued at ``issued_at`` expires: the sooner of both limits."""
    limits = []
    if offer.expires_at is not None:
        limits.append(offer.expires_at)
    if offer.valid_for_days is not None:
        limits.append(issued_at + timedelta(days=offer.valid_for_days))
    return min(limits) if limits else None


def merge_values(offer: Offer, code: OfferCode) -> dict[str, str | None]:
    return {
        "code": code.code,
        "discount": format_discount(offer),
        "expires_at": isoformat(code.expires_at) if code.expires_at else None,
    }


async def check_step_offers(
    session: AsyncSession, workspace_id: uuid.UUID, steps: Sequence[StepCreate]
) -> None:
    """Raise unless every step's ``offer_id`` is allowed and names an active offer.

    Only ``special_offer`` steps take an offer, and a body may use the offer merge
    fields only in a step that has one.
    """
    repository = OfferRepository.from_session(session)
    errors: list[FieldError] = []
    for index, step in enumerate(steps):
        if not isinstance(step, EmailStepCreate):
            continue
        field = f"steps.{index}.offer_id"
        if step.offer_id is None:
            used = _offer_fields_in(step.body_text)
            if used:
                errors.append(
                    FieldError(
                        f"steps.{index}.body_text",
                        f"the merge field {used[0]!r} needs an offer: set offer_id "
                        "on this special_offer step",
                        "offer_required",
                    )
                )
            continue
        if step.purpose != "special_offer":
            errors.append(
                FieldError(
                    field,
                    f"only special_offer steps take an offer, not {step.purpose}",
                    "offer_not_allowed",
                )
            )
            continue
        offer = await repository.get(workspace_id, step.offer_id)
        if offer is None:
            raise OfferNotFound(
                f"No offer with id {ids.encode('offer', step.offer_id)} exists in "
                f"this workspace; {field} must name one.",
                errors=[FieldError(field, "no such offer", "offer_not_found")],
            )
        if offer.status != "active":
            errors.append(
                FieldError(
                    field,
                    f"offer {ids.encode('offer', offer.id)} is {offer.status}; name "
                    "an active offer",
                    "offer_not_active",
                )
            )
    if errors:
        raise InvalidInput(
            f"{errors[0]['field']}: {errors[0]['message']}", errors=errors
        )


def _offer_fields_in(template: str) -> list[str]:
    try:
        parts = templates.parse(template)
    except templates.TemplateSyntaxError:
        return []
    return [
        part.name
        for part in parts
        if isinstance(part, templates.MergeTag) and part.name in OFFER_FIELDS
    ]


async def issue_for_step(
    session: AsyncSession,
    step: SequenceStep,
    enrollment: Enrollment,
    step_run_id: uuid.UUID,
    now: datetime,
) -> dict[str, str | None]:
    """Issue the lead's code of the step's offer, or reuse it; return merge values.

    A step without an offer, or whose offer was archived or expired since the step
    was saved, issues nothing and renders the offer fields empty.
    """
    if step.offer_id is None:
        return dict(NO_OFFER)
    repository = OfferRepository.from_session(session)
    offer = await repository.get(enrollment.workspace_id, step.offer_id)
    if offer is None or offer.status != "active":
        log.warning(
            "offer_code.not_issued",
            offer_id=str(step.offer_id),
            enrollment_id=str(enrollment.id),
            reason="offer_not_active",
        )
        return dict(NO_OFFER)
    code = await repository.code_for_lead(offer.id, enrollment.lead_id)
    if code is None:
        if offer.expires_at is not None and offer.expires_at <= now:
            log.warning(
                "offer_code.not_issued",
                offer_id=str(offer.id),
                enrollment_id=str(enrollment.id),
                reason="offer_expired",
            )
            return dict(NO_OFFER)
        code = await _insert_code(session, offer, enrollment, step_run_id, now)
    return merge_values(offer, code)


async def _insert_code(
    session: AsyncSession,
    offer: Offer,
    enrollment: Enrollment,
    step_run_id: uuid.UUID,
    now: datetime,
) -> OfferCode:
    repository = OfferRepository.from_session(session)
    for attempt in range(1, MAX_CODE_ATTEMPTS + 1):
        code_id = await repository.insert_code(
            {
                "id": ids.new_uuid(),
                "workspace_id": offer.workspace_id,
                "offer_id": offer.id,
                "lead_id": enrollment.lead_id,
                "enrollment_id": enrollment.id,
                "step_run_id": step_run_id,
                "code": new_code(offer.code_prefix),
                "status": "issued",
                "issued_at": now,
                "expires_at": code_expiry(offer, now),
            }
        )
        if code_id is not None:
            code = await session.get_one(OfferCode, code_id)
            await emit(
                session,
                workspace_id=code.workspace_id,
                type="offer_code.issued",
                object_type="offer_code",
                object_id=code.id,
                data=code_data(code),
            )
            log.info(
                "offer_code.issued",
                offer_code_id=str(code.id),
                offer_id=str(offer.id),
                enrollment_id=str(enrollment.id),
            )
            return code
        # Another transaction issued this lead's code first, or the random code
        # collided with a stored one: reuse the former, draw again for the latter.
        existing = await repository.code_for_lead(offer.id, enrollment.lead_id)
        if existing is not None:
            return existing
        log.warning("offer_code.collision", offer_id=str(offer.id), attempt=attempt)
    raise RuntimeError(f"no free code for offer {offer.id} after {MAX_CODE_ATTEMPTS}")


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
