from __future__ import annotations

import pytest

from app.customers.normalize import InvalidDomain, company_domain, normalize_domain


class TestNormalizeDomain:
    @pytest.mark.parametrize(
        ("given", "expected"),
        [
            ("Example.COM", "example.com"),
            ("  example.com ", "example.com"),
            ("Bücher.example", "xn--bcher-kva.example"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("a-b.co.uk", "a-b.co.uk"),
        ],
    )
    def test_valid(self, given: str, expected: str) -> None:
        assert normalize_domain(given) == expected

    @pytest.mark.parametrize(
        "given",
        [
            "",
            "localhost",
            "example.com.",
            "http://example.com",
            "example.com/path",
            "exa mple.com",
            "-example.com",
            "under_score.example",
            "10.0.0.1",
            "a" * 64 + ".example",
            ("a" * 60 + ".") * 5 + "example",
        ],
    )
    def test_invalid(self, given: str) -> None:
        with pytest.raises(InvalidDomain):
            normalize_domain(given)


class TestCompanyDomain:
    def test_company_address(self) -> None:
        assert company_domain("ada@Analytical.Example") == "analytical.example"

    def test_free_mail_is_none(self) -> None:
        assert company_domain("ada@gmail.com") is None

    def test_unparseable_is_none(self) -> None:
        assert company_domain("not-an-address") is None
