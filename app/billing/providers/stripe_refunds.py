"""Refunding a Stripe payment through Stripe's API."""

from __future__ import annotations

import stripe
import structlog

from app.billing.payment_errors import ProviderApiFailed, ProviderRejected
from app.billing.providers.amounts import to_stripe_amount
from app.billing.providers.stripe_api import stripe_client
from app.core import ids
from app.models import Payment, Refund
from app.settings import Settings

log = structlog.get_logger(__name__)


class StripeRefunder:
    """Creates a refund in Stripe for a refund already recorded, but not committed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def __call__(self, payment: Payment, refund: Refund) -> str:
        """Create the Stripe refund and return its id.

        Raise ProviderRejected when Stripe rejects the request as invalid, and
        ProviderApiFailed when it fails otherwise or cannot be reached.

        The idempotency key names the payment and what it had refunded before, so a
        retry of the same request creates one Stripe refund, and a second refund of
        the same amount creates another. Stripe rejects a key sent again with other
        parameters, so the parameters leave out the local refund id, which a retry
        after a lost response creates anew.
        """
        assert payment.provider_payment_id is not None
        amount_before = payment.amount_refunded - refund.amount
        try:
            async with stripe_client(self.settings) as client:
                created = await client.v1.refunds.create_async(
                    {
                        "payment_intent": payment.provider_payment_id,
                        "amount": to_stripe_amount(
                            refund.amount, refund.currency, charge=False
                        ),
                        "metadata": {"payment_id": ids.encode("payment", payment.id)},
                    },
                    options={
                        "idempotency_key": f"refund:{payment.id}:{amount_before}:"
                        f"{refund.amount}"
                    },
                )
        except stripe.InvalidRequestError as error:
            log.warning(
                "refund.stripe_rejected",
                payment_id=str(payment.id),
                refund_id=str(refund.id),
                stripe_code=error.code,
            )
            raise ProviderRejected(
                f"Stripe rejected the refund: {error.user_message or error}. Nothing "
                "was refunded. Check the payment in Stripe, where it may be refunded "
                "or disputed already, before trying again.",
                stripe_code=error.code,
            ) from error
        except (stripe.StripeError, ValueError) as error:
            log.warning(
                "refund.stripe_failed",
                payment_id=str(payment.id),
                refund_id=str(refund.id),
                error_type=type(error).__name__,
            )
            raise ProviderApiFailed(
                f"Stripe did not create the refund ({type(error).__name__}: {error}). "
                "Nothing was refunded; retry later.",
                headers={"Retry-After": "30"},
            ) from error
        refund_id: str = created.id
        return refund_id
