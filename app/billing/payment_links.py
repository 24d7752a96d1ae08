"""Payment links: a Stripe Checkout page per invoice for what it still owes.

The Checkout Session carries the invoice and workspace ids in its metadata and in its
PaymentIntent's metadata, so the ``checkout.session.completed`` and
``payment_intent.succeeded`` webhooks find the invoice and record one payment.
"""

from __future__ import annotations

import hashlib
import uuid

import stripe
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.amounts import invoice_amounts
from app.billing.payment_errors import InvoiceNotCollectable, ProviderApiFailed
from app.billing.payment_schemas import PaymentLink, PaymentLinkCreate
from app.billing.providers.amounts import to_stripe_amount
from app.billing.providers.stripe_api import stripe_client
from app.billing.repository import InvoiceRepository
from app.billing.service import invoice_service
from app.billing.views import invoice_data
from app.core import ids
from app.core.auth import Principal
from app.core.events import emit
from app.models import Invoice
from app.settings import Settings

log = structlog.get_logger(__name__)

_COLLECTABLE = frozenset({"open", "uncollectible"})


class PaymentLinkService:
    async def create(
        self,
        session: AsyncSession,
        settings: Settings,
        principal: Principal,
        invoice_id: uuid.UUID,
        payload: PaymentLinkCreate,
    ) -> PaymentLink:
        """Create a Checkout Session for the amount remaining and store its URL.

        The Stripe idempotency key is the invoice, the amount, the invoice's
        ``payment_change_count`` and a digest of the redirect URLs, so a repeated
        call for an unchanged invoice returns the same session (Stripe keeps keys
        for at least 24 hours). Any payment, refund, dispute or removed allocation
        meanwhile, or other redirect URLs, get a new one. The count matters when
        the amount comes back to an earlier value, as after a payment and its
        refund, because Stripe would otherwise return the session that payment
        completed.
        """
        invoice = await invoice_service.get(
            session, principal.workspace_id, invoice_id, for_update=True
        )
        remaining = invoice_amounts(invoice).amount_remaining
        encoded = ids.encode("invoice", invoice.id)
        if invoice.status not in _COLLECTABLE or remaining <= 0:
            raise InvoiceNotCollectable(
                f"Invoice {encoded} is {invoice.status} and owes {max(remaining, 0)} "
                f"{invoice.currency} (minor units); a payment link needs an open or "
                "uncollectible invoice that owes money.",
                current_status=invoice.status,
            )
        stripe_amount = to_stripe_amount(
            remaining, invoice.currency, field="amount_remaining"
        )
        success_url = payload.success_url or settings.stripe_checkout_success_url
        cancel_url = payload.cancel_url or settings.stripe_checkout_cancel_url
        redirect_digest = hashlib.sha256(
            f"{success_url}\n{cancel_url}".encode()
        ).hexdigest()
        metadata = {
            "invoice_id": encoded,
            "workspace_id": ids.encode("workspace", invoice.workspace_id),
        }
        # NOTE: the invoice row stays locked during this call, for at most
        # stripe_timeout_seconds per attempt and the library's retries.
        try:
            async with stripe_client(settings) as client:
                checkout = await client.v1.checkout.sessions.create_async(
                    {
                        "mode": "payment",
                        "client_reference_id": encoded,
                        "line_items": [
                            {
                                "quantity": 1,
                                "price_data": {
                                    "currency": invoice.currency.lower(),
                                    "unit_amount": stripe_amount,
                                    "product_data": {
                                        "name": f"Invoice {invoice.number or encoded}"
                                    },
                                },
                            }
                        ],
                        "success_url": success_url,
                        "cancel_url": cancel_url,
                        "metadata": metadata,
                        "payment_intent_data": {"metadata": metadata},
                    },
                    options={
                        "idempotency_key": f"payment-link:{encoded}:{remaining}:"
                        f"{invoice.payment_change_count}:{redirect_digest[:32]}"
                    },
                )
        except stripe.StripeError as error:
            log.warning(
                "payment_link.stripe_failed",
                invoice_id=str(invoice.id),
                error_type=type(error).__name__,
                http_status=error.http_status,
            )
            raise ProviderApiFailed(
                "Stripe did not create the Checkout Session "
                f"({type(error).__name__}). Retry later.",
                headers={"Retry-After": "30"},
            ) from error
        if not checkout.url:
            raise ProviderApiFailed(
                f"Stripe returned Checkout Session {checkout.id} without a URL. Retry "
                "later.",
                headers={"Retry-After": "30"},
            )

        changed = invoice.payment_link_session_id != checkout.id
        if changed:
            await self._store(session, invoice, checkout.url, checkout.id, principal)
        log.info(
            "payment_link.created",
            invoice_id=str(invoice.id),
            session_id=checkout.id,
            amount=remaining,
            changed=changed,
        )
        return PaymentLink(
            invoice_id=invoice.id,
            url=checkout.url,
            provider="stripe",
            provider_session_id=checkout.id,
            amount=remaining,
            currency=invoice.currency,
        )

    @staticmethod
    async def _store(
        session: AsyncSession,
        invoice: Invoice,
        url: str,
        session_id: str,
        principal: Principal,
    ) -> None:
        invoice.payment_link_url = url
        invoice.payment_link_session_id = session_id
        await session.flush()
        await session.refresh(invoice)
        lines = await InvoiceRepository.from_session(session).lines(invoice.id)
        await emit(
            session,
            workspace_id=invoice.workspace_id,
            type="invoice.updated",
            object_type="invoice",
            object_id=invoice.id,
            data=invoice_data(invoice, lines),
            actor=principal.actor,
        )


payment_link_service = PaymentLinkService()
