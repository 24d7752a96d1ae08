"""``python -m benchmarks.invoice_pdf``: time the invoice PDF renderer, in one process.

It renders the same invoice of 20 lines again and again, once with Latin, Greek,
Cyrillic, Hebrew and Arabic text only and once with a CJK name, which also loads the
CJK fallback font. No server is involved: this is the CPU cost of one PDF.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime

from app.billing import pdf

LINE = pdf.DocumentLine(
    description="Consulting, Ελληνικά, Русский, עברית, العربية",
    quantity="2",
    unit_price="1,234.56",
    discount="-",
    tax="19 %",
    amount="2,469.12",
)


def sample(buyer: str) -> pdf.InvoiceDocument:
    return pdf.InvoiceDocument(
        status="open",
        mark=None,
        number="INV-2026-000001",
        issue_date="2026-12-05",
        due_date="2026-12-19",
        currency="EUR",
        seller=pdf.Party("Acme Handels GmbH", ("Hauptstraße 1", "10115 Berlin")),
        buyer=pdf.Party(buyer, ("1 Main Street", "Springfield")),
        lines=(LINE,) * 20,
        taxes=(pdf.TaxRow("Tax 19 %", "49,382.40", "9,382.66"),),
        totals=(("Subtotal", "49,382.40"), ("Total (EUR)", "58,765.06")),
        memo=None,
        payment_instructions="IBAN DE89 3704 0044 0532 0130 00",
        payment_url=None,
        footer=None,
        created=datetime(2026, 12, 5, tzinfo=UTC),
    )


def measure(document: pdf.InvoiceDocument, count: int) -> tuple[float, float, int]:
    """Render ``count`` times; return the median wall and CPU ms, and the size.

    CPU time moves less than wall time on a machine shared with other work.
    """
    wall = []
    cpu = []
    size = 0
    for _ in range(count):
        started, started_cpu = time.perf_counter(), time.process_time()
        size = len(pdf.render(document))
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    return statistics.median(wall), statistics.median(cpu), size


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.invoice_pdf")
    parser.add_argument("--count", type=int, default=20, help="Renders per document.")
    count = max(1, min(parser.parse_args().count, 500))
    print("| document | median wall ms | median CPU ms | bytes |")
    print("| --- | --- | --- | --- |")
    for label, buyer in (
        ("no CJK", "שלום עולם בע״מ"),
        ("with a CJK name", "株式会社テスト"),
    ):
        wall, cpu, size = measure(sample(buyer), count)
        print(f"| {label} | {wall:.0f} | {cpu:.0f} | {size:,} |")


if __name__ == "__main__":
    main()
