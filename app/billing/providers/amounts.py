"""Provider amount rules, checked before an amount is sent to or matched against one.

Our amounts are integers in the ISO 4217 minor unit (``app.core.money``). Stripe writes
amounts in "the currency's smallest unit" too, but with its own exponents and limits.
The facts below come from Stripe's "Supported currencies" page
(https://docs.stripe.com/currencies) and its note on the deprecation of fractional ISK
charges (https://support.stripe.com/questions/deprecation-of-fractional-isk-charges-and-refunds):

- Zero-decimal currencies (the amount is in whole units): BIF, CLP, DJF, GNF, JPY,
  KMF, KRW, MGA, PYG, RWF, UGX, VND, VUV, XAF, XOF, XPF. MGA has two decimals in ISO
  4217, so its ISO minor units are 100 Stripe units.
- Three-decimal currencies (BHD, JOD, KWD, OMR, TND) keep three decimals, but the
  last digit must be 0: 5.124 KWD must be sent as 5120 or 5130.
- ISK has no minor unit in ISO 4217 but two decimals in Stripe's API, and since
  2023-04-14 its amounts must be whole krónur, so a multiple of 100.
- HUF and TWD are zero-decimal for payouts only; charges keep two decimals.
- An amount has at most eight digits (99,999,999 in Stripe's units) and a charge is
  at least 0.50 USD or its equivalent.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core import money
from app.core.errors import FieldError, InvalidInput

STRIPE_ZERO_DECIMAL = frozenset(
    {
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    }
)
STRIPE_THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
# Stripe exponents that differ from ISO 4217 outside the two lists above.
_STRIPE_EXPONENT_OVERRIDES = {"ISK": 2}
# Amounts in Stripe's units must be a multiple of this.
_STRIPE_STEPS = {"ISK": 100, **dict.fromkeys(STRIPE_THREE_DECIMAL, 10)}
STRIPE_MAX_AMOUNT = 99_999_999
# Minimum charges in Stripe's units. NOTE: only the USD figure is confirmed here. The
# minimum of other currencies depends on the conversion to the settlement currency,
# so they are not checked.
STRIPE_MIN_CHARGE = {"USD": 50}


class ProviderAmountInvalid(InvalidInput):
    """The amount cannot be charged through the provider as it is."""

    code = "provider_amount_invalid"
    title = "Amount not accepted by the payment provider"


class ProviderCurrencyUnsupported(InvalidInput):
    """The payment provider cannot charge in this currency."""

    code = "provider_currency_unsupported"
    title = "Currency not supported by the payment provider"


@dataclass(frozen=True)
class StripeCurrency:
    """Stripe's amount format for one currency: exponent, step and minimum."""

    code: str
    exponent: int
    step: int
    minimum: int | None

    @property
    def shift(self) -> int:
        """ISO exponent minus Stripe's: Stripe units = minor units x 10^-shift."""
        return money.exponent(self.code) - self.exponent


def stripe_currency(code: str) -> StripeCurrency:
    """Return Stripe's rules for ``code``; raise if Stripe has no exponent for it."""
    iso = money.exponent(code)
    if code in STRIPE_ZERO_DECIMAL:
        exponent = 0
    elif code in STRIPE_THREE_DECIMAL:
        exponent = 3
    elif code in _STRIPE_EXPONENT_OVERRIDES:
        exponent = _STRIPE_EXPONENT_OVERRIDES[code]
    elif iso == 2:
        exponent = 2
    else:
        raise ProviderCurrencyUnsupported(
            f"Stripe does not charge in {code}: it has {iso} decimals in ISO 4217 and "
            "no exponent in Stripe's list. Invoice in another currency or collect "
            "the payment manually.",
            errors=[
                FieldError(
                    "currency", f"{code} is not a Stripe currency", "unsupported"
                )
            ],
        )
    return StripeCurrency(
        code=code,
        exponent=exponent,
        step=_STRIPE_STEPS.get(code, 1),
        minimum=STRIPE_MIN_CHARGE.get(code),
    )


def from_stripe_amount(amount: int, currency: str) -> int:
    """Convert a Stripe amount to ISO 4217 minor units.

    Raise ``ValueError`` when the amount is not a whole number of minor units, breaks
    Stripe's own step for the currency (so it cannot be a genuine Stripe amount), or
    the currency has no Stripe exponent.
    """
    try:
        rules = stripe_currency(currency)
    except ProviderCurrencyUnsupported as error:
        raise ValueError(str(error)) from error
    if amount % rules.step:
        raise ValueError(
            f"{amount} is not a multiple of {rules.step}, which Stripe requires "
            f"of {currency} amounts"
        )
    if rules.shift >= 0:
        multiplier: int = 10**rules.shift
        return amount * multiplier
    factor: int = 10**-rules.shift
    if amount % factor:
        raise ValueError(
            f"{amount} is not a whole number of {currency} minor units in Stripe's "
            f"scale (divisible by {factor})"
        )
    return amount // factor


def to_stripe_amount(
    minor: int, currency: str, *, field: str = "amount", charge: bool = True
) -> int:
    """Convert ISO minor units to the amount Stripe accepts, or raise a 422 naming why.

    The problem names the nearest amounts below and above that Stripe accepts, so the
    caller can round explicitly instead of Stripe rejecting the request. The minimum
    charge applies only with ``charge``, because a refund may be smaller.
    """
    rules = stripe_currency(currency)
    if rules.shift >= 0:
        factor: int = 10**rules.shift
        if minor % factor:
            raise _invalid(
                minor,
                currency,
                field,
                f"Stripe charges {currency} in whole units of 10^{rules.shift} minor "
                "units",
                factor,
            )
        amount = minor // factor
    else:
        multiplier: int = 10**-rules.shift
        amount = minor * multiplier
    if amount % rules.step:
        unit = (
            rules.step * 10**rules.shift
            if rules.shift >= 0
            else rules.step // 10**-rules.shift
        )
        raise _invalid(
            minor,
            currency,
            field,
            f"Stripe requires {currency} amounts to be a multiple of {rules.step} in "
            "its units",
            max(unit, 1),
        )
    if amount > STRIPE_MAX_AMOUNT:
        raise ProviderAmountInvalid(
            f"{minor} {currency} (minor units) is more than Stripe's maximum of "
            f"{STRIPE_MAX_AMOUNT} in its units. Split the charge, or collect it "
            "another way.",
            errors=[FieldError(field, "above Stripe's maximum", "above_maximum")],
            maximum=STRIPE_MAX_AMOUNT,
        )
    minimum = rules.minimum if charge else None
    if amount <= 0 or (minimum is not None and amount < minimum):
        minimum = minimum or 1
        raise ProviderAmountInvalid(
            f"{minor} {currency} (minor units) is less than Stripe's minimum charge "
            f"of {minimum} in its units. Collect it another way, or add it to a "
            "later invoice.",
            errors=[FieldError(field, "below Stripe's minimum", "below_minimum")],
            minimum=minimum,
        )
    return amount


def _invalid(
    minor: int, currency: str, field: str, reason: str, unit: int
) -> ProviderAmountInvalid:
    lower = minor - minor % unit
    upper = lower if lower == minor else lower + unit
    return ProviderAmountInvalid(
        f"{minor} {currency} (minor units) cannot be charged through Stripe: "
        f"{reason}. Charge {lower} or {upper} instead.",
        errors=[FieldError(field, reason, "provider_step")],
        nearest_lower=lower,
        nearest_higher=upper,
    )
