from __future__ import annotations

from app.core.errors import Conflict, NotFound


class OfferNotFound(NotFound):
    """No offer with that id in the caller's workspace."""

    code = "offer_not_found"


class OfferCodeNotFound(NotFound):
    """No offer code with that text in the caller's workspace."""

    code = "offer_code_not_found"


class OfferNotActive(Conflict):
    """The offer is archived, so it issues no codes and its codes redeem nothing."""

    code = "offer_not_active"
    title = "Offer not active"


class OfferExpired(Conflict):
    """The offer code's expiry time has passed."""

    code = "offer_expired"
    title = "Offer expired"


class OfferAlreadyRedeemed(Conflict):
    """The single-use code already discounts an invoice."""

    code = "offer_already_redeemed"
    title = "Offer already redeemed"


class OfferRedemptionLimit(Conflict):
    """The offer reached its max_redemptions."""

    code = "offer_redemption_limit"
    title = "Offer redemption limit reached"


class OfferNotForCustomer(Conflict):
    """The invoice's customer was not converted from the lead the code was issued to."""

    code = "offer_not_for_customer"
    title = "Offer not for this customer"


class OfferCurrencyMismatch(Conflict):
    """An amount offer's currency differs from the invoice's currency."""

    code = "offer_currency_mismatch"
    title = "Offer currency does not match the invoice"


class InvoiceHasOffer(Conflict):
    """The invoice already carries an offer discount; an invoice takes one offer."""

    code = "invoice_has_offer"
    title = "Invoice already has an offer"


class InvoiceNothingToDiscount(Conflict):
    """The invoice's subtotal is zero, so no discount can apply."""

    code = "invoice_nothing_to_discount"
    title = "Nothing to discount"
