"""Refunding a Stripe payment through Stripe's API."""

from __future__ import annotations

import hashlib

import stripe
import structlog

from app.billing.payment_errors import (
    ProviderApiFailed,
    ProviderIdempotencyKeyReused,
    ProviderRejected,
)
from app.billing.providers.amounts import to_stripe_amount
from app.billing.providers.stripe_api import stripe_client
from app.core import ids
from app.core.errors import FieldError
from app.models import Payment, Refund
from app.settings import Settings

log = structlog.get_logger(__name__)


class StripeRefunder:
    """Creates a refund in Stripe for a refund already recorded, but not committed.

    ``request_key`` is the ``Idempotency-Key`` of the API request, if it has one.
    """

    def __init__(self, settings: Settings, *, request_key: str | None = None) -> None:
        self.settings = settings
        self.request_key = request_key

    def idempotency_key(self, payment: Payment, refund: Refund) -> str:
        """Return the key that makes Stripe create one refund per refund request.

        With the request's ``Idempotency-Key``, the key is derived from it, scoped to
        the workspace and the payment, so a retry of that request gets the first
        Stripe refund back even after its webhook has been recorded. Without one,
        the key names what the payment had refunded before and the amount, so a
        retry before that webhook gets the first Stripe refund back, and a second
        refund of the same amount creates another.
        """
        if self.request_key is not None:
            digest = hashlib.sha256(self.request_key.encode()).hexdigest()
            return f"refund-request:{payment.workspace_id}:{payment.id}:{digest}"
        amount_before = payment.amount_refunded - refund.amount
        return f"refund:{payment.id}:{amount_before}:{refund.amount}"

    async def __call__(self, payment: Payment, refund: Refund) -> str:
        """Create the Stripe refund and return its id.

        Raise ProviderRejected when Stripe rejects the request as invalid,
        ProviderIdempotencyKeyReused when the request's ``Idempotency-Key`` went to
        Stripe before with another amount, and ProviderApiFailed when Stripe fails
        otherwise or cannot be reached.

        Stripe rejects a key sent again with other parameters, so the parameters
        leave out the local refund id, which a retry after a lost response creates
        anew.
        """
        assert payment.provider_payment_id is not None
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
                    options={"idempotency_key": self.idempotency_key(payment, refund)},
                )
        except stripe.IdempotencyError as error:
            log.warning(
                "refund.stripe_idempotency_key_reused",
                payment_id=str(payment.id),
                refund_id=str(refund.id),
            )
            raise ProviderIdempotencyKeyReused(
                "This Idempotency-Key was sent to Stripe for a refund of this payment "
                "with another amount, which Stripe may have refunded already. Check "
                "the payment's refunds, and use a new key for a new refund.",
                errors=[
                    FieldError(
                        "header.Idempotency-Key",
                        "the key was first used for a refund of another amount",
                        "idempotency_key_reused",
                    )
                ],
            ) from error
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
