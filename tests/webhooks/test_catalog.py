from __future__ import annotations

import pytest

from app.webhooks import catalog

REQUIRED = [
    "lead.created",
    "lead.updated",
    "lead.converted",
    "sequence.created",
    "enrollment.created",
    "enrollment.step_completed",
    "enrollment.completed",
    "enrollment.exited",
    "enrollment.paused",
    "enrollment.resumed",
    "enrollment.failed",
    "customer.created",
    "customer.updated",
    "contact.created",
    "opportunity.created",
    "opportunity.updated",
    "opportunity.stage_changed",
    "opportunity.won",
    "opportunity.lost",
    "invoice.created",
    "invoice.updated",
    "invoice.finalized",
    "invoice.voided",
    "invoice.paid",
    "payment.succeeded",
    "webhook_endpoint.created",
    "webhook_endpoint.updated",
    "webhook_endpoint.deleted",
    "webhook_endpoint.disabled",
]


class TestCatalogue:
    def test_lists_required_types(self) -> None:
        missing = [name for name in REQUIRED if name not in catalog.EVENT_TYPES_BY_NAME]

        assert missing == []

    def test_names_are_unique(self) -> None:
        names = [item.name for item in catalog.EVENT_TYPES]

        assert len(names) == len(set(names))

    def test_object_type_is_name_prefix(self) -> None:
        for item in catalog.EVENT_TYPES:
            assert item.name.startswith(item.object_type + "."), item.name


class TestPatterns:
    @pytest.mark.parametrize(
        ("pattern", "valid"),
        [
            ("*", True),
            ("invoice.paid", True),
            ("invoice.*", True),
            ("webhook_endpoint.*", True),
            ("invoice.pay", False),
            ("invoices.*", False),
            ("invoice", False),
            ("*.paid", False),
            ("", False),
            ("invoice.**", False),
        ],
    )
    def test_is_valid_pattern(self, pattern: str, valid: bool) -> None:
        assert catalog.is_valid_pattern(pattern) is valid

    @pytest.mark.parametrize(
        ("pattern", "event_type", "expected"),
        [
            ("*", "invoice.paid", True),
            ("invoice.*", "invoice.paid", True),
            ("invoice.*", "invoice_line.created", False),
            ("invoice.paid", "invoice.paid", True),
            ("invoice.paid", "invoice.voided", False),
            ("lead.*", "invoice.paid", False),
        ],
    )
    def test_matches(self, pattern: str, event_type: str, expected: bool) -> None:
        assert catalog.matches(pattern, event_type) is expected

    def test_covering_agrees_with_matches(self) -> None:
        patterns = ["*", "invoice.*", "lead.*", "invoice.paid", "invoice.voided"]

        for item in catalog.EVENT_TYPES:
            covering = set(catalog.patterns_covering(item.name))
            for pattern in patterns:
                assert (pattern in covering) is catalog.matches(pattern, item.name), (
                    pattern,
                    item.name,
                )
