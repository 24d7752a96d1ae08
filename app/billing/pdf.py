"""The invoice PDF: what it shows, mapped from the invoice view, and its rendering.

``invoice_document`` is the one place that turns the API's invoice view, the seller's
billing profile and the customer into the strings the PDF prints. ``render`` draws
such a document with fpdf2 and has no other input, so the same document always gives
the same bytes.

Text is shaped with HarfBuzz (fpdf2's ``set_text_shaping``), which joins Arabic
letters and lays right-to-left runs out in visual order. The fonts are committed in
``fonts/`` (see its README): one font covers Latin, Greek, Cyrillic, Hebrew and
Arabic, and a fallback font covers CJK.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pycountry
from fontTools.ttLib import TTFont
from fpdf import FPDF
from fpdf.enums import Align, TableBordersLayout, XPos, YPos
from fpdf.fonts import FontFace

from app.billing.schemas import Invoice as InvoiceView
from app.core import money
from app.models import BillingProfile, Customer

FONT_FOLDER = Path(__file__).parent / "fonts"
SANS = "InvoiceSans"
CJK = "DroidSansFallback"
# Part of every ETag: change it whenever a change of this module changes the output,
# so that clients holding an older PDF fetch the new one.
LAYOUT_VERSION = "3"

MARKS = {"draft": "DRAFT", "void": "VOID"}
STATUS_LABELS = {
    "draft": "Draft",
    "open": "Open",
    "paid": "Paid",
    "void": "Void",
    "uncollectible": "Uncollectible",
}

_GREY = (110, 110, 110)
_RULE = (200, 200, 200)
_MARK_COLOUR = (200, 40, 40)


@dataclass(frozen=True)
class Party:
    """A seller or buyer as printed: name, address lines and contact details."""

    name: str
    address: tuple[str, ...] = ()
    tax_id: str | None = None
    email: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class Parties:
    """The seller and buyer of an invoice, with the seller's payment text."""

    seller: Party
    buyer: Party
    payment_instructions: str | None = None
    footer: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Parties:
        def party(value: dict[str, Any]) -> Party:
            return Party(**{**value, "address": tuple(value.get("address") or ())})

        return cls(
            seller=party(data["seller"]),
            buyer=party(data["buyer"]),
            payment_instructions=data.get("payment_instructions"),
            footer=data.get("footer"),
        )


def parties_from(
    profile: BillingProfile | None, customer: Customer, *, workspace_name: str
) -> Parties:
    """Build the parties from the billing profile and the customer as they are now."""
    return Parties(
        seller=_seller(profile, workspace_name),
        buyer=_buyer(customer),
        payment_instructions=profile.payment_instructions if profile else None,
        footer=profile.invoice_footer if profile else None,
    )


@dataclass(frozen=True)
class DocumentLine:
    """One invoice line as printed; amounts are formatted in the invoice currency."""

    description: str
    quantity: str
    unit_price: str
    discount: str
    tax: str
    amount: str


@dataclass(frozen=True)
class TaxRow:
    """The tax of one rate on the whole invoice."""

    label: str
    taxable_amount: str
    tax_amount: str


@dataclass(frozen=True)
class InvoiceDocument:
    """Everything the invoice PDF prints, already formatted as text."""

    status: str
    mark: str | None
    number: str | None
    issue_date: str | None
    due_date: str | None
    currency: str
    seller: Party
    buyer: Party
    lines: tuple[DocumentLine, ...]
    taxes: tuple[TaxRow, ...]
    totals: tuple[tuple[str, str], ...]
    memo: str | None
    payment_instructions: str | None
    payment_url: str | None
    footer: str | None
    created: datetime

    @property
    def title(self) -> str:
        return f"Invoice {self.number}" if self.number else "Draft invoice"

    @property
    def filename(self) -> str:
        """A file name for Content-Disposition and attachments, ASCII only."""
        stem = self.number or "draft-invoice"
        safe = "".join(char if char.isalnum() or char in "-_" else "-" for char in stem)
        return f"{safe.encode('ascii', 'ignore').decode() or 'invoice'}.pdf"


def invoice_document(view: InvoiceView, parties: Parties) -> InvoiceDocument:
    """Map the invoice view and its parties to what the PDF prints.

    Lines and taxes come from the lists the view carries, so a new line or tax field
    in the view needs a change here only.
    """
    currency = view.currency
    zone = _zone(view.timezone)

    def amount(value: int) -> str:
        return money.format_minor(value, currency)

    lines = tuple(
        DocumentLine(
            description=line.description,
            quantity=_decimal_text(line.quantity),
            unit_price=_unit_price(line.unit_amount_decimal, currency),
            discount=_optional_amount(line.discount_amount, currency),
            tax=f"{_decimal_text(line.tax_rate)} %",
            amount=amount(line.amount),
        )
        for line in view.lines
    )
    totals: list[tuple[str, str]] = [("Subtotal", amount(view.subtotal))]
    if view.total_discount:
        totals.append(("Discounts", amount(-view.total_discount)))
    if view.total_excluding_tax != view.subtotal - view.total_discount:
        # Inclusive taxes are part of the prices, so they are shown apart.
        totals.append(("Total excluding tax", amount(view.total_excluding_tax)))
    credited = view.pre_payment_credit_notes_amount + view.customer_credit_applied
    totals += [
        ("Tax", amount(view.tax_total)),
        (f"Total ({currency})", amount(view.total)),
        *([("Credits", amount(-credited))] if credited else []),
        ("Amount paid", amount(view.amount_paid)),
        (f"Amount due ({currency})", amount(view.amount_remaining)),
    ]
    issued = view.finalized_at.astimezone(zone).date() if view.finalized_at else None
    return InvoiceDocument(
        status=view.status,
        mark=MARKS.get(view.status),
        number=view.number,
        issue_date=_date_text(issued),
        due_date=_date_text(view.due_date),
        currency=currency,
        seller=parties.seller,
        buyer=parties.buyer,
        lines=lines,
        taxes=_tax_rows(view, currency),
        totals=tuple(totals),
        memo=view.memo,
        payment_instructions=parties.payment_instructions,
        payment_url=view.payment_link_url,
        footer=parties.footer,
        created=view.finalized_at or view.updated_at,
    )


def document_etag(document: InvoiceDocument) -> str:
    """Hash what the PDF prints into a strong ETag, without rendering it."""
    digest = hashlib.sha256(f"{LAYOUT_VERSION}:{document!r}".encode()).hexdigest()
    return f'"{digest[:32]}"'


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _date_text(value: date | None) -> str | None:
    return value.isoformat() if value else None


def _decimal_text(value: str) -> str:
    """Group the integer part of a decimal string: "12500.5" is "12,500.5"."""
    integer, point, fraction = value.partition(".")
    return f"{int(integer):,}{point}{fraction}"


def _unit_price(unit_amount_decimal: str, currency: str) -> str:
    """Write a unit price, given in minor units, in major units.

    It keeps the currency's places at least, and more when the price is finer than
    the minor unit (``unit_amount_decimal``).
    """
    major = Decimal(unit_amount_decimal).scaleb(
        -money.exponent(currency), context=money.exact()
    )
    places = money.exponent(currency)
    exponent = major.as_tuple().exponent
    if isinstance(exponent, int):
        places = max(places, -exponent)
    return format(major, f",.{places}f")


def _optional_amount(value: int, currency: str) -> str:
    return money.format_minor(-value, currency) if value else "-"


def _tax_rows(view: InvoiceView, currency: str) -> tuple[TaxRow, ...]:
    """List the invoice's taxes per rate, in the order the view gives them."""
    return tuple(
        TaxRow(
            label=f"{tax.name} {money.format_decimal(Decimal(tax.rate))} %"
            + (" incl." if tax.inclusive else ""),
            taxable_amount=money.format_minor(tax.taxable_amount, currency),
            tax_amount=money.format_minor(tax.amount, currency),
        )
        for tax in view.taxes
    )


def _country_name(code: str | None) -> str | None:
    if not code:
        return None
    country = pycountry.countries.get(alpha_2=code)
    return str(country.name) if country is not None else code


def _address(
    line1: str | None,
    line2: str | None,
    city: str | None,
    region: str | None,
    postal_code: str | None,
    country: str | None,
) -> tuple[str, ...]:
    locality = " ".join(part for part in (postal_code, city) if part)
    parts = (line1, line2, locality, region, _country_name(country))
    return tuple(part for part in parts if part)


def _seller(profile: BillingProfile | None, workspace_name: str) -> Party:
    if profile is None:
        return Party(name=workspace_name)
    return Party(
        name=profile.legal_name or workspace_name,
        address=_address(
            profile.address_line1,
            profile.address_line2,
            profile.address_city,
            profile.address_region,
            profile.address_postal_code,
            profile.address_country,
        ),
        tax_id=profile.tax_id,
        email=profile.email,
        phone=profile.phone,
    )


def _buyer(customer: Customer) -> Party:
    return Party(
        name=customer.legal_name or customer.name,
        address=_address(
            customer.billing_address_line1,
            customer.billing_address_line2,
            customer.billing_address_city,
            customer.billing_address_region,
            customer.billing_address_postal_code,
            customer.billing_address_country,
        ),
        tax_id=customer.tax_id,
        email=customer.billing_email or customer.email,
    )


class _InvoicePdf(FPDF):
    """An A4 page with the invoice number and page count in the footer."""

    footer_text = ""

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(SANS, size=8)
        self.set_text_color(*_GREY)
        self.cell(0, 5, self.footer_text, align=Align.L)
        self.cell(0, 5, f"Page {self.page_no()} of {{nb}}", align=Align.R)


def _new_pdf(document: InvoiceDocument) -> _InvoicePdf:
    pdf = _InvoicePdf(orientation="portrait", unit="mm", format="A4")
    pdf.footer_text = document.title
    pdf.set_margins(18, 16, 18)
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.add_font(SANS, "", FONT_FOLDER / f"{SANS}-Regular.ttf")
    pdf.add_font(SANS, "B", FONT_FOLDER / f"{SANS}-Bold.ttf")
    # Loading the CJK font more than doubles the CPU time of a page (see
    # benchmarks/RESULTS.md), so only a document that needs it does.
    if not _sans_covers(document):
        pdf.add_font(CJK, "", FONT_FOLDER / f"{CJK}.ttf")
        pdf.set_fallback_fonts([CJK], exact_match=False)
    pdf.set_text_shaping(use_shaping_engine=True)
    pdf.set_title(document.title)
    pdf.set_subject(f"{document.title} to {document.buyer.name}")
    pdf.set_author(document.seller.name)
    pdf.set_creator("salescycle")
    pdf.set_lang("en")
    pdf.set_creation_date(document.created.astimezone(UTC))
    pdf.set_font(SANS, size=9)
    return pdf


@cache
def _sans_characters() -> frozenset[int]:
    with TTFont(FONT_FOLDER / f"{SANS}-Regular.ttf", lazy=True) as font:
        return frozenset(font.getBestCmap())


def _texts(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, tuple):
        for item in value:
            yield from _texts(item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from _texts(getattr(value, field.name))


def _sans_covers(document: InvoiceDocument) -> bool:
    """Tell whether the main font has a glyph for every printed character."""
    covered = _sans_characters()
    return all(
        ord(char) in covered or char.isspace()
        for text in _texts(document)
        for char in text
    )


def render(document: InvoiceDocument) -> bytes:
    """Draw ``document`` as an A4 PDF; the same document gives the same bytes."""
    pdf = _new_pdf(document)
    pdf.add_page()
    if document.mark:
        _draw_mark(pdf, document.mark)
    _draw_header(pdf, document)
    _draw_parties(pdf, document)
    _draw_lines(pdf, document)
    _draw_taxes_and_totals(pdf, document)
    _draw_payment(pdf, document)
    return bytes(pdf.output())


def _text_block(
    pdf: FPDF,
    text: str,
    *,
    width: float = 0,
    size: float = 9,
    style: Literal["", "B"] = "",
    colour: tuple[int, int, int] = (0, 0, 0),
    align: Align = Align.L,
) -> None:
    """Write one paragraph on its own lines.

    Each name gets a paragraph of its own, so a right-to-left name is one text run
    that a PDF reader can extract in logical order.
    """
    x = pdf.get_x()
    pdf.set_font(SANS, style, size)
    pdf.set_text_color(*colour)
    pdf.multi_cell(
        width, size * 0.5, text, align=align, new_x=XPos.LEFT, new_y=YPos.NEXT
    )
    pdf.set_x(x)


def _draw_mark(pdf: FPDF, mark: str) -> None:
    """Stamp DRAFT or VOID across the page, behind the content."""
    pdf.set_font(SANS, "B", 96)
    pdf.set_text_color(245, 205, 205)
    with pdf.rotation(35, x=pdf.w / 2, y=pdf.h / 2):
        width = pdf.get_string_width(mark)
        pdf.text(pdf.w / 2 - width / 2, pdf.h / 2 + 12, mark)
    pdf.set_text_color(0, 0, 0)


def _draw_header(pdf: FPDF, document: InvoiceDocument) -> None:
    top = pdf.get_y()
    half = (pdf.w - pdf.l_margin - pdf.r_margin) / 2

    seller = document.seller
    _text_block(pdf, seller.name, width=half, size=13, style="B")
    for line in seller.address:
        _text_block(pdf, line, width=half)
    if seller.tax_id:
        _text_block(pdf, f"Tax ID: {seller.tax_id}", width=half)
    for contact in (seller.email, seller.phone):
        if contact:
            _text_block(pdf, contact, width=half)
    left_bottom = pdf.get_y()

    pdf.set_xy(pdf.l_margin + half, top)
    heading = "INVOICE" if document.number else "DRAFT INVOICE"
    _text_block(pdf, heading, width=half, size=18, style="B", align=Align.R)
    if document.mark:
        _text_block(
            pdf,
            document.mark,
            width=half,
            size=12,
            style="B",
            colour=_MARK_COLOUR,
            align=Align.R,
        )
    facts = [
        ("Number", document.number or "not assigned"),
        ("Issue date", document.issue_date or "not issued"),
        ("Due date", document.due_date or "set when finalized"),
        ("Currency", document.currency),
        ("Status", STATUS_LABELS.get(document.status, document.status)),
    ]
    for label, value in facts:
        pdf.set_x(pdf.l_margin + half)
        pdf.set_font(SANS, "", 9)
        pdf.set_text_color(*_GREY)
        pdf.cell(half / 2, 4.5, label, align=Align.R)
        pdf.set_text_color(0, 0, 0)
        pdf.cell(
            half / 2, 4.5, value, align=Align.R, new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
    pdf.set_y(max(left_bottom, pdf.get_y()) + 6)


def _draw_parties(pdf: FPDF, document: InvoiceDocument) -> None:
    buyer = document.buyer
    _text_block(pdf, "Bill to", size=8, style="B", colour=_GREY)
    _text_block(pdf, buyer.name, size=11, style="B")
    for line in buyer.address:
        _text_block(pdf, line)
    if buyer.tax_id:
        _text_block(pdf, f"Tax ID: {buyer.tax_id}")
    if buyer.email:
        _text_block(pdf, buyer.email)
    pdf.ln(5)


# Widths in mm of the line table's columns after Description and Qty, which share the
# rest of the page width.
_PRICE_COLUMNS = (25.0, 21.0, 15.0, 30.0)
_QUANTITY_WIDTHS = (16.0, 32.0)
_LINE_PADDING = 1.2
_LINE_FONT_SIZE = 9.0
_MIN_QUANTITY_FONT_SIZE = 6.0


def _quantity_column(pdf: FPDF, quantities: list[str]) -> tuple[float, list[float]]:
    """Size the Qty column and each quantity's font so that quantities stay on one line.

    The column widens from 16 to 32 mm for the widest quantity at 9 pt. A quantity
    still wider than that is set smaller, down to 6 pt, which fits the longest quantity
    the API accepts (14 integer digits and 6 decimal places).
    """
    pdf.set_font(SANS, "", _LINE_FONT_SIZE)
    text_widths = [pdf.get_string_width(quantity) for quantity in quantities]
    # Cell padding on both sides, and 1 mm of margin for fpdf2's rounding of widths.
    spare = 2 * _LINE_PADDING + 1
    narrowest, widest = _QUANTITY_WIDTHS
    column = min(max([narrowest, *(width + spare for width in text_widths)]), widest)
    room = column - spare
    sizes = []
    for width in text_widths:
        size = _LINE_FONT_SIZE if width <= room else _LINE_FONT_SIZE * room / width
        sizes.append(max(size, _MIN_QUANTITY_FONT_SIZE))
    return column, sizes


def _draw_lines(pdf: FPDF, document: InvoiceDocument) -> None:
    quantity_width, quantity_sizes = _quantity_column(
        pdf, [line.quantity for line in document.lines]
    )
    description_width = pdf.epw - quantity_width - sum(_PRICE_COLUMNS)
    pdf.set_font(SANS, "", _LINE_FONT_SIZE)
    pdf.set_text_color(0, 0, 0)
    pdf.set_draw_color(*_RULE)
    headings = ("Description", "Qty", "Unit price", "Discount", "Tax", "Amount")
    with pdf.table(
        width=pdf.epw,
        col_widths=(description_width, quantity_width, *_PRICE_COLUMNS),
        text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT", "RIGHT", "RIGHT"),
        borders_layout=TableBordersLayout.HORIZONTAL_LINES,
        headings_style=FontFace(emphasis="BOLD"),
        line_height=5,
        padding=_LINE_PADDING,
    ) as table:
        table.row(headings)
        for line, quantity_size in zip(document.lines, quantity_sizes, strict=True):
            row = table.row()
            row.cell(line.description)
            row.cell(line.quantity, style=FontFace(size_pt=quantity_size))
            for text in (line.unit_price, line.discount, line.tax, line.amount):
                row.cell(text)
    pdf.ln(4)


def _draw_taxes_and_totals(pdf: FPDF, document: InvoiceDocument) -> None:
    width = pdf.w - pdf.l_margin - pdf.r_margin
    label_width, value_width = 50.0, 32.0
    start = pdf.l_margin + width - label_width - value_width
    if document.taxes:
        pdf.set_font(SANS, "B", 8)
        pdf.set_text_color(*_GREY)
        pdf.set_x(start)
        pdf.cell(label_width / 2, 4.5, "Tax rate")
        pdf.cell(label_width / 2, 4.5, "Taxable", align=Align.R)
        pdf.cell(
            value_width, 4.5, "Tax", align=Align.R, new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
        pdf.set_font(SANS, "", 9)
        pdf.set_text_color(0, 0, 0)
        for row in document.taxes:
            pdf.set_x(start)
            pdf.cell(label_width / 2, 4.5, row.label)
            pdf.cell(label_width / 2, 4.5, row.taxable_amount, align=Align.R)
            pdf.cell(
                value_width,
                4.5,
                row.tax_amount,
                align=Align.R,
                new_x=XPos.LMARGIN,
                new_y=YPos.NEXT,
            )
        pdf.ln(2)
    last = len(document.totals) - 1
    for index, (label, value) in enumerate(document.totals):
        emphasis: Literal["", "B"] = "B" if index in (last, last - 2) else ""
        pdf.set_font(SANS, emphasis, 10 if emphasis else 9)
        pdf.set_x(start)
        pdf.cell(label_width, 5.5, label)
        pdf.cell(
            value_width, 5.5, value, align=Align.R, new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
    pdf.ln(6)


def _draw_payment(pdf: FPDF, document: InvoiceDocument) -> None:
    if document.payment_instructions or document.payment_url:
        _text_block(pdf, "How to pay", size=10, style="B")
        if document.payment_instructions:
            _text_block(pdf, document.payment_instructions)
        if document.payment_url:
            pdf.set_font(SANS, "", 9)
            pdf.set_text_color(20, 70, 170)
            pdf.multi_cell(
                0,
                4.5,
                f"Pay online: {document.payment_url}",
                link=document.payment_url,
                new_x=XPos.LMARGIN,
                new_y=YPos.NEXT,
            )
            pdf.set_text_color(0, 0, 0)
        pdf.ln(4)
    if document.memo:
        _text_block(pdf, "Notes", size=10, style="B")
        _text_block(pdf, document.memo)
        pdf.ln(4)
    if document.footer:
        _text_block(pdf, document.footer, size=8, colour=_GREY)
