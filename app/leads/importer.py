"""Reading lead CSV files: encoding, delimiter, header mapping, dates and validation.

Nothing here touches the database. ``read_header`` checks an upload before it is
stored, and ``read_file`` parses a whole file for a run. ``RowValidator`` turns one
record into the column values of a lead, or into row errors.

Rules a file must follow, and what the importer does with it:

- Encoding: UTF-8 with or without a byte order mark, or UTF-16 (LE or BE) with one, as
  Excel writes "Unicode text". Anything else is rejected with a message to save the file
  as "CSV UTF-8": guessing a legacy code page would import wrong letters silently.
- Delimiter: comma, semicolon or tab, detected from the first records (``csv.Sniffer``
  guesses wrong on short samples and on quoted fields).
- Row numbers count records from the header, which is row 1, so they match a
  spreadsheet's row numbers unless a quoted cell spans several lines.
- Cells are trimmed. A cell that ``neutralize`` prefixed with one quote on export gets
  that quote removed again, so an export reads back unchanged.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from itertools import islice
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator

from app.core.errors import InvalidInput
from app.leads.identity import create_values
from app.leads.normalize import normalize_email
from app.leads.schemas import LeadCreate, LeadSource

LEAD_FIELDS = (
    "email",
    "first_name",
    "last_name",
    "company",
    "title",
    "phone",
    "timezone",
    "source",
    "owner_id",
    "notes",
    "company_domain",
    "tags",
)
IGNORE = "ignore"
ATTRIBUTES = "attributes"
DATE_SUFFIX = ":date"
DELIMITERS = (",", ";", "\t")
# A cell that a spreadsheet would run as a formula starts with one of these. Export
# prefixes such a cell, and a cell that starts with a quote, with a single quote.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_QUOTED = (*FORMULA_TRIGGERS, "'")
DateOrder = Literal["ymd", "dmy", "mdy"]
DATE_FORMATS: dict[str, DateOrder] = {
    "YYYY-MM-DD": "ymd",
    "DD/MM/YYYY": "dmy",
    "MM/DD/YYYY": "mdy",
    "DD.MM.YYYY": "dmy",
}
# Tags cannot contain commas or spaces, so a cell lists them separated by either.
_TAG_SEPARATOR = re.compile(r"[,\s]+")
_ATTRIBUTE_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$")
_SAMPLE_CHARACTERS = 65_536
_SAMPLE_RECORDS = 50
# csv's default limit of 131,072 characters per cell is below a long notes cell.
csv.field_size_limit(1_048_576)

# Header names of common exports (Salesforce, HubSpot, Pipedrive, Zoho, Google
# Contacts, Outlook), after ``header_key``: lower case, letters and digits only.
_ALIASES: dict[str, str] = {
    **dict.fromkeys(
        (
            "email",
            "emailaddress",
            "emails",
            "email1",
            "email1value",
            "primaryemail",
            "workemail",
            "businessemail",
            "emailaddress1",
            "personemail",
        ),
        "email",
    ),
    **dict.fromkeys(
        ("firstname", "givenname", "first", "forename", "personfirstname"),
        "first_name",
    ),
    **dict.fromkeys(
        ("lastname", "familyname", "surname", "last", "personlastname"), "last_name"
    ),
    **dict.fromkeys(
        (
            "company",
            "companyname",
            "organization",
            "organisation",
            "organizationname",
            "organization1name",
            "accountname",
            "account",
        ),
        "company",
    ),
    **dict.fromkeys(
        ("title", "jobtitle", "organization1title", "position", "designation"),
        "title",
    ),
    **dict.fromkeys(
        (
            "phone",
            "phonenumber",
            "mobilephone",
            "mobile",
            "mobilenumber",
            "businessphone",
            "workphone",
            "phone1value",
            "primaryphone",
            "telephone",
        ),
        "phone",
    ),
    **dict.fromkeys(("timezone", "tz"), "timezone"),
    "source": "source",
    **dict.fromkeys(("owner", "ownerid", "leadowner"), "owner_id"),
    **dict.fromkeys(("notes", "note", "description"), "notes"),
    **dict.fromkeys(("companydomain", "domain"), "company_domain"),
    **dict.fromkeys(("tags", "tag", "labels"), "tags"),
    "attributes": ATTRIBUTES,
    # Free-text sources of CRMs ("Organic Search") are not lead source channels.
    **dict.fromkeys(
        ("leadsource", "originalsource", "sourceoflead"), "attributes.lead_source"
    ),
    **dict.fromkeys(
        (
            "createddate",
            "createdate",
            "datecreated",
            "createdtime",
            "createdon",
            "creationdate",
            "leadcreateddate",
        ),
        "attributes.source_created_at" + DATE_SUFFIX,
    ),
    # Our own export's id column: the importer creates new ids.
    **dict.fromkeys(("id", "leadid"), IGNORE),
}


class ImportFileError(Exception):
    """A file that cannot be imported at all: its encoding, header or mapping."""

    def __init__(self, code: str, message: str, field: str = "file") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Column:
    """The destination of one CSV column: a lead field, an attribute, or none."""

    index: int
    header: str
    target: str
    origin: Literal["mapping", "recognized", "unrecognized"]

    @property
    def is_date(self) -> bool:
        return self.target.endswith(DATE_SUFFIX)

    @property
    def attribute(self) -> str | None:
        if not self.target.startswith(ATTRIBUTES + "."):
            return None
        return self.target[len(ATTRIBUTES) + 1 :].removesuffix(DATE_SUFFIX)

    def describe(self) -> dict[str, str]:
        return {"column": self.header, "target": self.target, "origin": self.origin}


@dataclass(frozen=True)
class Record:
    """One data record of the file and its row number (the header is row 1)."""

    number: int
    cells: list[str]


@dataclass
class ParsedFile:
    encoding: str
    delimiter: str
    header: list[str]
    columns: list[Column]
    records: list[Record] = field(default_factory=list)


@dataclass(frozen=True)
class RowError:
    row: int
    column: str | None
    value: str | None
    message: str


@dataclass
class ValidRow:
    """The column values of one lead, from one record.

    ``changes`` holds the fields the record sets, as a ``LeadUpdate`` takes them, for
    a record that updates an existing lead. ``columns`` maps each field the record
    sets (``owner_id``, ``attributes.<key>``) to the header of its column, for row
    errors found later.
    """

    row: int
    email_normalized: str
    values: dict[str, Any]
    changes: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)


def decode(content: bytes) -> tuple[str, str]:
    """Decode the file; return its text and the encoding's name."""
    if content.startswith(codecs.BOM_UTF8):
        encoding, body = "utf-8-sig", content[len(codecs.BOM_UTF8) :]
        name = "utf-8"
    elif content.startswith(codecs.BOM_UTF16_LE):
        encoding, body, name = "utf-16-le", content[2:], "utf-16-le"
    elif content.startswith(codecs.BOM_UTF16_BE):
        encoding, body, name = "utf-16-be", content[2:], "utf-16-be"
    else:
        encoding, body, name = "utf-8", content, "utf-8"
        if b"\x00" in content[:4096]:
            raise ImportFileError(
                "invalid_encoding",
                "The file contains NUL bytes, as UTF-16 without a byte order mark "
                "does. Save it as 'CSV UTF-8' and upload it again.",
            )
    try:
        text = body.decode(encoding.replace("-sig", ""))
    except UnicodeDecodeError as error:
        raise ImportFileError(
            "invalid_encoding",
            f"The file is not valid {name.upper()}: the byte at offset {error.start} "
            "cannot be decoded. Save it as 'CSV UTF-8' (or Excel's 'Unicode text') "
            "and upload it again.",
        ) from error
    return text, name


def detect_delimiter(text: str, *, prefer_tab: bool = False) -> str:
    """Pick the delimiter that splits the first records into the most consistent rows.

    Each candidate parses a sample of the file. It scores by how many records have as
    many fields as the header, then by the header's field count. A file of one column
    has no delimiter to find and gets the comma.
    """
    sample = text[:_SAMPLE_CHARACTERS]
    truncated = len(text) > len(sample)
    best: tuple[float, int, int] = (0.0, 1, 0)
    chosen = "\t" if prefer_tab else ","
    order = sorted(DELIMITERS, key=lambda d: (d != chosen, DELIMITERS.index(d)))
    for rank, delimiter in enumerate(order):
        try:
            rows = list(
                islice(csv.reader(io.StringIO(sample), delimiter=delimiter), 100)
            )
        except csv.Error:
            continue
        if truncated and len(rows) > 1:
            rows = rows[:-1]
        rows = [row for row in rows if any(cell.strip() for cell in row)]
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        others = rows[1:_SAMPLE_RECORDS]
        consistent = (
            sum(len(row) == width for row in others) / len(others) if others else 1.0
        )
        score = (consistent, width, -rank)
        if score > best:
            best, chosen = score, delimiter
    return chosen


def header_key(header: str) -> str:
    """Reduce a header to lower-case letters and digits, for matching."""
    return re.sub(r"[^0-9a-z]", "", header.casefold())


def attribute_key(header: str, index: int) -> str:
    key = re.sub(r"[^0-9a-z]+", "_", header.casefold()).strip("_")[:100]
    return key or f"column_{index + 1}"


def check_target(target: str) -> str | None:
    """Return why ``target`` is not a mapping target, or None when it is one."""
    if target in LEAD_FIELDS or target in (IGNORE, ATTRIBUTES):
        return None
    if target.startswith(ATTRIBUTES + "."):
        key = target[len(ATTRIBUTES) + 1 :].removesuffix(DATE_SUFFIX)
        if _ATTRIBUTE_KEY.match(key):
            return None
        return (
            f"the attribute key {key!r} must be 1 to 100 letters, digits, '_', '.' "
            "or '-'"
        )
    return (
        f"{target!r} is not a lead field. Use one of {', '.join(LEAD_FIELDS)}, "
        "'attributes', 'attributes.<key>', 'attributes.<key>:date' or 'ignore'"
    )


def plan_columns(header: Sequence[str], mapping: Mapping[str, str]) -> list[Column]:
    """Decide where each column goes: the explicit mapping first, then known names.

    A column that neither names goes into ``attributes`` under a key made from its
    header, so no data is dropped without the caller asking for it.
    """
    by_name = {name: index for index, name in enumerate(header)}
    by_key = {header_key(name): index for index, name in enumerate(header)}
    explicit: dict[int, str] = {}
    for name, target in mapping.items():
        index = by_name.get(name.strip(), by_key.get(header_key(name)))
        if index is None:
            raise ImportFileError(
                "unknown_column",
                f"The mapping names the column {name!r}, which the header lacks. "
                f"The header has: {', '.join(header)}.",
                field=f"mapping.{name}",
            )
        problem = check_target(target)
        if problem is not None:
            raise ImportFileError(
                "invalid_mapping",
                f"The mapping of {name!r} is invalid: {problem}.",
                field=f"mapping.{name}",
            )
        explicit[index] = target

    taken = {target for target in explicit.values() if target != IGNORE}
    columns: list[Column] = []
    for index, name in enumerate(header):
        if index in explicit:
            columns.append(Column(index, name, explicit[index], "mapping"))
            continue
        alias = _ALIASES.get(header_key(name))
        if alias is not None and (alias == IGNORE or alias not in taken):
            taken.add(alias)
            columns.append(Column(index, name, alias, "recognized"))
            continue
        fallback = f"{ATTRIBUTES}.{attribute_key(name, index)}"
        while fallback in taken:
            fallback += "_"
        taken.add(fallback)
        columns.append(Column(index, name, fallback, "unrecognized"))

    targets = Counter(c.target for c in columns if c.target != IGNORE)
    doubled = [target for target, count in targets.items() if count > 1]
    if doubled:
        raise ImportFileError(
            "invalid_mapping",
            f"Several columns map to {doubled[0]!r}. Map one of them elsewhere or to "
            "'ignore'.",
            field="mapping",
        )
    if "email" not in targets:
        raise ImportFileError(
            "missing_email_column",
            "No column maps to email, and every lead needs one. Name the column "
            '\'Email\', or map it with mapping: {"<column>": "email"}.',
            field="mapping",
        )
    return columns


def _reader(text: str, delimiter: str) -> Iterable[list[str]]:
    return csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)


def _parse_header(
    text: str, encoding: str, mapping: Mapping[str, str]
) -> tuple[ParsedFile, Iterable[list[str]]]:
    if not text.strip():
        raise ImportFileError("empty_file", "The file is empty. Upload a CSV file.")
    delimiter = detect_delimiter(text, prefer_tab=encoding.startswith("utf-16"))
    reader = iter(_reader(text, delimiter))
    try:
        raw = next(reader)
    except csv.Error as error:
        raise ImportFileError(
            "malformed_csv", f"The header row is not valid CSV: {error}."
        ) from error
    header = [restore(cell.strip()) for cell in raw]
    if not any(header):
        raise ImportFileError(
            "missing_header",
            "The first row is empty. The first row must name the columns.",
        )
    if any("@" in cell and " " not in cell for cell in header) and not any(
        _ALIASES.get(header_key(cell)) == "email" or cell in mapping for cell in header
    ):
        raise ImportFileError(
            "missing_header",
            "The first row looks like data, not a header: it contains an email "
            "address. Add a header row that names the columns.",
        )
    blank = [index + 1 for index, cell in enumerate(header) if not cell]
    if blank:
        raise ImportFileError(
            "missing_header",
            f"Column {blank[0]} of the header has no name. Name every column.",
        )
    repeated = [name for name, count in Counter(header).items() if count > 1]
    if repeated:
        raise ImportFileError(
            "duplicate_column",
            f"The header names the column {repeated[0]!r} more than once. Rename "
            "one of them.",
        )
    columns = plan_columns(header, mapping)
    return ParsedFile(encoding, delimiter, header, columns), reader


def read_header(content: bytes, mapping: Mapping[str, str]) -> ParsedFile:
    """Check the encoding, header and mapping of a file without reading its rows."""
    text, encoding = decode(content)
    parsed, _ = _parse_header(text, encoding, mapping)
    return parsed


def read_file(
    content: bytes, mapping: Mapping[str, str], *, max_rows: int
) -> ParsedFile:
    """Parse the whole file; raise ``ImportFileError`` past ``max_rows`` records.

    Blank records are dropped, so they count neither as rows nor against the limit.
    """
    text, encoding = decode(content)
    parsed, reader = _parse_header(text, encoding, mapping)
    number = 1
    try:
        for cells in reader:
            number += 1
            if not any(cell.strip() for cell in cells):
                continue
            if len(parsed.records) >= max_rows:
                raise ImportFileError(
                    "too_many_rows",
                    f"The file has more than {max_rows} rows, the limit of one "
                    "import. Split it into several files.",
                )
            parsed.records.append(Record(number, cells))
    except csv.Error as error:
        raise ImportFileError(
            "malformed_csv",
            f"Row {number + 1} is not valid CSV: {error}. Check its quotes.",
        ) from error
    return parsed


def neutralize(value: str) -> str:
    """Prefix a cell that a spreadsheet would run as a formula with one quote.

    A cell that starts with a quote gets one too, so that ``restore`` can tell the two
    apart and the round trip loses nothing.
    """
    if value.startswith(_QUOTED):
        return "'" + value
    return value


def restore(value: str) -> str:
    """Remove the quote that ``neutralize`` added, and only that one."""
    if len(value) >= 2 and value[0] == "'" and value[1] in _QUOTED:
        return value[1:]
    return value


# Date shapes: year first (ISO 8601 and its relatives), or day and month first with a
# four-digit year. Times are optional, in 24-hour or 12-hour form, with an offset.
_DATE = re.compile(
    r"^(?P<a>\d{1,4})(?P<sep>[-/.])(?P<b>\d{1,2})(?P=sep)(?P<c>\d{1,4})"
    r"(?:[ T](?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2})"
    r"(?:[.,](?P<fraction>\d{1,6}))?)?\s*(?P<meridiem>[AaPp][Mm])?"
    r"\s*(?P<offset>Z|[+-]\d{2}:?\d{2})?)?$"
)


@dataclass(frozen=True)
class DateColumn:
    """The day and month order a date column uses, inferred from all its values."""

    order: DateOrder | None
    label: str


def _date_parts(value: str) -> re.Match[str] | None:
    match = _DATE.match(value)
    if match is None:
        return None
    if len(match["a"]) != 4 and len(match["c"]) != 4:
        return None
    return match


def infer_date_order(values: Iterable[str], override: str | None) -> DateColumn:
    """Infer whether the column's ``nn/nn/yyyy`` dates put the day or the month first.

    A value whose first number is above 12 shows day first, and one whose second
    number is above 12 shows month first. The order with more such values wins; with
    none, each value that reads both ways is ambiguous, and ``override`` decides.
    """
    if override is not None:
        return DateColumn(DATE_FORMATS[override], override)
    day_first = month_first = 0
    for value in values:
        match = _date_parts(value)
        if match is None or len(match["a"]) == 4 or match["sep"] == ".":
            continue
        first, second = int(match["a"]), int(match["b"])
        if first > 12 >= second:
            day_first += 1
        elif second > 12 >= first:
            month_first += 1
    if day_first > month_first:
        return DateColumn("dmy", "DD/MM/YYYY")
    if month_first > day_first:
        return DateColumn("mdy", "MM/DD/YYYY")
    return DateColumn(None, "undetermined")


def parse_date(value: str, column: DateColumn) -> str:
    """Return the value as an ISO 8601 date or date-time; raise ValueError otherwise.

    A time without an offset stays without one, because the file does not say which
    zone it is in.
    """
    match = _date_parts(value)
    if match is None:
        raise ValueError(
            "is not a date; use YYYY-MM-DD, DD/MM/YYYY, MM/DD/YYYY or DD.MM.YYYY, "
            "with an optional time"
        )
    a, b, c = int(match["a"]), int(match["b"]), int(match["c"])
    if len(match["a"]) == 4:
        year, month, day = a, b, c
    elif match["sep"] == ".":
        day, month, year = a, b, c
    else:
        order = column.order
        if order is None or order == "ymd":
            if a != b and a <= 12 and b <= 12:
                raise ValueError(
                    f"is ambiguous: the day could be {a} or {b}, and no value of this "
                    "column shows the order. Set date_format to DD/MM/YYYY or "
                    "MM/DD/YYYY"
                )
            order = "dmy" if a > 12 or a == b else "mdy"
        day, month = (a, b) if order == "dmy" else (b, a)
        year = c
    zone: tzinfo | None = None
    offset = match["offset"]
    if offset == "Z":
        zone = UTC
    elif offset:
        sign = 1 if offset[0] == "+" else -1
        digits = offset[1:].replace(":", "")
        zone = timezone(
            sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        )
    try:
        if match["hour"] is None:
            return date(year, month, day).isoformat()
        hour = int(match["hour"])
        if match["meridiem"]:
            if not 1 <= hour <= 12:
                raise ValueError("has an hour outside 1 to 12 before AM or PM")
            hour = hour % 12 + (12 if match["meridiem"].lower() == "pm" else 0)
        moment = datetime(
            year,
            month,
            day,
            hour,
            int(match["minute"]),
            int(match["second"] or 0),
            int((match["fraction"] or "0").ljust(6, "0")),
            tzinfo=zone,
        )
    except ValueError as error:
        if str(error).startswith("has "):
            raise
        raise ValueError(
            f"is not a valid date in the column's format ({column.label}): {error}"
        ) from error
    return moment.isoformat()


class ImportedLead(LeadCreate):
    """The API's rules for a new lead, but with the email checked by normalize_email.

    Each rule but the email's is inherited from ``LeadCreate``. The email is checked
    once, in ``RowValidator.validate``, by the same validator, rather than twice.
    """

    email: str = Field(max_length=320)
    source: LeadSource = "import"

    @field_validator("*", mode="before")
    @classmethod
    def _reject_coercion(cls, value: Any, info: ValidationInfo) -> Any:
        # Replaces InputModel's check that JSON numbers and booleans keep their type:
        # every value read from a CSV cell is a string, and the check cost a sixth
        # of the validation time of a row.
        return value


@dataclass
class RowValidator:
    """Validates the records of one file with its columns and date orders."""

    columns: list[Column]
    dates: dict[int, DateColumn]
    phone_region: str | None

    @classmethod
    def for_file(
        cls,
        parsed: ParsedFile,
        *,
        date_format: str | None,
        phone_region: str | None,
    ) -> RowValidator:
        dates = {
            column.index: infer_date_order(
                (
                    cell_at(record, column.index)
                    for record in parsed.records
                    if cell_at(record, column.index)
                ),
                date_format,
            )
            for column in parsed.columns
            if column.is_date
        }
        return cls(parsed.columns, dates, phone_region)

    def validate(self, record: Record) -> ValidRow | list[RowError]:
        """Return the lead's column values, or every error of the record."""
        errors: list[RowError] = []
        if len(record.cells) > len(self.columns):
            extra = record.cells[len(self.columns) :]
            if any(cell.strip() for cell in extra):
                return [
                    RowError(
                        record.number,
                        None,
                        None,
                        f"The row has {len(record.cells)} cells but the header names "
                        f"{len(self.columns)} columns. Quote cells that contain the "
                        "delimiter.",
                    )
                ]
        payload: dict[str, Any] = {}
        attributes: dict[str, Any] = {}
        attribute_columns: dict[str, str] = {}
        source_column: dict[str, Column] = {}
        for column in self.columns:
            if column.target == IGNORE:
                continue
            value = cell_at(record, column.index)
            if not value:
                continue
            if column.target == ATTRIBUTES:
                try:
                    loaded = json.loads(value)
                except ValueError:
                    loaded = None
                if not isinstance(loaded, dict):
                    errors.append(
                        RowError(
                            record.number,
                            column.header,
                            value,
                            'must be a JSON object, such as {"plan": "pro"}',
                        )
                    )
                    continue
                attributes = {**loaded, **attributes}
                for name in loaded:
                    attribute_columns.setdefault(name, column.header)
                continue
            key = column.attribute
            if key is not None:
                if column.is_date:
                    try:
                        value = parse_date(value, self.dates[column.index])
                    except ValueError as error:
                        errors.append(
                            RowError(record.number, column.header, value, str(error))
                        )
                        continue
                attributes[key] = value
                attribute_columns[key] = column.header
                continue
            source_column[column.target] = column
            if column.target == "tags":
                tags = [tag for tag in _TAG_SEPARATOR.split(value) if tag]
                if tags:
                    payload["tags"] = tags
                continue
            payload[column.target] = value
        if attributes:
            payload["attributes"] = attributes

        lead: ImportedLead | None = None
        try:
            lead = ImportedLead.model_validate(payload)
        except ValidationError as error:
            for detail in error.errors():
                name = str(detail["loc"][0]) if detail["loc"] else ""
                origin = source_column.get(name)
                given = payload.get(name)
                errors.append(
                    RowError(
                        record.number,
                        origin.header if origin else name or None,
                        given if isinstance(given, str) else None,
                        f"{name}: {detail['msg']}",
                    )
                )
        if lead is None or errors:
            email_error = self._email_error(record, payload, source_column)
            return [*errors, email_error] if email_error is not None else errors
        # The same derivation as POST /v1/leads: the normalized email, E.164 phone
        # (a national number needs default_phone_region), company domain and owner.
        try:
            values = create_values(lead, self.phone_region)
        except InvalidInput as error:
            return [
                self._field_error(record, payload, source_column, item["field"], error)
                for item in error.errors
            ] or [RowError(record.number, None, None, error.detail)]
        changes = lead.model_dump(
            include=_UPDATE_FIELDS & lead.model_fields_set, exclude={"attributes"}
        )
        columns = {name: column.header for name, column in source_column.items()}
        for key, header in attribute_columns.items():
            columns[f"{ATTRIBUTES}.{key}"] = header
        return ValidRow(
            record.number, values["email_normalized"], values, changes, columns
        )

    @staticmethod
    def _field_error(
        record: Record,
        payload: Mapping[str, Any],
        source_column: Mapping[str, Column],
        name: str,
        error: InvalidInput,
    ) -> RowError:
        origin = source_column.get(name)
        given = payload.get(name)
        return RowError(
            record.number,
            origin.header if origin else name,
            given if isinstance(given, str) else None,
            error.detail,
        )

    def _email_error(
        self,
        record: Record,
        payload: Mapping[str, Any],
        source_column: Mapping[str, Column],
    ) -> RowError | None:
        email = payload.get("email")
        if not isinstance(email, str):
            return None
        try:
            normalize_email(email)
        except InvalidInput as error:
            return self._field_error(record, payload, source_column, "email", error)
        return None


# The fields a record may change on an existing lead; the email and source stay.
_UPDATE_FIELDS = {
    "first_name",
    "last_name",
    "company",
    "title",
    "phone",
    "timezone",
    "owner_id",
    "notes",
    "company_domain",
    "tags",
}


def cell_at(record: Record, index: int) -> str:
    if index >= len(record.cells):
        return ""
    return restore(record.cells[index].strip())
