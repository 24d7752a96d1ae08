"""Invoice document totals: discounts, several tax rates, both tax policies.

Hand-worked examples in JPY (0 decimals), USD (2) and KWD (3) come first. Then
properties that hold for any lines: every part shown adds up to the total shown, per
line and per document, under both rounding modes and both tax calculation policies.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from app.billing.totals import (
    DiscountSpec,
    DocumentResult,
    LineSpec,
    TaxCalculation,
    TaxSpec,
    allocate,
    compute_document,
    pro_rata,
)
from app.core import money
from tests.billing.test_money import half_even, half_up

LINE = TaxCalculation.LINE
DOCUMENT = TaxCalculation.DOCUMENT
HALF_UP = money.Rounding.HALF_UP
HALF_EVEN = money.Rounding.HALF_EVEN
ORACLES = {HALF_UP: half_up, HALF_EVEN: half_even}


def spec(quantity: str, unit: str, *taxes: TaxSpec, **discount: object) -> LineSpec:
    return LineSpec(
        quantity=Decimal(quantity),
        unit_amount=Decimal(unit),
        taxes=taxes,
        discount=DiscountSpec(**discount) if discount else None,  # type: ignore[arg-type]
    )


def tax(name: str, rate: str, inclusive: bool = False) -> TaxSpec:
    return TaxSpec(name=name, rate=Decimal(rate), inclusive=inclusive)


def line_taxes(result: DocumentResult) -> list[int]:
    return [line.tax_amount for line in result.lines]


class TestUsdExamples:
    SALES_TAX = tax("Sales tax", "7.5")

    def test_line_policy_rounds_each_line(self) -> None:
        lines = [spec("1", "100", self.SALES_TAX) for _ in range(3)]

        result = compute_document(lines, tax_calculation=LINE)

        # 7.5 per line rounds half up to 8, three times.
        assert line_taxes(result) == [8, 8, 8]
        assert (result.subtotal, result.tax_total, result.total) == (300, 24, 324)

    def test_document_policy_rounds_once_per_rate(self) -> None:
        lines = [spec("1", "100", self.SALES_TAX) for _ in range(3)]

        result = compute_document(lines, tax_calculation=DOCUMENT)

        # 300 x 7.5 % = 22.5 -> 23; the exact shares 7.5 each give floors 7, and the
        # two units left go to the earliest lines on the tie.
        assert line_taxes(result) == [8, 8, 7]
        assert result.tax_total == 23
        assert [(item.taxable_amount, item.amount) for item in result.taxes] == [
            (300, 23)
        ]
        assert result.total == 323

    def test_document_policy_half_even(self) -> None:
        lines = [spec("1", "100", self.SALES_TAX) for _ in range(3)]

        result = compute_document(lines, tax_calculation=DOCUMENT, rounding=HALF_EVEN)

        # 22.5 rounds to the even 22.
        assert line_taxes(result) == [8, 7, 7]
        assert result.total == 322

    def test_invoice_discount_spread_by_largest_remainder(self) -> None:
        lines = [spec("1", "1000"), spec("1", "2000")]

        result = compute_document(lines, discounts=[DiscountSpec(amount_off=1000)])

        # Shares 333.33 and 666.67: floors 333 and 666, the unit left goes to 0.67.
        assert [line.discount_amount for line in result.lines] == [333, 667]
        assert result.invoice_discounts == (1000,)
        assert (result.total_discount, result.total) == (1000, 2000)

    def test_two_exclusive_rates_on_one_line(self) -> None:
        line = spec("1", "10000", tax("GST", "5"), tax("PST", "7"))

        result = compute_document([line])

        assert [(item.spec.name, item.amount) for item in result.lines[0].taxes] == [
            ("GST", 500),
            ("PST", 700),
        ]
        assert result.lines[0].taxable_amount == 10000
        assert result.total == 11200

    def test_two_inclusive_rates_extracted_from_gross(self) -> None:
        line = spec("1", "11200", tax("GST", "5", True), tax("PST", "7", True))

        result = compute_document([line])

        assert line_taxes(result) == [1200]
        assert result.lines[0].taxable_amount == 10000
        assert result.inclusive_tax_total == 1200
        assert result.total == 11200
        assert result.total_excluding_tax == 10000

    def test_line_discount_then_invoice_discount_then_tax(self) -> None:
        lines = [
            spec("2", "1250", self.SALES_TAX, percent_off=Decimal(20)),
            spec("1", "500", self.SALES_TAX),
        ]

        result = compute_document(
            lines, discounts=[DiscountSpec(percent_off=Decimal(10))]
        )

        # Line 1: 2500 - 20 % = 2000. Invoice discount: 10 % of 2500 = 250, spread
        # 200 and 50. Tax: 1800 x 7.5 % = 135, 450 x 7.5 % = 33.75 -> 34.
        assert [line.discount_amount for line in result.lines] == [700, 50]
        assert [line.taxable_amount for line in result.lines] == [1800, 450]
        assert line_taxes(result) == [135, 34]
        assert result.subtotal == 3000
        assert result.total_discount == 750
        assert result.total == 1800 + 450 + 135 + 34


class TestJpyExamples:
    CONSUMPTION = tax("Consumption tax", "10", True)

    def test_inclusive_line_policy(self) -> None:
        lines = [spec("1", "15", self.CONSUMPTION) for _ in range(3)]

        result = compute_document(lines, tax_calculation=LINE)

        # 15 x 10 / 110 = 1.36 -> 1 per line.
        assert line_taxes(result) == [1, 1, 1]
        assert [line.taxable_amount for line in result.lines] == [14, 14, 14]
        assert result.total == 45

    def test_inclusive_document_policy(self) -> None:
        lines = [spec("1", "15", self.CONSUMPTION) for _ in range(3)]

        result = compute_document(lines, tax_calculation=DOCUMENT)

        # 45 x 10 / 110 = 4.09 -> 4, allocated 2, 1, 1 by the earliest on the tie.
        assert line_taxes(result) == [2, 1, 1]
        assert [line.taxable_amount for line in result.lines] == [13, 14, 14]
        assert result.tax_total == 4
        assert result.total_excluding_tax == 41
        assert result.total == 45

    def test_two_rates_on_one_document(self) -> None:
        reduced = tax("Consumption tax", "8", True)
        lines = [spec("1", "1100", self.CONSUMPTION), spec("1", "1001", reduced)]

        result = compute_document(lines, tax_calculation=DOCUMENT)

        # 1100 x 10 / 110 = 100; 1001 x 8 / 108 = 74.15 -> 74.
        assert [(item.spec.rate, item.amount) for item in result.taxes] == [
            (Decimal(10), 100),
            (Decimal(8), 74),
        ]
        assert result.total == 2101


class TestKwdExamples:
    VAT = tax("VAT", "5")

    def test_fraction_of_a_fils_half_up(self) -> None:
        line = spec("3", "333.5", self.VAT, percent_off=Decimal(10))

        result = compute_document([line])

        # 1000.5 -> 1001; 10 % = 100.1 -> 100; 901 x 5 % = 45.05 -> 45.
        [computed] = result.lines
        assert (computed.amount, computed.discount_amount) == (1001, 100)
        assert (computed.taxable_amount, computed.tax_amount) == (901, 45)
        assert result.total == 946

    def test_fraction_of_a_fils_half_even(self) -> None:
        line = spec("3", "333.5", self.VAT, percent_off=Decimal(10))

        result = compute_document([line], rounding=HALF_EVEN)

        # 1000.5 -> 1000; 100; 900 x 5 % = 45.
        assert result.lines[0].amount == 1000
        assert result.total == 945

    def test_line_and_document_policies_differ(self) -> None:
        lines = [spec("1", "1015", self.VAT) for _ in range(3)]

        per_line = compute_document(lines, tax_calculation=LINE)
        per_document = compute_document(lines, tax_calculation=DOCUMENT)

        # 50.75 -> 51 per line; 3045 x 5 % = 152.25 -> 152 on the document.
        assert line_taxes(per_line) == [51, 51, 51]
        assert line_taxes(per_document) == [51, 51, 50]
        assert (per_line.total, per_document.total) == (3198, 3197)


class TestAllocate:
    def test_sums_to_total(self) -> None:
        shares = [Decimal("0.5"), Decimal("0.5"), Decimal("0.5")]

        assert allocate(shares, 2) == [1, 1, 0]

    def test_integer_shares_unchanged(self) -> None:
        assert allocate([Decimal(3), Decimal(4)], 7) == [3, 4]

    def test_negative_shares(self) -> None:
        assert allocate([Decimal("-1.5"), Decimal("2.25")], 1) == [-1, 2]

    def test_pro_rata_zero_weights(self) -> None:
        assert pro_rata(5, [0, 0]) == [0, 0]


# Property tests: amounts drawn in major units of a currency with 0, 2 or 3 decimals,
# then written in its minor units as the API receives them.

EXPONENTS = {"JPY": 0, "USD": 2, "KWD": 3}

rates = st.decimals(
    min_value=Decimal(0),
    max_value=Decimal(100),
    places=4,
    allow_nan=False,
    allow_infinity=False,
)
quantities = st.decimals(
    min_value=Decimal("0.000001"),
    max_value=Decimal("10000"),
    places=6,
    allow_nan=False,
    allow_infinity=False,
)
majors = st.decimals(
    min_value=Decimal(0),
    max_value=Decimal("100000"),
    places=4,
    allow_nan=False,
    allow_infinity=False,
)
percents = st.decimals(
    min_value=Decimal("0.0001"),
    max_value=Decimal(100),
    places=4,
    allow_nan=False,
    allow_infinity=False,
)
discounts = st.one_of(
    st.none(),
    st.builds(DiscountSpec, percent_off=percents),
    st.builds(DiscountSpec, amount_off=st.integers(1, 10**9)),
)
# A few shared names so that lines share document taxes.
tax_specs = st.builds(
    TaxSpec, name=st.sampled_from(["VAT", "City", "State"]), rate=rates
)


@st.composite
def documents(
    draw: st.DrawFn,
) -> tuple[list[LineSpec], list[DiscountSpec], TaxCalculation, money.Rounding]:
    exponent = EXPONENTS[draw(st.sampled_from(sorted(EXPONENTS)))]
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        inclusive = draw(st.booleans())
        taxes = draw(st.lists(tax_specs, max_size=3, unique_by=lambda item: item.key))
        lines.append(
            LineSpec(
                quantity=draw(quantities),
                unit_amount=draw(majors).scaleb(exponent),
                taxes=tuple(TaxSpec(item.name, item.rate, inclusive) for item in taxes),
                discount=draw(discounts),
            )
        )
    invoice_discounts = [
        item for item in draw(st.lists(discounts, max_size=2)) if item is not None
    ]
    policy = draw(st.sampled_from(list(TaxCalculation)))
    mode = draw(st.sampled_from(list(money.Rounding)))
    return lines, invoice_discounts, policy, mode


Document = tuple[list[LineSpec], list[DiscountSpec], TaxCalculation, money.Rounding]


def compute(document: Document) -> DocumentResult:
    lines, invoice_discounts, policy, mode = document
    return compute_document(
        lines, discounts=invoice_discounts, tax_calculation=policy, rounding=mode
    )


def exact_tax(line: LineSpec, base: int, item: TaxSpec) -> Fraction:
    if item.inclusive:
        inclusive = sum(
            (Fraction(other.rate) for other in line.taxes if other.inclusive),
            Fraction(0),
        )
        return base * Fraction(item.rate) / (100 + inclusive)
    return base * Fraction(item.rate) / 100


class TestDocumentProperties:
    @given(documents())
    @settings(max_examples=300)
    def test_document_sums_add_up(self, document: Document) -> None:
        result = compute(document)

        assert result.subtotal == sum(line.amount for line in result.lines)
        assert result.total_discount == sum(
            line.discount_amount for line in result.lines
        )
        assert result.total_excluding_tax == sum(
            line.taxable_amount for line in result.lines
        )
        assert result.tax_total == sum(line.tax_amount for line in result.lines)
        assert result.tax_total == sum(item.amount for item in result.taxes)
        assert result.total == sum(line.total for line in result.lines)
        assert result.total == result.total_excluding_tax + result.tax_total
        assert result.total_excluding_tax == (
            result.subtotal - result.total_discount - result.inclusive_tax_total
        )

    @given(documents())
    @settings(max_examples=300)
    def test_each_line_adds_up(self, document: Document) -> None:
        result = compute(document)

        for line in result.lines:
            inclusive = sum(item.amount for item in line.taxes if item.spec.inclusive)
            assert line.tax_amount == sum(item.amount for item in line.taxes)
            assert line.taxable_amount == (
                line.amount - line.discount_amount - inclusive
            )
            assert line.total == line.taxable_amount + line.tax_amount
            assert 0 <= line.discount_amount <= line.amount
            assert line.taxable_amount >= 0
            assert all(item.amount >= 0 for item in line.taxes)

    @given(documents())
    @settings(max_examples=300)
    def test_breakdown_per_rate_adds_up(self, document: Document) -> None:
        result = compute(document)

        for entry in result.taxes:
            parts = [
                item
                for line in result.lines
                for item in line.taxes
                if item.spec.key == entry.spec.key
            ]
            assert entry.amount == sum(item.amount for item in parts)
            assert entry.taxable_amount == sum(item.taxable_amount for item in parts)

    @given(documents())
    @settings(max_examples=300)
    def test_rounding_matches_policy(self, document: Document) -> None:
        lines, _, policy, mode = document
        oracle = ORACLES[mode]

        result = compute(document)

        exact: dict[tuple[str, Decimal, bool], Fraction] = {}
        for line, computed in zip(lines, result.lines, strict=True):
            base = computed.amount - computed.discount_amount
            for item, amount in zip(line.taxes, computed.taxes, strict=True):
                share = exact_tax(line, base, item)
                # Largest remainder moves an allocated share by less than one unit.
                assert abs(amount.amount - share) < 1
                if policy is LINE:
                    assert amount.amount == oracle(share)
                exact[item.key] = exact.get(item.key, Fraction(0)) + share
        if policy is DOCUMENT:
            for entry in result.taxes:
                assert entry.amount == oracle(exact[entry.spec.key])

    @given(documents())
    @settings(max_examples=200)
    def test_invoice_discounts_within_one_unit_of_pro_rata(
        self, document: Document
    ) -> None:
        lines, invoice_discounts, _, mode = document

        result = compute(document)
        own = compute_document(
            lines, rounding=mode, tax_calculation=document[2]
        )  # the same lines without invoice discounts

        shares = [
            line.discount_amount - alone.discount_amount
            for line, alone in zip(result.lines, own.lines, strict=True)
        ]
        assert sum(shares) == sum(result.invoice_discounts)
        if len(invoice_discounts) == 1:
            bases = [alone.amount - alone.discount_amount for alone in own.lines]
            total_base = sum(bases)
            for share, base in zip(shares, bases, strict=True):
                if total_base:
                    exact = Fraction(sum(result.invoice_discounts) * base, total_base)
                    assert abs(share - exact) < 1
