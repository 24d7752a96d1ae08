"""Reading CSV files: encodings, delimiters, quoting, headers, dates and cells."""

from __future__ import annotations

import codecs
import uuid

import pytest

from app.core import ids
from app.leads.importer import (
    DateColumn,
    ImportFileError,
    RowError,
    RowValidator,
    ValidRow,
    decode,
    detect_delimiter,
    infer_date_order,
    neutralize,
    parse_date,
    plan_columns,
    read_file,
    read_header,
    restore,
)


def rows_of(content: bytes, **mapping: str) -> list[list[str]]:
    parsed = read_file(content, mapping, max_rows=1000)
    return [parsed.header, *(record.cells for record in parsed.records)]


def targets(*header: str, **mapping: str) -> list[str]:
    return [column.target for column in plan_columns(list(header), mapping)]


class TestDecode:
    def test_utf8(self) -> None:
        assert decode("Email\nä@x.com\n".encode()) == ("Email\nä@x.com\n", "utf-8")

    def test_utf8_bom(self) -> None:
        text, encoding = decode(codecs.BOM_UTF8 + b"Email\n")

        assert text == "Email\n"
        assert encoding == "utf-8"

    def test_utf16_le(self) -> None:
        content = codecs.BOM_UTF16_LE + "Email\tName\nä@x.com\tJö\n".encode("utf-16-le")

        assert decode(content) == ("Email\tName\nä@x.com\tJö\n", "utf-16-le")

    def test_utf16_be(self) -> None:
        content = codecs.BOM_UTF16_BE + "Email\n".encode("utf-16-be")

        assert decode(content) == ("Email\n", "utf-16-be")

    def test_cp1252_rejected(self) -> None:
        with pytest.raises(ImportFileError) as raised:
            decode("Email,Name\na@x.com,Müller\n".encode("cp1252"))

        assert raised.value.code == "invalid_encoding"
        assert "offset 20" in raised.value.message
        assert "CSV UTF-8" in raised.value.message

    def test_utf16_without_bom_rejected(self) -> None:
        with pytest.raises(ImportFileError) as raised:
            decode("Email\n".encode("utf-16-le"))

        assert raised.value.code == "invalid_encoding"
        assert "byte order mark" in raised.value.message


class TestDetectDelimiter:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("Email,Name\na@x.com,Ann\n", ","),
            ("Email;Name\na@x.com;Ann\n", ";"),
            ("Email\tName\na@x.com\tAnn\n", "\t"),
            # Commas inside the cells of a semicolon file.
            ("Email;Company\na@x.com;Acme, Inc.\nb@x.com;Foo, Bar, Baz\n", ";"),
            # A quoted cell with a delimiter and a line break.
            ('Email,Notes\na@x.com,"one; two\nthree; four"\n', ","),
            # Semicolons in the header only of a comma file, inside quotes.
            ('"Email; work","Name"\na@x.com,Ann\n', ","),
            ("Email\na@x.com\n", ","),
        ],
    )
    def test_detects(self, text: str, expected: str) -> None:
        assert detect_delimiter(text) == expected

    def test_tab_preferred_on_tie(self) -> None:
        assert detect_delimiter("Email\na@x.com\n", prefer_tab=True) == "\t"

    def test_consistency_beats_width(self) -> None:
        text = "Email;Name\na@x.com;Ann, Lee\nb@x.com;Bo\nc@x.com;Cy, Dee, Ed\n"

        assert detect_delimiter(text) == ";"


class TestReadFile:
    def test_quoted_newlines_and_delimiters(self) -> None:
        content = b'Email,Notes\na@x.com,"line one\nline, two"\nb@x.com,"say ""hi"""\n'

        rows = rows_of(content)

        assert rows == [
            ["Email", "Notes"],
            ["a@x.com", "line one\nline, two"],
            ["b@x.com", 'say "hi"'],
        ]

    def test_crlf(self) -> None:
        assert rows_of(b"Email,Name\r\na@x.com,Ann\r\n") == [
            ["Email", "Name"],
            ["a@x.com", "Ann"],
        ]

    def test_excel_unicode_text(self) -> None:
        content = codecs.BOM_UTF16_LE + "Email\tName\r\nä@x.com\tJö\r\n".encode(
            "utf-16-le"
        )

        parsed = read_file(content, {}, max_rows=10)

        assert parsed.delimiter == "\t"
        assert parsed.records[0].cells == ["ä@x.com", "Jö"]

    def test_row_numbers_skip_blank_rows(self) -> None:
        parsed = read_file(b"Email\na@x.com\n\n,\nb@x.com\n", {}, max_rows=10)

        assert [record.number for record in parsed.records] == [2, 5]

    def test_too_many_rows(self) -> None:
        with pytest.raises(ImportFileError) as raised:
            read_file(b"Email\na@x.com\nb@x.com\n", {}, max_rows=1)

        assert raised.value.code == "too_many_rows"

    def test_unterminated_quote(self) -> None:
        with pytest.raises(ImportFileError) as raised:
            read_file(b'Email,Notes\na@x.com,"open\n', {}, max_rows=10)

        assert raised.value.code == "malformed_csv"

    @pytest.mark.parametrize(
        ("content", "code"),
        [
            (b"", "empty_file"),
            (b"  \n\n", "empty_file"),
            (b",,\na@x.com,,\n", "missing_header"),
            (b"Email,\na@x.com,x\n", "missing_header"),
            (b"a@x.com,Ann\n", "missing_header"),
            (b"Email,Email\na@x.com,b@x.com\n", "duplicate_column"),
            (b"Name\nAnn\n", "missing_email_column"),
        ],
    )
    def test_bad_header(self, content: bytes, code: str) -> None:
        with pytest.raises(ImportFileError) as raised:
            read_header(content, {})

        assert raised.value.code == code


class TestPlanColumns:
    @pytest.mark.parametrize(
        ("header", "target"),
        [
            ("Email", "email"),
            ("E-mail Address", "email"),
            ("Email 1 - Value", "email"),
            ("EMAIL_ADDRESS", "email"),
            ("First Name", "first_name"),
            ("Given Name", "first_name"),
            ("first_name", "first_name"),
            ("Last Name", "last_name"),
            ("Family Name", "last_name"),
            ("Company", "company"),
            ("Organization", "company"),
            ("Organization 1 - Name", "company"),
            ("Account Name", "company"),
            ("Job Title", "title"),
            ("Phone", "phone"),
            ("Mobile Phone", "phone"),
            ("Phone 1 - Value", "phone"),
            ("Lead Source", "attributes.lead_source"),
            ("Created Date", "attributes.source_created_at:date"),
            ("Owner ID", "owner_id"),
            ("Description", "notes"),
            ("id", "ignore"),
        ],
    )
    def test_recognized(self, header: str, target: str) -> None:
        assert targets("Email" if target != "email" else "Mail", header)[1] == target

    def test_unrecognized_to_attributes(self) -> None:
        assert targets("Email", "Annual Revenue ($)", "  ") == [
            "email",
            "attributes.annual_revenue",
            "attributes.column_3",
        ]

    def test_second_alias_to_attributes(self) -> None:
        assert targets("Email", "Work Email") == ["email", "attributes.work_email"]

    def test_mapping_wins(self) -> None:
        assert targets("Mail", "Email", Mail="email", Email="attributes.old") == [
            "email",
            "attributes.old",
        ]

    def test_mapping_matches_loosely(self) -> None:
        assert targets("E-Mail", "Signup", e_mail="email") == [
            "email",
            "attributes.signup",
        ]

    @pytest.mark.parametrize(
        ("target", "code"),
        [
            ("full_name", "invalid_mapping"),
            ("attributes.", "invalid_mapping"),
            ("attributes.a b", "invalid_mapping"),
            ("status", "invalid_mapping"),
        ],
    )
    def test_invalid_target(self, target: str, code: str) -> None:
        with pytest.raises(ImportFileError) as raised:
            plan_columns(["Email", "X"], {"X": target})

        assert raised.value.code == code
        assert raised.value.field == "mapping.X"

    def test_mapped_target_not_taken_twice(self) -> None:
        assert targets("Email", "Mail", Mail="email") == ["attributes.email", "email"]

    def test_two_columns_one_target(self) -> None:
        with pytest.raises(ImportFileError) as raised:
            plan_columns(["Email", "Mail"], {"Mail": "email", "Email": "email"})

        assert raised.value.code == "invalid_mapping"


class TestDates:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("2025-03-04", "2025-03-04"),
            ("2025-03-04T10:30:00Z", "2025-03-04T10:30:00+00:00"),
            ("2025-03-04 10:30", "2025-03-04T10:30:00"),
            ("2025-03-04T10:30:00+02:00", "2025-03-04T10:30:00+02:00"),
            ("2025/03/04", "2025-03-04"),
            ("04.03.2025", "2025-03-04"),
            ("04.03.2025 23:59:59", "2025-03-04T23:59:59"),
        ],
    )
    def test_unambiguous(self, value: str, expected: str) -> None:
        assert parse_date(value, DateColumn(None, "undetermined")) == expected

    def test_day_first_inferred(self) -> None:
        column = infer_date_order(["03/04/2025", "25/12/2024"], None)

        assert column.order == "dmy"
        assert parse_date("03/04/2025", column) == "2025-04-03"

    def test_month_first_inferred(self) -> None:
        column = infer_date_order(["03/04/2025", "12/25/2024 3:15 PM"], None)

        assert column.order == "mdy"
        assert parse_date("03/04/2025", column) == "2025-03-04"
        assert parse_date("12/25/2024 3:15 PM", column) == "2024-12-25T15:15:00"

    def test_ambiguous_without_evidence(self) -> None:
        column = infer_date_order(["03/04/2025", "05/05/2025"], None)

        with pytest.raises(ValueError, match="ambiguous"):
            parse_date("03/04/2025", column)
        assert parse_date("05/05/2025", column) == "2025-05-05"

    def test_override(self) -> None:
        column = infer_date_order(["03/04/2025"], "DD/MM/YYYY")

        assert parse_date("03/04/2025", column) == "2025-04-03"

    def test_value_against_column_order(self) -> None:
        column = infer_date_order(["25/12/2024", "26/12/2024", "12/31/2024"], None)

        with pytest.raises(ValueError, match="DD/MM/YYYY"):
            parse_date("12/31/2024", column)

    @pytest.mark.parametrize(
        "value", ["31/02/2025", "next week", "03/04/25", "2025-13-01", "13:00 PM"]
    )
    def test_invalid(self, value: str) -> None:
        with pytest.raises(ValueError):
            parse_date(value, DateColumn("dmy", "DD/MM/YYYY"))

    def test_row_error_never_null(self) -> None:
        parsed = read_file(
            b"Email,Created Date\na@x.com,03/04/2025\nb@x.com,\n", {}, max_rows=10
        )
        validator = RowValidator.for_file(parsed, date_format=None, phone_region=None)

        first = validator.validate(parsed.records[0])
        second = validator.validate(parsed.records[1])

        assert isinstance(first, list)
        assert first[0].column == "Created Date"
        assert isinstance(second, ValidRow)
        assert second.values["attributes"] == {}


class TestNeutralize:
    @pytest.mark.parametrize(
        ("value", "exported"),
        [
            ("=SUM(A1)", "'=SUM(A1)"),
            ("+4930123", "'+4930123"),
            ("-1", "'-1"),
            ("@mention", "'@mention"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("'quoted", "''quoted"),
            ("'", "''"),
            ("plain", "plain"),
            ("", ""),
        ],
    )
    def test_round_trip(self, value: str, exported: str) -> None:
        assert neutralize(value) == exported
        assert restore(exported) == value

    def test_restore_keeps_foreign_apostrophe(self) -> None:
        assert restore("'s-Hertogenbosch") == "'s-Hertogenbosch"


class TestValidate:
    def validate(
        self, content: bytes, phone_region: str | None = None
    ) -> ValidRow | list[RowError]:
        parsed = read_file(content, {}, max_rows=10)
        validator = RowValidator.for_file(
            parsed, date_format=None, phone_region=phone_region
        )
        return validator.validate(parsed.records[0])

    def test_values(self) -> None:
        result = self.validate(
            b"Email,First Name,Phone,Plan,attributes\n"
            b' Ada@Example.COM ,Ada,+49 30 1234567,pro,"{""seats"": 3}"\n'
        )

        assert isinstance(result, ValidRow)
        assert result.email_normalized == "ada@example.com"
        assert result.values["email"] == "Ada@Example.COM"
        assert result.values["phone"] == "+49 30 1234567"
        assert result.values["phone_normalized"] == "+49301234567"
        assert result.values["company_domain"] == "example.com"
        assert result.values["tags"] == []
        assert result.values["owner_id"] is None
        assert result.values["source"] == "import"
        assert result.values["attributes"] == {"seats": 3, "plan": "pro"}

    def test_national_phone_with_region(self) -> None:
        result = self.validate(b"Email,Phone\na@x.com,030 1234567\n", "DE")

        assert isinstance(result, ValidRow)
        assert result.values["phone"] == "030 1234567"
        assert result.values["phone_normalized"] == "+49301234567"

    def test_national_phone_without_region(self) -> None:
        result = self.validate(b"Email,Phone\na@x.com,030 1234567\n")

        assert isinstance(result, list)
        assert len(result) == 1
        assert result[0].column == "Phone"
        assert result[0].value == "030 1234567"
        assert "phone_region" in result[0].message

    def test_invalid_phone_rejected(self) -> None:
        result = self.validate(b"Email,Phone\na@x.com,+49 12\n")

        assert isinstance(result, list)
        assert result[0].column == "Phone"
        assert "is invalid" in result[0].message

    def test_owner_and_tags(self) -> None:
        owner = ids.encode("user", uuid.UUID(int=7))

        result = self.validate(
            f"Email,Owner,Tags,Company Domain\na@x.com,{owner},"
            '"VIP, trade-fair",www.Acme.com\n'.encode()
        )

        assert isinstance(result, ValidRow)
        assert result.values["owner_id"] == uuid.UUID(int=7)
        assert result.values["tags"] == ["vip", "trade-fair"]
        assert result.values["company_domain"] == "acme.com"
        assert result.changes["owner_id"] == owner
        assert result.columns["owner_id"] == "Owner"

    def test_invalid_owner_rejected(self) -> None:
        result = self.validate(b"Email,Owner\na@x.com,rep_1\n")

        assert isinstance(result, list)
        assert result[0].column == "Owner"
        assert "usr_" in result[0].message

    def test_every_error_reported(self) -> None:
        result = self.validate(
            b"Email,Source,Timezone,attributes\nbroken,fax,Mars/Base,[1]\n"
        )

        assert isinstance(result, list)
        assert [error.column for error in result] == [
            "attributes",
            "Timezone",
            "Source",
            "Email",
        ]

    def test_invalid_email(self) -> None:
        result = self.validate(b"Email\nnot-an-email\n")

        assert isinstance(result, list)
        assert result[0].column == "Email"
        assert result[0].value == "not-an-email"

    def test_too_many_cells(self) -> None:
        result = self.validate(b"Email,Name\na@x.com,Ann,extra\n")

        assert isinstance(result, list)
        assert "3 cells" in result[0].message

    def test_neutralized_cells_restored(self) -> None:
        result = self.validate(b"Email,Notes\na@x.com,'=1+1\n")

        assert isinstance(result, ValidRow)
        assert result.values["notes"] == "=1+1"
