"""Currencies and exact money arithmetic.

Amounts travel as integers in a currency's minor unit (``1999`` USD is 19.99 USD). This
module keeps the project's own table of ISO 4217 currency codes and their minor-unit
exponents, and rounds ``Decimal`` values to whole minor units with an explicit rounding
mode. Floats are rejected everywhere: a binary float cannot hold 0.1 exactly.

The table is ISO 4217 list one (current currencies and funds) as maintained by SIX in
2025: SLE, VED, ZWG and XCG are in; HRK, SLL, ZWL, CUC and ANG, which were withdrawn, are
out. Codes without a minor unit in the standard (precious metals, bond-market units, XDR,
XSU, XUA, XTS, XXX) are left out too, because nothing can be invoiced in them.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

from app.core.errors import FieldError, InvalidInput

# Code -> number of digits after the decimal separator (the ISO 4217 "minor unit").
_TABLE: dict[str, int] = {
    "AED": 2,  # UAE dirham
    "AFN": 2,  # Afghani
    "ALL": 2,  # Lek
    "AMD": 2,  # Armenian dram
    "AOA": 2,  # Kwanza
    "ARS": 2,  # Argentine peso
    "AUD": 2,  # Australian dollar
    "AWG": 2,  # Aruban florin
    "AZN": 2,  # Azerbaijan manat
    "BAM": 2,  # Convertible mark
    "BBD": 2,  # Barbados dollar
    "BDT": 2,  # Taka
    "BGN": 2,  # Bulgarian lev
    "BHD": 3,  # Bahraini dinar
    "BIF": 0,  # Burundi franc
    "BMD": 2,  # Bermudian dollar
    "BND": 2,  # Brunei dollar
    "BOB": 2,  # Boliviano
    "BOV": 2,  # Mvdol (fund)
    "BRL": 2,  # Brazilian real
    "BSD": 2,  # Bahamian dollar
    "BTN": 2,  # Ngultrum
    "BWP": 2,  # Pula
    "BYN": 2,  # Belarusian ruble
    "BZD": 2,  # Belize dollar
    "CAD": 2,  # Canadian dollar
    "CDF": 2,  # Congolese franc
    "CHE": 2,  # WIR euro (complementary currency)
    "CHF": 2,  # Swiss franc
    "CHW": 2,  # WIR franc (complementary currency)
    "CLF": 4,  # Unidad de fomento (fund)
    "CLP": 0,  # Chilean peso
    "CNY": 2,  # Yuan renminbi
    "COP": 2,  # Colombian peso
    "COU": 2,  # Unidad de valor real (fund)
    "CRC": 2,  # Costa Rican colon
    "CUP": 2,  # Cuban peso
    "CVE": 2,  # Cabo Verde escudo
    "CZK": 2,  # Czech koruna
    "DJF": 0,  # Djibouti franc
    "DKK": 2,  # Danish krone
    "DOP": 2,  # Dominican peso
    "DZD": 2,  # Algerian dinar
    "EGP": 2,  # Egyptian pound
    "ERN": 2,  # Nakfa
    "ETB": 2,  # Ethiopian birr
    "EUR": 2,  # Euro
    "FJD": 2,  # Fiji dollar
    "FKP": 2,  # Falkland Islands pound
    "GBP": 2,  # Pound sterling
    "GEL": 2,  # Lari
    "GHS": 2,  # Ghana cedi
    "GIP": 2,  # Gibraltar pound
    "GMD": 2,  # Dalasi
    "GNF": 0,  # Guinean franc
    "GTQ": 2,  # Quetzal
    "GYD": 2,  # Guyana dollar
    "HKD": 2,  # Hong Kong dollar
    "HNL": 2,  # Lempira
    "HTG": 2,  # Gourde
    "HUF": 2,  # Forint
    "IDR": 2,  # Rupiah
    "ILS": 2,  # New Israeli sheqel
    "INR": 2,  # Indian rupee
    "IQD": 3,  # Iraqi dinar
    "IRR": 2,  # Iranian rial
    "ISK": 0,  # Iceland krona
    "JMD": 2,  # Jamaican dollar
    "JOD": 3,  # Jordanian dinar
    "JPY": 0,  # Yen
    "KES": 2,  # Kenyan shilling
    "KGS": 2,  # Som
    "KHR": 2,  # Riel
    "KMF": 0,  # Comorian franc
    "KPW": 2,  # North Korean won
    "KRW": 0,  # Won
    "KWD": 3,  # Kuwaiti dinar
    "KYD": 2,  # Cayman Islands dollar
    "KZT": 2,  # Tenge
    "LAK": 2,  # Lao kip
    "LBP": 2,  # Lebanese pound
    "LKR": 2,  # Sri Lanka rupee
    "LRD": 2,  # Liberian dollar
    "LSL": 2,  # Loti
    "LYD": 3,  # Libyan dinar
    "MAD": 2,  # Moroccan dirham
    "MDL": 2,  # Moldovan leu
    "MGA": 2,  # Malagasy ariary
    "MKD": 2,  # Denar
    "MMK": 2,  # Kyat
    "MNT": 2,  # Tugrik
    "MOP": 2,  # Pataca
    "MRU": 2,  # Ouguiya
    "MUR": 2,  # Mauritius rupee
    "MVR": 2,  # Rufiyaa
    "MWK": 2,  # Malawi kwacha
    "MXN": 2,  # Mexican peso
    "MXV": 2,  # Mexican unidad de inversion (fund)
    "MYR": 2,  # Malaysian ringgit
    "MZN": 2,  # Mozambique metical
    "NAD": 2,  # Namibia dollar
    "NGN": 2,  # Naira
    "NIO": 2,  # Cordoba oro
    "NOK": 2,  # Norwegian krone
    "NPR": 2,  # Nepalese rupee
    "NZD": 2,  # New Zealand dollar
    "OMR": 3,  # Rial Omani
    "PAB": 2,  # Balboa
    "PEN": 2,  # Sol
    "PGK": 2,  # Kina
    "PHP": 2,  # Philippine peso
    "PKR": 2,  # Pakistan rupee
    "PLN": 2,  # Zloty
    "PYG": 0,  # Guarani
    "QAR": 2,  # Qatari rial
    "RON": 2,  # Romanian leu
    "RSD": 2,  # Serbian dinar
    "RUB": 2,  # Russian ruble
    "RWF": 0,  # Rwanda franc
    "SAR": 2,  # Saudi riyal
    "SBD": 2,  # Solomon Islands dollar
    "SCR": 2,  # Seychelles rupee
    "SDG": 2,  # Sudanese pound
    "SEK": 2,  # Swedish krona
    "SGD": 2,  # Singapore dollar
    "SHP": 2,  # Saint Helena pound
    "SLE": 2,  # Leone
    "SOS": 2,  # Somali shilling
    "SRD": 2,  # Surinam dollar
    "SSP": 2,  # South Sudanese pound
    "STN": 2,  # Dobra
    "SVC": 2,  # El Salvador colon
    "SYP": 2,  # Syrian pound
    "SZL": 2,  # Lilangeni
    "THB": 2,  # Baht
    "TJS": 2,  # Somoni
    "TMT": 2,  # Turkmenistan new manat
    "TND": 3,  # Tunisian dinar
    "TOP": 2,  # Pa'anga
    "TRY": 2,  # Turkish lira
    "TTD": 2,  # Trinidad and Tobago dollar
    "TWD": 2,  # New Taiwan dollar
    "TZS": 2,  # Tanzanian shilling
    "UAH": 2,  # Hryvnia
    "UGX": 0,  # Uganda shilling
    "USD": 2,  # US dollar
    "USN": 2,  # US dollar, next day (fund)
    "UYI": 0,  # Uruguay peso en unidades indexadas (fund)
    "UYU": 2,  # Peso uruguayo
    "UYW": 4,  # Unidad previsional
    "UZS": 2,  # Uzbekistan sum
    "VED": 2,  # Bolivar soberano (digital)
    "VES": 2,  # Bolivar soberano
    "VND": 0,  # Dong
    "VUV": 0,  # Vatu
    "WST": 2,  # Tala
    "XAF": 0,  # CFA franc BEAC
    "XCD": 2,  # East Caribbean dollar
    "XCG": 2,  # Caribbean guilder
    "XOF": 0,  # CFA franc BCEAO
    "XPF": 0,  # CFP franc
    "YER": 2,  # Yemeni rial
    "ZAR": 2,  # Rand
    "ZMW": 2,  # Zambian kwacha
    "ZWG": 2,  # Zimbabwe gold
}

CURRENCIES: Mapping[str, int] = MappingProxyType(_TABLE)
"""ISO 4217 code -> minor-unit exponent, read only."""

# The largest amount, in minor units, that any total or payment may reach. It leaves
# three orders of magnitude of headroom below PostgreSQL's BIGINT (about 9.2e18), so a
# sum of many such amounts still fits.
MAX_AMOUNT = 10**15 - 1

_CODE = re.compile(r"^[A-Za-z]{3}$")
_DECIMAL_TEXT = re.compile(
    r"^(?P<sign>-?)(?P<integer>[0-9]+)(?:\.(?P<fraction>[0-9]+))?$"
)

# Precision far above any product of a quantity (20 digits) and a unit amount
# (30 digits), so that multiplication and addition here are exact; Inexact is trapped
# to prove it.
_EXACT = decimal.Context(
    prec=100,
    rounding=decimal.ROUND_HALF_UP,
    traps=[
        decimal.InvalidOperation,
        decimal.DivisionByZero,
        decimal.Overflow,
        decimal.Inexact,
    ],
)


class Rounding(StrEnum):
    """Rounding mode for a value between two whole minor units."""

    HALF_UP = "half_up"
    HALF_EVEN = "half_even"

    @property
    def decimal_mode(self) -> str:
        return _MODES[self]


_MODES = {
    Rounding.HALF_UP: decimal.ROUND_HALF_UP,
    Rounding.HALF_EVEN: decimal.ROUND_HALF_EVEN,
}


class UnknownCurrency(InvalidInput):
    """The currency is not an ISO 4217 code the project keeps an exponent for."""

    code = "unknown_currency"
    title = "Unknown currency"


def is_currency(code: str) -> bool:
    return code in _TABLE


def exponent(code: str) -> int:
    """Return the minor-unit exponent of ``code``: 2 for USD, 0 for JPY, 3 for KWD."""
    try:
        return _TABLE[code]
    except KeyError:
        raise _unknown(code, "currency") from None


def validate_currency(code: str, *, field: str = "currency") -> str:
    """Return ``code`` in upper case, or raise ``UnknownCurrency`` (a 422) naming it."""
    if not isinstance(code, str) or not _CODE.match(code):
        raise _unknown(code, field)
    upper = code.upper()
    if upper not in _TABLE:
        raise _unknown(code, field)
    return upper


def _check_currency_code(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("expected a three-letter ISO 4217 code such as 'USD'")
    if value in _TABLE:
        return value
    if value.upper() in _TABLE:
        raise ValueError(f"{value!r} must be upper-case: send {value.upper()!r}")
    raise ValueError(
        f"{value!r} is not an ISO 4217 currency code such as 'USD' or 'EUR'"
    )


CurrencyCode = Annotated[
    str,
    BeforeValidator(_check_currency_code),
    WithJsonSchema(
        {
            "type": "string",
            "enum": sorted(_TABLE),
            "description": "An ISO 4217 code, upper-case.",
            "examples": ["USD"],
        }
    ),
]
"""A request field that takes an upper-case ISO 4217 code listed in the schema."""


def _unknown(code: object, field: str) -> UnknownCurrency:
    return UnknownCurrency(
        f"{code!r} is not an ISO 4217 currency code. Send a three-letter code such as "
        "'USD', 'EUR' or 'JPY'.",
        errors=[
            FieldError(field, f"{code!r} is not an ISO 4217 code", "unknown_currency")
        ],
    )


def exact() -> decimal.Context:
    """Return a copy of the context in which money arithmetic must be exact."""
    return _EXACT.copy()


def round_minor(value: Decimal, rounding: Rounding = Rounding.HALF_UP) -> int:
    """Round ``value``, already in minor units, to a whole number of minor units."""
    if not isinstance(value, Decimal):
        raise TypeError(f"money must be a Decimal, not {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"cannot round {value} to minor units")
    context = decimal.Context(prec=100, rounding=rounding.decimal_mode)
    return int(value.quantize(Decimal(1), context=context))


def to_minor(
    amount: Decimal, currency: str, rounding: Rounding = Rounding.HALF_UP
) -> int:
    """Convert an amount in major units (``Decimal("19.995")`` USD) to minor units."""
    if not isinstance(amount, Decimal):
        raise TypeError(f"money must be a Decimal, not {type(amount).__name__}")
    return round_minor(amount.scaleb(exponent(currency), context=exact()), rounding)


def from_minor(amount: int, currency: str) -> Decimal:
    """Convert an integer of minor units to major units: 1999 USD -> 19.99."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"minor units must be an int, not {type(amount).__name__}")
    return Decimal(amount).scaleb(-exponent(currency), context=exact())


def format_minor(amount: int, currency: str) -> str:
    """Write minor units in major units with the currency's places, grouped by thousands.

    ``123456`` USD is "1,234.56", ``1234`` JPY is "1,234" and ``5`` KWD is "0.005".
    """
    return format(from_minor(amount, currency), f",.{exponent(currency)}f")


def parse_decimal(
    text: str,
    *,
    max_integer_digits: int,
    max_places: int,
    allow_negative: bool = False,
) -> Decimal:
    """Parse a plain decimal string such as ``"12.50"``; raise ``ValueError`` if invalid.

    Only digits, one optional point and, when allowed, a leading minus are accepted:
    no exponent, no NaN or infinity, no grouping, so every client writes numbers the
    same way.
    """
    if not isinstance(text, str):
        raise TypeError(f"expected a decimal string, not {type(text).__name__}")
    match = _DECIMAL_TEXT.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a decimal number such as '12.5'")
    if match["sign"] and not allow_negative:
        raise ValueError(f"{text!r} is negative; send zero or more")
    integer = match["integer"].lstrip("0")
    fraction = match["fraction"] or ""
    if len(integer) > max_integer_digits:
        raise ValueError(
            f"{text!r} has more than {max_integer_digits} digits before the point"
        )
    if len(fraction.rstrip("0")) > max_places:
        raise ValueError(f"{text!r} has more than {max_places} digits after the point")
    return Decimal(text)


def format_decimal(value: Decimal) -> str:
    """Write ``value`` without exponent or trailing zeros: ``Decimal("1.500")`` -> "1.5"."""
    if not value.is_finite():
        raise ValueError(f"cannot format {value}")
    if value == 0:
        return "0"
    return format(value.normalize(context=exact()), "f")
